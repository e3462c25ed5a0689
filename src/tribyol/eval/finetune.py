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
        cfg.jitter_p, cfg.grayscale_p, cfg.blur_p, cfg.solarize_p = 0.0, 0.0, [0.0], [0.0]
    return cfg


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
) -> FinetuneResult:
    """Fine-tune ``encoder`` (in place) with a new linear head; returns test top-1."""
    opt = options or FinetuneOptions()
    seed = opt.finetune_seed if opt.finetune_seed is not None else 0  # the CLI passes --seed's
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    head = nn.Linear(encoder.out_dim, num_classes)
    model = nn.Sequential(encoder, head).to(device)
    vcfg = augment_config(opt.augment, augment_preset or {}, opt.crop_min)
    augment = MultiViewAugment(vcfg, image_size, mean, std).to(device) if vcfg else None
    train_indices = torch.as_tensor(train_indices).long().cpu()
    n = len(train_indices)
    batch = min(opt.batch_size, n)
    steps_per_epoch = max(1, math.ceil(n / batch))
    total = opt.epochs * steps_per_epoch
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on BN and biases
    sgd = torch.optim.SGD(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.lr, momentum=opt.momentum, nesterov=True,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    g = torch.Generator(device=device).manual_seed(seed)
    order_g = torch.Generator().manual_seed(seed)
    step, loss_value, correct, seen, corrupt = 0, float("nan"), 0, 0, 0
    model.train()
    for epoch in range(opt.epochs):
        order = train_indices[torch.randperm(n, generator=order_g)]
        # Device-side tallies, read once per epoch: no host sync per step.
        correct, seen, loss_sum = torch.zeros((), device=device), 0, torch.zeros((), device=device)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            if len(idx) < 2 and n >= 2:  # BatchNorm cannot train on a single image
                continue
            images, labels = train[idx]
            labels = torch.as_tensor(labels).long()
            keep = labels >= 0  # a corrupt file of a folder (bad_images="drop"): left out
            if not bool(keep.all()):
                corrupt += int((~keep).sum()) if epoch == 0 else 0
                images, labels = images[keep], labels[keep]
                if len(labels) < 2:
                    continue
            images, labels = images.to(device), labels.to(device)
            if in_channels is not None:
                images = adapt_channels(images, in_channels)
            if augment is not None:
                x = augment(images, 1, g)[0]
            else:
                x = eval_transform(images, image_size, mean, std)
            logits = model(x)
            loss = F.cross_entropy(logits, labels)
            sgd.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            schedule.step()
            step += 1
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
        loss_value = float(loss_sum) / max(1, seen)  # the epoch's mean training loss
        log.info("fine-tune epoch %d/%d: loss %.4f", epoch + 1, opt.epochs, loss_value)
    logits, labels = extract_features(
        model, test, image_size, mean, std, opt.eval_batch_size, device,
        in_channels=in_channels, indices=test_indices,
    )
    top1 = 100.0 * (logits.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")
    return FinetuneResult(
        top1=top1,
        train_top1=100.0 * float(correct) / max(1, seen),
        final_loss=loss_value,
        num_train=n - corrupt,
        num_test=len(labels),
        steps=step,
        options={**asdict(opt), "finetune_seed": seed},
    )
