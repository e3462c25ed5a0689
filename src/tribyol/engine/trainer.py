"""The Lightning Trainer for a config: the hardware check, precision, progress display, and
the callbacks every run has."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import lightning as L
import torch

from tribyol.config import RunConfig
from tribyol.config.fields import option_value
from tribyol.engine.callbacks import LoaderPosition
from tribyol.engine.checkpointing import AtomicCheckpoint, RNGState
from tribyol.engine.logs import run_loggers
from tribyol.engine.module import uses_cuda
from tribyol.engine.progress import PlainProgress, Throughput
from tribyol.errors import ConfigError

# Lightning's hint for runs shorter than the logging interval is noise for short runs.
warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")


def resolve_precision(cfg: RunConfig) -> str:
    """``auto``: bf16 autocast where the device runs it natively, else fp32."""
    p = cfg.train.precision
    if p != "auto":
        return p
    accel = cfg.train.accelerator
    if accel in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    # On CPUs, bf16 pays off only with AMX or AVX512-BF16; elsewhere it is emulated and slower.
    fast_bf16 = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() or getattr(
        torch.cpu, "_is_avx512_bf16_supported", lambda: False
    )()
    return "bf16-mixed" if fast_bf16 else "32-true"


def check_hardware(cfg: RunConfig) -> None:
    """Refuse an accelerator this machine does not have, before anything is loaded."""
    accel = cfg.train.accelerator
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"train.accelerator '{accel}' asked for, but this machine has no usable CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use "
            f"{option_value('--accelerator', 'cpu')} (or auto)"
        )
    if accel == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "train.accelerator 'mps' asked for, but MPS is not available; use "
            f"{option_value('--accelerator', 'cpu')}"
        )


def show_progress_bar(cfg: RunConfig) -> bool:
    """Lightning's bar only on a terminal; logs get ``PlainProgress`` lines instead."""
    return cfg.train.progress_bar and sys.stderr.isatty()


# Set by `tribyol reproduce --jobs N` (reproduce/packing.py) for runs packed onto one GPU.
MEMORY_FRACTION_ENV = "TRIBYOL_CUDA_MEMORY_FRACTION"


def memory_fraction() -> float | None:
    """$TRIBYOL_CUDA_MEMORY_FRACTION, this process's share of each GPU, if set."""
    text = os.environ.get(MEMORY_FRACTION_ENV, "").strip()
    if not text:
        return None
    try:
        fraction = float(text)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        raise ConfigError(f"{MEMORY_FRACTION_ENV}={text!r}: expected a fraction in (0, 1]")
    return fraction


def cap_cuda_memory(cfg: RunConfig) -> float | None:
    """Cap this process's share of each visible GPU's memory at $TRIBYOL_CUDA_MEMORY_FRACTION.
    PyTorch takes memory as it needs it; the cap keeps one packed run from crowding out the
    others (it runs out of memory itself instead). Returns the fraction applied, if any."""
    fraction = memory_fraction()
    if fraction is None or not uses_cuda(cfg):
        return None
    for device in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def build_trainer(cfg: RunConfig, run_dir: Path, extra_callbacks: list | None = None) -> L.Trainer:
    t = cfg.train
    cap_cuda_memory(cfg)
    loggers = run_loggers(run_dir)
    callbacks = [
        LoaderPosition(),
        AtomicCheckpoint(run_dir / "checkpoints", t.ckpt_every_steps),
        RNGState(),
        Throughput(t.batch_size, run_dir / "throughput.json"),
        *(extra_callbacks or []),
    ]
    bar = show_progress_bar(cfg)
    if bar:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_steps)))
    elif t.progress_bar:
        callbacks.append(PlainProgress(t.log_every_steps))
    try:
        return L.Trainer(
            max_epochs=t.epochs,
            max_steps=t.max_steps,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=resolve_precision(cfg),
            accumulate_grad_batches=t.accumulate,
            deterministic=t.deterministic,
            sync_batchnorm=cfg.model.sync_bn and uses_cuda(cfg),  # else GlobalBatchNorm (module)
            logger=loggers,
            callbacks=callbacks,
            enable_checkpointing=False,  # AtomicCheckpoint does it
            enable_progress_bar=bar,
            enable_model_summary=False,
            log_every_n_steps=t.log_every_steps,
            use_distributed_sampler=False,  # EpochBatches shards by rank itself
            num_sanity_val_steps=0,
            limit_val_batches=0,
            default_root_dir=str(run_dir),
        )
    except (ValueError, RuntimeError, TypeError) as err:  # MisconfigurationException is a ValueError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"Lightning refused train.strategy={t.strategy!r} / accelerator={t.accelerator!r} / "
            f"devices={t.devices!r}: {first} Use e.g. {option_value('--strategy', 'auto')} (or "
            f"ddp), {option_value('--accelerator', 'cpu')} (or gpu)."
        ) from None
