"""Fine-tuning with a fraction of the labels: the whole encoder plus a linear head.

The labelled subset comes from ``splits.label_subset`` (a seeded, stratified index file), so
every method is fine-tuned on the same images. Augmentation reuses the batched
``MultiViewAugment`` with one view. No hyper-parameter is chosen on the test set: the model
after the last epoch is scored once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tribyol.augment import MultiViewAugment, eval_transform
from tribyol.config import AugmentConfig
from tribyol.config.structured import build_dataclass
from tribyol.eval.features import adapt_channels, default_device, extract_features
from tribyol.eval.options import FinetuneOptions

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    top1: float  # test top-1, percent
    train_top1: float  # on the augmented training batches of the last epoch
    final_loss: float  # mean training loss of the last epoch
    num_train: int
    num_test: int
    steps: int
    options: dict[str, Any] = field(default_factory=dict)


def augment_config(augment: str, preset: dict[str, Any], crop_min: float) -> AugmentConfig | None:
    """The augmentation for fine-tuning; ``None`` means the plain evaluation view."""
    if augment == "none":
        return None
    cfg = build_dataclass(AugmentConfig, dict(preset))
    if augment == "crop-flip":
        cfg.crop_scale = (crop_min, 1.0)
        cfg = cfg.geometric_only()  # colour, band, blur and solarize ops off
    return cfg


@dataclass
class _Training:
    """What each fine-tuning step uses, built once: the model, its optimiser and schedule, and
    how a batch of images becomes the model's input."""

    model: nn.Module
    sgd: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    augment: MultiViewAugment | None
    generator: torch.Generator  # the augmentation's, on the device
    device: torch.device
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_channels: int | None
    pixels: dict[str, Any]  # to_float's scale and value_range (Source.pixels)

    def inputs(self, images: Tensor) -> Tensor:
        images = images.to(self.device)
        if self.in_channels is not None:
            images = adapt_channels(images, self.in_channels)
        if self.augment is not None:
            return self.augment(images, 1, self.generator)[0]
        return eval_transform(images, self.image_size, self.mean, self.std, **self.pixels)

    def step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step on a batch: (logits, loss)."""
        logits = self.model(self.inputs(images))
        loss = F.cross_entropy(logits, labels)
        self.sgd.zero_grad(set_to_none=True)
        loss.backward()
        self.sgd.step()
        self.schedule.step()
        return logits, loss


def _optimizer(model: nn.Module, opt: FinetuneOptions, total: int) -> tuple[torch.optim.SGD, Any]:
    """Nesterov SGD (no decay on BN and biases) and a cosine schedule over ``total`` steps."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on BN and biases
    sgd = torch.optim.SGD(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.lr, momentum=opt.momentum, nesterov=True,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    return sgd, schedule


def _load_batch(train: Any, idx: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(images, labels, dropped)`` of ``idx``: a corrupt file of a folder (label < 0,
    bad_images="drop") is left out and counted."""
    images, labels = train[idx]
    labels = torch.as_tensor(labels).long()
    keep = labels >= 0
    if bool(keep.all()):
        return images, labels, 0
    return images[keep], labels[keep], int((~keep).sum())


@dataclass
class _Epoch:
    steps: int = 0
    loss: float = float("nan")  # the epoch's mean training loss
    correct: Tensor | int = 0
    seen: int = 0
    corrupt: int = 0  # images left out as corrupt


def _train_epoch(training: _Training, train: Any, order: Tensor, batch: int) -> _Epoch:
    n, out = len(order), _Epoch()
    # Device-side tallies, read once per epoch: no host sync per step.
    correct, loss_sum = torch.zeros((), device=training.device), torch.zeros((), device=training.device)
    for start in range(0, n, batch):
        idx = order[start : start + batch]
        if len(idx) < 2 and n >= 2:  # BatchNorm cannot train on a single image
            continue
        images, labels, dropped = _load_batch(train, idx)
        out.corrupt += dropped
        if dropped and len(labels) < 2:
            continue
        labels = labels.to(training.device)
        logits, loss = training.step(images, labels)
        out.steps += 1
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        out.seen += len(labels)
    out.loss, out.correct = float(loss_sum) / max(1, out.seen), correct
    return out


def finetune(
    encoder: nn.Module,
    train: Any,
    train_indices: Tensor,
    test: Any,
    test_indices: Tensor,
    *,
    num_classes: int,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_channels: int | None = None,
    augment_preset: dict[str, Any] | None = None,
    options: FinetuneOptions | None = None,
    device: torch.device | str | None = None,
    pixels: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune ``encoder`` (in place) with a new linear head; returns test top-1."""
    opt = options or FinetuneOptions()
    seed = opt.finetune_seed if opt.finetune_seed is not None else 0  # the CLI passes --seed's
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    head = nn.Linear(encoder.out_dim, num_classes)
    model = nn.Sequential(encoder, head).to(device)
    vcfg = augment_config(opt.augment, augment_preset or {}, opt.crop_min)
    pixels = dict(pixels or {})
    augment = MultiViewAugment(vcfg, image_size, mean, std, **pixels).to(device) if vcfg else None
    train_indices = torch.as_tensor(train_indices).long().cpu()
    n = len(train_indices)
    batch = min(opt.batch_size, n)
    sgd, schedule = _optimizer(model, opt, opt.epochs * max(1, math.ceil(n / batch)))
    training = _Training(model, sgd, schedule, augment, torch.Generator(device=device).manual_seed(seed),
                         device, image_size, mean, std, in_channels, pixels)
    order_g = torch.Generator().manual_seed(seed)
    epoch, steps, corrupt = _Epoch(), 0, 0
    model.train()
    for e in range(opt.epochs):
        epoch = _train_epoch(training, train, train_indices[torch.randperm(n, generator=order_g)], batch)
        steps, corrupt = steps + epoch.steps, corrupt if e else epoch.corrupt
        log.info("fine-tune epoch %d/%d: loss %.4f", e + 1, opt.epochs, epoch.loss)
    logits, labels = extract_features(
        model, test, image_size, mean, std, opt.eval_batch_size, device,
        in_channels=in_channels, indices=test_indices, **pixels,
    )
    top1 = 100.0 * (logits.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")
    return FinetuneResult(
        top1=top1,
        train_top1=100.0 * float(epoch.correct) / max(1, epoch.seen),
        final_loss=epoch.loss,
        num_train=n - corrupt,
        num_test=len(labels),
        steps=steps,
        options={**asdict(opt), "finetune_seed": seed},
    )
