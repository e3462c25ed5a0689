"""Pre-training runs: run directories, the data module, the Trainer, resume."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from tribyol.config import ConfigError, RunConfig, to_dict
from tribyol.data import TensorImages
from tribyol.data.pretrain import load_pretrain_data
from tribyol.engine.callbacks import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    AtomicCheckpoint,
    RNGState,
    Throughput,
)
from tribyol.engine.loader import BatchLoader, EpochBatches
from tribyol.engine.module import PretrainModule, data_info_for, uses_cuda
from tribyol.engine.monitor import knn_monitor
from tribyol.errors import RunDirExistsError

log = logging.getLogger(__name__)


def run_name(cfg: RunConfig) -> str:
    """mmpretrain-style: method, backbone, effective batch, epochs, dataset."""
    t = cfg.train
    batch = f"b{t.batch_size}" + (f"-accum{t.accumulate}" if t.accumulate > 1 else "")
    return cfg.name or f"{cfg.method['name']}_{cfg.model.backbone}_{batch}_e{t.epochs}_{cfg.data.dataset}"


def is_secondary_rank() -> bool:
    """True in a DDP process other than global rank 0 (launched by Lightning, torchrun or SLURM).

    Lightning's DDP launcher re-runs the whole command for ranks 1..N-1, after rank 0 has made
    the run directory: those must neither refuse it as existing nor delete it for --overwrite.
    """
    return any(os.environ.get(k, "0") not in ("", "0") for k in
               ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def prepare_run_dir(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> Path:
    run_dir = Path(cfg.run_dir) / run_name(cfg)
    if is_secondary_rank():
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            shutil.rmtree(run_dir)
        elif not resume:
            raise RunDirExistsError(
                f"run directory {run_dir} already exists. Pass --resume to continue it, "
                f"--overwrite to replace it, or --name to start a new one."
            )
    elif resume:
        raise FileNotFoundError(
            f"--resume given but {run_dir} does not exist or is empty; drop --resume to start "
            f"a new run, or check --run-dir/--name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def select_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest readable checkpoint of a run: ``last.ckpt``, else ``previous.ckpt``.

    Each candidate is fully read with ``torch.load(weights_only=True)`` (so a pickle carrying
    code is refused, not run). A broken ``last.ckpt`` is moved aside to ``last.ckpt.corrupt``,
    so that the next save does not rotate it over the good ``previous.ckpt``. Raises
    ``CheckpointError`` when checkpoints exist but none can be read; ``None`` when there are none.
    """
    from tribyol.export import CheckpointError, load_checkpoint

    folder = run_dir / "checkpoints"
    last, previous = folder / CHECKPOINT_NAME, folder / PREVIOUS_NAME
    errors = []
    for path in (last, previous):
        if not path.exists():
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            errors.append(str(err))
            log.error("%s", err)
            continue
        if "loops" not in ckpt or "optimizer_states" not in ckpt:
            errors.append(f"{path} holds weights only (no loop/optimizer state); cannot resume")
            log.error("%s", errors[-1])
            continue
        if path == previous and last.exists():
            if not is_secondary_rank():
                os.replace(last, folder / f"{CHECKPOINT_NAME}.corrupt")
            log.warning("last.ckpt is unreadable (kept as %s.corrupt); resuming from %s",
                        CHECKPOINT_NAME, path)
        log.info("resuming from %s (step %s)", path, ckpt.get("global_step"))
        return path
    if errors:
        raise CheckpointError(
            f"no readable checkpoint to resume from in {folder}: " + " ".join(errors)
            + " Start again with --overwrite, or restore a checkpoint from a backup."
        )
    return None


class PretrainData(L.LightningDataModule):
    """Serves the pre-training set, moved onto the training device when it fits in memory.

    The loader's position (epoch, batches done) travels in the datamodule's checkpoint state.
    Lightning's own stateful-loader restore does not reach it: ``configure_optimizers`` asks for
    ``estimated_stepping_batches``, which builds the loader before the loop state is restored,
    so a mid-epoch resume would silently restart the epoch. The datamodule state is restored
    first, and every loader built afterwards starts where the checkpoint left off.
    """

    def __init__(self, cfg: RunConfig, dataset: Any) -> None:
        super().__init__()
        self.cfg, self.dataset = cfg, dataset
        self.loader: BatchLoader | None = None
        self._resume_state: dict[str, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"loader": self.loader.state_dict()} if self.loader is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_state = state.get("loader")

    def setup(self, stage: str) -> None:
        if isinstance(self.dataset, TensorImages) and self.cfg.data.on_device:
            self.dataset = self.dataset.to(self.trainer.strategy.root_device)

    def train_dataloader(self) -> BatchLoader:
        t = self.cfg.train
        sampler = EpochBatches(
            len(self.dataset), t.batch_size, t.seed, self.trainer.global_rank, self.trainer.world_size
        )
        pin = torch.cuda.is_available() and not isinstance(self.dataset, TensorImages)
        self.loader = BatchLoader(self.dataset, sampler, self.cfg.data.num_workers, pin)
        if self._resume_state is not None:
            self.loader.load_state_dict(self._resume_state)
        return self.loader


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


def build_trainer(cfg: RunConfig, run_dir: Path, extra_callbacks: list | None = None) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    t = cfg.train
    # One CSV folder per attempt: Lightning's CSV logger would wipe an existing one on resume.
    attempt = len(list((run_dir / "logs").glob("attempt*"))) if (run_dir / "logs").exists() else 0
    loggers = [CSVLogger(str(run_dir), name="logs", version=f"attempt{attempt}")]
    try:
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tb"))
    except ModuleNotFoundError:  # tensorboard is a dependency, but keep training without it
        log.warning("tensorboard is not installed; logging to CSV only")
    callbacks = [
        AtomicCheckpoint(run_dir / "checkpoints", t.ckpt_every_steps),
        RNGState(),
        Throughput(t.batch_size, run_dir / "throughput.json"),
        *(extra_callbacks or []),
    ]
    if t.progress_bar:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_steps)))
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
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=t.log_every_steps,
        use_distributed_sampler=False,  # EpochBatches shards by rank itself
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(run_dir),
    )


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """All rows of a run's CSV logs, every attempt (resume) in order; empty cells dropped."""
    import csv

    rows: list[dict[str, float]] = []
    attempts = sorted(Path(run_dir, "logs").glob("attempt*"), key=lambda p: int(p.name[7:]))
    for folder in attempts:
        path = folder / "metrics.csv"
        if path.exists():
            with open(path, newline="") as f:
                rows += [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return rows


def pretrain(
    cfg: RunConfig,
    resume: bool = False,
    overwrite: bool = False,
    extra_callbacks: list | None = None,
) -> Path:
    """Run (or resume) a pre-training; returns the run directory."""
    run_dir = prepare_run_dir(cfg, resume, overwrite)
    ckpt = None
    if resume:
        saved = run_dir / "config.yaml"
        if saved.exists() and yaml.safe_load(saved.read_text()) != to_dict(cfg):
            log.warning("resuming with a config that differs from %s; the new one is used", saved)
        ckpt = select_resume_checkpoint(run_dir)
        if ckpt is None:
            log.warning("%s has no checkpoint yet; starting from step 0", run_dir)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dataset = load_pretrain_data(cfg)
    if len(dataset) < cfg.train.batch_size:  # fail before the run directory gets any files
        raise ConfigError(
            f"{len(dataset)} training images are fewer than one batch of {cfg.train.batch_size}; "
            "lower train.batch_size or add data"
        )
    dataset, monitors = knn_monitor(cfg, dataset)  # holds out data.monitor_fraction, if on
    info = data_info_for(cfg, dataset)
    module = PretrainModule(to_dict(cfg), vars(info))
    if not is_secondary_rank():
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    trainer = build_trainer(cfg, run_dir, [*monitors, *(extra_callbacks or [])])
    trainer.fit(
        module,
        datamodule=PretrainData(cfg, dataset),
        ckpt_path=str(ckpt) if ckpt is not None else None,
        weights_only=True,
    )
    return run_dir
