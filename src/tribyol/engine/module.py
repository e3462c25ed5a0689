"""The one training loop: a LightningModule that runs any registered method on the views
of a batch, with the EMA step, an online probe and collapse monitors."""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tribyol.augment import MultiViewAugment
from tribyol.checkpoints import add_checksum
from tribyol.config import RunConfig, to_dict
from tribyol.data.pretrain import DataInfo
from tribyol.engine.compiled import CompiledStep, compile_wanted
from tribyol.engine.optim import Schedule, build_optimizer, lr_lambda
from tribyol.engine.progress import steps_per_epoch
from tribyol.errors import NonFiniteLossError
from tribyol.methods import METHODS, MethodContext
from tribyol.methods.base import MomentumMethod
from tribyol.methods.losses import labelled_cross_entropy, wide
from tribyol.nets import build_backbone
from tribyol.nets.sync_bn import convert_to_global_bn
from tribyol.resolve import resolve_method, saved_config

log = logging.getLogger(__name__)

# Lightning's advice for an epoch shorter than log_every_steps; untrue here, since the run's
# last step is always logged (on_train_batch_start).
warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than "
                        r"the logging interval")


def collapse_std(z: Tensor) -> Tensor:
    """Mean per-dimension std of L2-normalised projections: ~1/sqrt(d) healthy, 0 collapsed."""
    return F.normalize(z.float(), dim=1).std(dim=0).mean()


def effective_rank(z: Tensor) -> Tensor:
    """exp(entropy) of the singular values of the L2-normalised projections, scaled to sum to 1
    (RankMe, Garrido et al. 2023): 1 when every row points the same way, d for d orthonormal
    rows. Not centred, so a fully collapsed batch reads 1, not 0/0."""
    # NaN/Inf (a diverged step) would make the SVD raise; the NaN guard reports those instead.
    z = torch.nan_to_num(F.normalize(z.detach().float(), dim=1), nan=0.0, posinf=0.0, neginf=0.0)
    # MPS has no SVD kernel; this runs at log steps only, so the copy costs little there.
    s = torch.linalg.svdvals(z.cpu() if z.device.type == "mps" else z)
    p = s / s.sum().clamp_min(1e-12)
    return torch.exp(-(p * p.clamp_min(1e-12).log()).sum())  # 0 log 0 = 0


def labels_seen_by(method: nn.Module, dataset: str) -> str:
    """Which labels shaped the encoder: none (self-supervised; the online probe is detached)."""
    if not getattr(method, "needs_labels", False):
        return "none"
    own = f"{dataset} train labels"
    return f"imagenet labels, {own}" if getattr(method, "name", "") == "supervised-imagenet" else own


def uses_cuda(cfg: RunConfig) -> bool:
    """Whether this run trains on CUDA GPUs (``train.accelerator`` auto/gpu/cuda with a GPU)."""
    return cfg.train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def build_encoder(cfg: RunConfig, info: DataInfo) -> nn.Module:
    m = cfg.model
    return build_backbone(m.backbone, info.channels, info.image_size, m.small_stem, m.width,
                          activation_checkpointing=m.activation_checkpointing,
                          norm=m.norm, norm_groups=m.norm_groups, weights=m.weights)


class PretrainModule(L.LightningModule):
    """Views -> method -> loss, plus the EMA step, an online probe and collapse monitors.

    The checkpoint's hyper-parameters hold the whole resolved config and the data info, so a
    run directory alone is enough to rebuild the encoder for evaluation or export.
    """

    def __init__(
        self,
        config: RunConfig | Mapping[str, Any],
        data_info: DataInfo | Mapping[str, Any],
    ) -> None:
        super().__init__()
        # The engine passes the one resolved RunConfig and its DataInfo; plain dicts are what a
        # checkpoint's hyper-parameters hold (Lightning rebuilds a module from them), read
        # through upgrade_tree as any saved config is.
        cfg = saved_config(config) if isinstance(config, Mapping) else resolve_method(config)
        info = data_info if isinstance(data_info, DataInfo) else DataInfo.from_dict(data_info)
        self.save_hyperparameters({"config": to_dict(cfg), "data_info": dataclasses.asdict(info)})
        self.cfg, self.info = cfg, info
        options = cfg.method
        cls = METHODS[options.name]
        ctx = MethodContext.for_data(
            info,
            build_encoder(cfg, info),
            hidden_dim=cfg.model.hidden_dim,
            proj_dim=cfg.model.proj_dim,
            norm=cfg.model.norm,
            backbone_name=cfg.model.backbone,
            new_backbone=lambda: build_encoder(cfg, info),  # e.g. TriBYOL's independent-init
        )
        self.method = cls(ctx, options)
        if cfg.model.sync_bn and not uses_cuda(cfg):
            # PyTorch's SyncBatchNorm is GPU-only; elsewhere (e.g. gloo on CPUs) ours syncs.
            self.method = convert_to_global_bn(self.method)
        if cfg.model.channels_last:
            # Weights in NHWC too, else every conv converts between the two layouts.
            self.method.to(memory_format=torch.channels_last)
        # The method picks its augmentation from the run's views (supervised: crop and flip only).
        views_cfg = self.method.augment_config(cfg.augment)
        self.augment = MultiViewAugment(views_cfg, info.image_size, info.mean, info.std,
                                        cfg.data.scale, cfg.data.value_range)
        use_probe = cfg.train.online_probe and info.num_classes > 0 and not cls.needs_labels
        self.probe = nn.Linear(ctx.backbone.out_dim, info.num_classes) if use_probe else None
        # Any NaN/Inf seen since the last check; read only at log steps and before saving.
        self.register_buffer("nonfinite", torch.zeros((), dtype=torch.bool), persistent=False)
        self._total_steps = 0
        # train.compile: decided once a trainer is attached (world size), built on the first step
        self._compile: bool | None = None
        self._compiled: CompiledStep | None = None
        self._first_step_start: float | None = None
        self.compile_seconds: float | None = None  # the first compiled step's wall time
        # Set once, at the first log step whose z-std is below the threshold; RunRecord writes
        # it into run.json (engine/callbacks.py).
        self.collapse_warning: dict[str, Any] | None = None

    @property
    def attached(self) -> bool:
        """Whether a Trainer runs this module (methods and tests also call it without one)."""
        try:
            self.trainer  # noqa: B018 (Lightning's property raises when there is none)
        except RuntimeError:
            return False
        return True

    # -- the loop -----------------------------------------------------------------------------
    def _generator(self, batch_idx: int = 0) -> torch.Generator:
        """Augmentation randomness from (seed, micro-batch, rank) alone: resumable for free.

        The micro-batch number is ``global_step * accumulate + (batch_idx + 1) % accumulate``,
        ``batch_idx`` being Lightning's index within the epoch (restored on resume)."""
        micro = 0
        if self.attached:
            accumulate = max(1, self.trainer.accumulate_grad_batches)
            micro = self.trainer.global_step * accumulate + (batch_idx + 1) % accumulate
        g = torch.Generator(device=self.device)
        g.manual_seed(hash((self.cfg.train.seed, micro, self.global_rank)) & 0x7FFF_FFFF_FFFF)
        return g

    def _log_this_step(self) -> bool:
        """Whether Lightning writes this step's metrics: every ``log_every_n_steps`` optimizer
        steps and when stopping (its own rule, derived from the step count; no trainer: always)."""
        if not self.attached:
            return True
        trainer = self.trainer
        return (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) == 0 or trainer.should_stop

    def _make_views(self, images: Tensor, g: torch.Generator) -> list[Tensor]:
        # Named ranges, so that a torch.profiler trace splits the step (benchmarks/profile_step.py).
        with torch.profiler.record_function("tribyol.augment"):
            views = self.augment(images, self.method.num_views, g)
            dtype = next(self.method.parameters()).dtype
            if dtype != views[0].dtype:  # the -true precisions: the views in the weights' dtype
                views = [v.to(dtype) for v in views]
            if self.cfg.model.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    def _probe_loss(self, out: Any, labels: Tensor, logging: bool) -> Tensor | None:
        """The online linear probe's loss on detached features (labelled images only)."""
        if self.probe is None or out.features is None:
            return None
        loss, acc = labelled_cross_entropy(self.probe(wide(out.features)), labels)
        if logging:
            self.log("train/probe_acc", acc)
        return loss

    def _log_collapse(self, projections: Tensor) -> None:
        """The collapse monitors, on the device, at log steps only (``_log_step``): the z-std,
        the effective rank, and one warning when the z-std falls below
        ``train.collapse_threshold / sqrt(d)``."""
        with torch.no_grad():
            z_std, rank = collapse_std(projections.detach()), effective_rank(projections)
        self.log("train/z_std", z_std)
        self.log("train/z_rank", rank)
        fraction = self.cfg.train.collapse_threshold
        if fraction <= 0 or self.collapse_warning is not None or self.global_rank != 0:
            return
        threshold = fraction / projections.shape[1] ** 0.5
        z_value, rank_value = torch.stack([z_std, rank]).tolist()  # one host sync, log steps only
        if z_value < threshold:  # False for NaN: the NaN guard reports that
            step = (self.trainer.global_step if self.attached else 0) + 1
            self.collapse_warning = {"step": step, "z_std": z_value, "rank": rank_value,
                                     "threshold": threshold}
            log.warning("the projections may have collapsed: train/z_std %.4g < %.4g (%g/sqrt(%d)) "
                        "at step %d, effective rank %.1f of %d; the loss can still fall when this "
                        "happens. Check the learning rate, the batch size and the method's options",
                        z_value, threshold, fraction, projections.shape[1], step, rank_value,
                        projections.shape[1])

    def _log_step(self, out: Any) -> None:
        self.log("train/loss", out.loss.detach(), prog_bar=True)
        if out.projections is not None:
            self._log_collapse(out.projections)
        for key, value in out.logs.items():
            self.log(f"train/{key}", value)
        if isinstance(self.method, MomentumMethod):  # derived from the step, not stored
            self.log("train/tau", self.method.current_tau(self.global_step, self._total_steps))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        # (images, labels, dataset indices); the indices are optional (PIRL's bank needs them)
        images, labels, *rest = batch
        indices = rest[0] if rest else None
        g = self._generator(batch_idx)  # the views draw from it, then the method (PIRL's transforms)
        views = self._make_views(images, g)
        with torch.profiler.record_function("tribyol.method_forward"):
            out = self._forward(views, labels, indices, g)
        self.nonfinite |= ~torch.isfinite(out.loss.detach())
        # Lightning writes step metrics only on log steps; skipping self.log elsewhere saves
        # its per-call overhead (milliseconds a step, visible on GPUs) and changes no log line.
        logging = self._log_this_step()
        if logging:
            self._log_step(out)
        probe = self._probe_loss(out, labels, logging)
        loss = out.loss if probe is None else out.loss + probe
        if (self.global_step + 1) % max(1, self.cfg.train.log_every_steps) == 0:
            self.check_finite()
        return loss

    @property
    def compiling(self) -> bool:
        """Whether this run's step is compiled (``train.compile``; ``engine/compiled.py``)."""
        if self._compile is None:
            world = self.trainer.world_size if self.attached else 1
            self._compile = compile_wanted(self.cfg.train.compile, uses_cuda(self.cfg), world)
        return self._compile

    def _forward(self, views: list[Tensor], labels: Tensor, indices: Tensor | None,
                 g: torch.Generator) -> Any:
        def eager() -> Any:
            return self.method(views, labels, indices=indices, generator=g)

        if not self.compiling:
            return eager()
        if self._compiled is None:
            self._compiled = CompiledStep(self.method, self.device.type == "cuda")
        return self._compiled.forward(self.method, views, labels, eager)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Any = None) -> None:
        taken = self._count_optimizer_steps(optimizer)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if taken[0] == 0:
            # fp16's grad scaler skipped optimizer.step() (inf/NaN gradients; it lowers its
            # scale and retries on the next batch): the online weights did not move, so the
            # targets must not take an EMA step towards them either.
            return
        # Once per optimizer step (never per micro-batch). Lightning counts this step in
        # global_step only after the hook returns, hence + 1 (tests/engine pins this).
        with torch.profiler.record_function("tribyol.ema"):
            ema = {} if self._compiled is None else {"ema": self._compiled.ema}
            self.method.after_optimizer_step(self.trainer.global_step + 1, self._total_steps, **ema)

    def _count_optimizer_steps(self, optimizer: Any) -> list[int]:
        """A counter, zeroed now, of the torch optimizer's real ``step()`` calls.

        A step post-hook fires only when ``step()`` runs, which ``GradScaler.step`` skips on
        inf/NaN gradients; it is registered once per optimizer, no host sync.
        """
        inner = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps it
        counter = getattr(inner, "_tribyol_steps", None)
        if counter is None:
            counter = inner._tribyol_steps = [0]
            inner.register_step_post_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
        counter[0] = 0
        return counter

    def check_finite(self) -> None:
        """Raise ``NonFiniteLossError`` naming the step and the tensor, if anything went bad."""
        step = self.trainer.global_step if self.attached else 0
        if bool(self.nonfinite):
            raise NonFiniteLossError(
                f"loss became NaN/Inf at or before step {step} (checked every "
                f"train.log_every_steps={self.cfg.train.log_every_steps} steps); the last good "
                "checkpoint is kept. Lower optim.lr, or use train.precision=32."
            )
        params = [p.detach() for p in self.method.parameters()]
        # One fused reduction (one host sync); name the culprit only if it flags something.
        if params and bool(torch.stack(torch._foreach_norm(params)).isfinite().all()):
            return
        for name, p in self.method.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteLossError(
                    f"weight 'method.{name}' holds NaN/Inf at step {step}; the last good "
                    "checkpoint is kept. Lower optim.lr, or use train.precision=32."
                )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning calls this last, so the checksum covers every tensor the file will hold.
        checkpoint["tribyol_run"] = {
            "world_size": self.trainer.world_size,
            "steps_per_epoch": steps_per_epoch(self.trainer),
            "labels_seen": labels_seen_by(self.method, self.cfg.data.dataset),
        }
        add_checksum(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning loads the weights before its precision plugin converts the module: without
        # this, a 64-true run's fp64 weights would round through fp32 on resume.
        if self.cfg.train.precision == "64-true":
            self.double()

    def on_fit_start(self) -> None:
        self._total_steps = int(self.trainer.estimated_stepping_batches)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.compiling and self.compile_seconds is None:
            self._first_step_start = time.perf_counter()
        # The run's last optimizer step is a log step too, wherever log_every_steps falls (a
        # run shorter than it wrote no metrics.csv). Lightning writes a step's metrics, and
        # saves its loggers, when should_stop is set; the loop ends after this step anyway.
        trainer = self.trainer
        accumulate = max(1, trainer.accumulate_grad_batches)
        ends_step = ((batch_idx + 1) % accumulate == 0
                     or batch_idx + 1 == trainer.num_training_batches)
        if ends_step and 0 < self._total_steps <= trainer.global_step + 1:
            trainer.should_stop = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._first_step_start is not None and self.compile_seconds is None:
            # The first call compiles (dynamo, inductor: forward, backward, EMA); later ones reuse it.
            self.compile_seconds = time.perf_counter() - self._first_step_start
            log.info("train.compile: the first step took %.1f s (compiling the forward, loss, "
                     "backward and EMA update)", self.compile_seconds)

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        t = self.cfg.train
        world = self.trainer.world_size if self.attached else 1
        extra = []
        if self.probe is not None:
            extra.append({"params": list(self.probe.parameters()), "weight_decay": 0.0})
        optimizer = build_optimizer(
            self.cfg.optim,
            self.method.trainable_parameters(),
            t.batch_size * world * t.accumulate,
            extra,
            fused=self.compiling,
        )
        total = int(self.trainer.estimated_stepping_batches)  # sets up the loader, so:
        per_epoch = steps_per_epoch(self.trainer) or max(1, total // max(1, t.epochs))
        schedule = Schedule(optimizer, lr_lambda(self.cfg.optim, total, per_epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @property
    def encoder(self) -> nn.Module:
        return self.method.backbone
