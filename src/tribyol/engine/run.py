"""Pre-training runs: run directories, the data module, the Trainer, resume, signals."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tribyol.checkpoints import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    describe_kept,
    load_checkpoint,
    read_checkpoint,
)
from tribyol.config import RunConfig
from tribyol.config.fields import option_name, option_value
from tribyol.data import TensorImages
from tribyol.data.check import check_before_training
from tribyol.data.pretrain import DataInfo, data_info_for, load_pretrain_data
from tribyol.engine.callbacks import (
    AtomicCheckpoint,
    PlainProgress,
    RNGState,
    RunRecord,
    StopOnSignal,
    Throughput,
    disk_error,
)
from tribyol.engine.loader import BatchLoader, EpochBatches
from tribyol.engine.module import PretrainModule, uses_cuda
from tribyol.engine.monitor import knn_monitor
from tribyol.engine.rundir import (
    LOCK_NAME,
    Replacement,
    RunLock,
    check_checkpoint_fits,
    check_is_run,
    check_resume_config,
    keep_checkpoint_statistics,
    map_checkpoint,
    record_config,
    remove_unstarted_run,
    write_marker,
)
from tribyol.engine.summary import RunSummary
from tribyol.errors import (
    CheckpointError,
    ConfigError,
    DiskWriteError,
    NonFiniteLossError,
    RunDirExistsError,
    RunStopped,
)
from tribyol.resolve import resolve_run

log = logging.getLogger(__name__)

# Lightning's hint for runs shorter than the logging interval is noise for short runs.
warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")


def planned_world_size(cfg: RunConfig) -> int:
    """Processes the run will have, as far as the config says (names only; run.json has the truth)."""
    t = cfg.train
    devices = t.devices
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif str(devices).strip() in ("auto", "-1"):
        count = torch.cuda.device_count() if uses_cuda(cfg) else 1
    elif "," in str(devices):
        count = len([d for d in str(devices).split(",") if d.strip()])
    else:
        count = int(devices)
    return max(1, count) * t.num_nodes


def planned_steps_per_epoch(cfg: RunConfig, num_images: int) -> int:
    t = cfg.train
    return max(1, num_images // (t.batch_size * planned_world_size(cfg)) // t.accumulate)


def run_name(cfg: RunConfig, num_images: int | None = None) -> str:
    """Method, backbone, batch, budget, dataset: ``e80`` for epochs, ``s10`` when max_steps ends sooner.

    The batch is per device, with ``-accumN`` under gradient accumulation and ``xW`` for W
    processes: the batch BatchNorm and the loss see stays visible.
    """
    if cfg.name:
        return cfg.name
    t = cfg.train
    world = planned_world_size(cfg)
    batch = (f"b{t.batch_size}" + (f"-accum{t.accumulate}" if t.accumulate > 1 else "")
             + (f"x{world}" if world > 1 else ""))
    budget = f"e{t.epochs}"
    if t.max_steps > 0 and (num_images is None
                            or t.max_steps < t.epochs * planned_steps_per_epoch(cfg, num_images)):
        budget = f"s{t.max_steps}"
    return f"{cfg.method['name']}_{cfg.model.backbone}_{batch}_{budget}_{cfg.data.dataset}"


def is_secondary_rank() -> bool:
    """True in a DDP process other than global rank 0 (launched by Lightning, torchrun or SLURM).

    Lightning's DDP launcher re-runs the whole command for ranks 1..N-1, after rank 0 has made
    the run directory: those must neither refuse it as existing nor touch it.
    """
    return any(os.environ.get(k, "0") not in ("", "0") for k in
               ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _run_dir_choices() -> str:
    """What to do about a run directory that exists, in the user's words (flags or the API's)."""
    return (f"Pass {option_name('--resume')} to continue it, {option_name('--overwrite')} to "
            f"replace it, or {option_name('--name')} to start a new one.")


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Validate the run directory for this start, touching nothing; returns whether it holds a run."""
    # A folder holding only a lock is a run that another process is starting (or one killed
    # before it wrote anything): the lock decides, in claim_new_run_dir.
    exists = run_dir.exists() and (not run_dir.is_dir()
                                   or any(p.name != LOCK_NAME for p in run_dir.iterdir()))
    if is_secondary_rank():
        return exists
    if resume and not exists:
        resume_flag = option_name("--resume")
        raise FileNotFoundError(
            f"{resume_flag} given but {run_dir} does not exist or is empty; drop {resume_flag} "
            f"to start a new run, or check {option_name('--runs-root')}/{option_name('--name')}"
        )
    if exists and not (resume or overwrite):
        raise RunDirExistsError(f"run directory {run_dir} already exists. {_run_dir_choices()}")
    if exists:
        check_is_run(run_dir, "resume" if resume else "replace")
    return exists


def claim_new_run_dir(run_dir: Path, lock: RunLock) -> None:
    """Make and lock the folder of a new run; refuse it if another run got there first.

    Two runs started together both find no folder: the lock lets one in, and the other, once
    it holds the lock, finds the first one's files and stops before writing any of its own.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise RunDirExistsError(
            f"run directory {run_dir} was made by another run while this one started. "
            f"{_run_dir_choices()}"
        )


def select_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest readable checkpoint of a run: ``last.ckpt``, else ``previous.ckpt``.

    Each candidate is fully read with ``torch.load(weights_only=True)`` (so a pickle carrying
    code is refused, not run) and its tensor checksum verified. A broken ``last.ckpt`` is moved
    aside to ``last.ckpt.corrupt``, so that the next save does not rotate it over the readable
    ``previous.ckpt``. Raises ``CheckpointError`` when checkpoints exist but none can be read;
    ``None`` when there are none.
    """
    folder = run_dir / "checkpoints"
    last, previous = folder / CHECKPOINT_NAME, folder / PREVIOUS_NAME
    errors = []
    for path in (last, previous):
        if not path.exists():
            continue
        try:
            ckpt = read_checkpoint(path)
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
            + f" Start again with {option_name('--overwrite')}, or restore a checkpoint from a "
            "backup."
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


class LoaderPosition(L.Callback):
    """Counts each batch as consumed when its step starts; ``PretrainData.state_dict`` (the
    checkpoint) reads the count at the step's end, so a resume continues with the next batch."""

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        loader = getattr(trainer.datamodule, "loader", None)
        if loader is not None:
            loader.completed += 1


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


class AttemptCSVLogger(CSVLogger):
    """One CSV folder per attempt (Lightning's would wipe an existing one on resume), counted
    when the first row is written, so a replaced run's old attempts do not count. At module
    level: ddp_spawn pickles the trainer's loggers."""

    def _get_next_version(self) -> str:  # type: ignore[override]
        return f"attempt{len(list(Path(self.root_dir).glob('attempt*')))}"


def build_trainer(cfg: RunConfig, run_dir: Path, extra_callbacks: list | None = None) -> L.Trainer:
    t = cfg.train
    loggers = [AttemptCSVLogger(str(run_dir), name="logs")]
    try:
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tb"))
    except ModuleNotFoundError:  # tensorboard is a dependency, but keep training without it
        log.warning("tensorboard is not installed; logging to CSV only")
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


def _split_record(dataset: Any) -> dict[str, Any] | None:
    """A preset's own train/test split (e.g. ucmerced): its seed and the hash of its file lists."""
    split = (getattr(dataset, "info", None) or {}).get("split")
    return {k: split[k] for k in ("seed", "sha256") if k in split} if split else None


def resolved_config(cfg: RunConfig, info: DataInfo) -> RunConfig:
    """The config with what the data decided written in (channels, view size)."""
    data = dataclasses.replace(cfg.data, channels=info.channels, image_size=info.image_size)
    return dataclasses.replace(cfg, data=data)


def _disk_error_message(err: OSError, run_dir: Path, restored: bool,
                        resume_command: str | None) -> DiskWriteError:
    """A full or read-only disk mid-run: one line naming the file, the reason and the last good
    checkpoint (no traceback); the write that failed left no temporary file behind."""
    target = re.sub(r"(^|/)\.([^/]+?)(?:\.[0-9a-f]{12})?\.tmp$", r"\1\2", str(err.filename or ""))
    what = f"cannot write {target}" if target else "cannot write to the disk"
    if restored:
        kept = f"the run it was to replace is back in {run_dir}, untouched"
    else:
        kept = describe_kept(run_dir / "checkpoints")
    fix = ("free some space on that disk (or move the run to a larger one)" if err.errno in
           (errno.ENOSPC, errno.EDQUOT) else "make that folder writable")
    again = f"resume with: {resume_command}" if resume_command else f"resume with {option_name('--resume')}"
    return DiskWriteError(f"{what}: {err.strerror or err}; {kept}. To go on, {fix}, then {again}")


def _true_nan_message(err: NonFiniteLossError, run_dir: Path,
                      restored: bool = False) -> NonFiniteLossError:
    """The module cannot know whether a checkpoint exists; say which one is kept, if any
    (``restored``: the run that ``--overwrite`` was to replace is back)."""
    last = run_dir / "checkpoints" / CHECKPOINT_NAME
    if restored:
        kept = f"the run it was to replace is back in {run_dir}, untouched"
    elif last.exists():
        try:
            step = load_checkpoint(last).get("global_step")
            kept = f"the last good checkpoint ({last}, step {step}) is kept"
        except CheckpointError:
            kept = f"the last checkpoint written is {last}"
    else:
        kept = "no checkpoint had been written yet, so nothing was saved"
    return NonFiniteLossError(str(err).replace("the last good checkpoint is kept", kept))


def build_module(cfg: RunConfig, info: DataInfo) -> PretrainModule:
    """The networks for this config and data; one that cannot be built is a ``ConfigError``."""
    try:
        return PretrainModule(resolve_run(cfg), info)
    except ValueError as err:  # a method's options that do not fit the data, e.g. PIRL's grid
        raise ConfigError(f"method '{cfg.method['name']}' cannot be built for this data: {err}; "
                          "change the method's option or data.image_size") from None
    except RuntimeError as err:
        if "alloc" not in str(err).lower():
            raise
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"not enough memory to build the networks ({first[:160]}); lower "
                          "model.width, model.hidden_dim, data.image_size or method.num_views") from None


def pretrain(
    cfg: RunConfig,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    extra_callbacks: list | None = None,
    resume_command: str | None = None,
) -> Path:
    """Run (or resume) a pre-training; returns the run directory (``_pretrain`` says how).

    The run directory's lock (``RunLock``, ``.tribyol.lock``) is held from the moment the
    directory is known until the run ends, however it ends: a second process is refused.
    """
    locks: list[RunLock] = []
    try:
        return _pretrain(cfg, resume, overwrite, extra_callbacks, resume_command, locks)
    finally:
        for lock in locks:
            lock.release()


def _pretrain(
    cfg: RunConfig,
    resume: bool | str | Path,
    overwrite: bool,
    extra_callbacks: list | None,
    resume_command: str | None,
    locks: list[RunLock],
) -> Path:
    """Run (or resume) a pre-training; returns the run directory.

    Everything is validated (config, hardware, run directory, data, networks, the checkpoint
    and its config on resume) before anything is written. ``overwrite`` replaces an existing
    run only if it is one of ours, and only once the new run has started. SIGTERM / SIGINT stop
    the run with a checkpoint and raise ``RunStopped``, whose message ends with
    ``resume_command``. ``resume`` as a path resumes that run folder (``--resume RUN_DIR``).
    """
    secondary = is_secondary_rank()
    check_hardware(cfg)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dataset = load_pretrain_data(cfg)
    # The monitor's held-out images leave first: the run is named by the steps it will take.
    dataset, monitors = knn_monitor(cfg, dataset)  # holds out data.monitor_fraction, if on
    if len(dataset) < cfg.train.batch_size:
        raise ConfigError(
            f"{len(dataset)} training images are fewer than one batch of {cfg.train.batch_size}; "
            "lower train.batch_size or add data"
        )
    run_dir = Path(cfg.runs_root) / run_name(cfg, len(dataset))
    if isinstance(resume, (str, Path)):  # that folder, whatever name the config would give
        run_dir, resume = Path(resume), True
    exists = check_run_dir(run_dir, resume, overwrite)
    lock = RunLock(run_dir)
    locks.append(lock)
    if exists and not secondary:
        # Before its checkpoint is read (a broken one is moved aside) or anything is written:
        # a run still training there, or a second --resume or --overwrite of it, is refused.
        lock.acquire()
    if not secondary:  # data.bad_images=error: every image decoded once, before any step
        check_before_training(dataset, cfg.data.bad_images)
    info = data_info_for(cfg, dataset)
    ckpt, mapped, changes = None, None, {}
    if resume:
        ckpt = select_resume_checkpoint(run_dir)
        if ckpt is not None:
            mapped = map_checkpoint(ckpt)
            info = keep_checkpoint_statistics(mapped, info)
    cfg = resolved_config(cfg, info)
    module = build_module(cfg, info)
    if resume and not secondary:
        changes = check_resume_config(run_dir, cfg)
        if ckpt is None:
            log.warning("%s has no checkpoint yet; starting from step 0", run_dir)
        else:
            check_checkpoint_fits(ckpt, mapped, module.state_dict(), type(module.method))

    replace = exists and overwrite and not secondary
    commit = _CommitReplacement()
    callbacks: list = [*monitors, *(extra_callbacks or []), commit,
                       RunRecord(run_dir, {"method": cfg.method["name"], "dataset": cfg.data.dataset}),
                       RunSummary(run_dir, cfg, info)]
    # The Trainer checks strategy, devices and precision; it writes nothing until fit.
    trainer = build_trainer(cfg, run_dir, callbacks)

    # Validated: from here on, files are written.
    replacement: Replacement | None = None
    stop = None
    claimed = False  # a folder this run made (or found holding only a dead run's lock)
    try:
        if replace:
            replacement = commit.replacement = Replacement(run_dir, lock)
        elif not secondary and not lock.held:
            claim_new_run_dir(run_dir, lock)
            claimed = True
        if not secondary:
            record_config(run_dir, cfg, changes)
            write_marker(run_dir, name=run_dir.name, status="starting",
                         resume_command=resume_command, batch_size=cfg.train.batch_size,
                         accumulate=cfg.train.accumulate, epochs_planned=cfg.train.epochs,
                         max_steps=cfg.train.max_steps, data_split=_split_record(dataset))
        saver = next(c for c in trainer.callbacks if isinstance(c, AtomicCheckpoint))
        stop = StopOnSignal(saver.save, resume_command)
        trainer.callbacks.append(stop)
        stop.install()
        trainer.fit(
            module,
            datamodule=PretrainData(cfg, dataset),
            ckpt_path=str(ckpt) if ckpt is not None else None,
            weights_only=True,
        )
        if replacement is not None:
            replacement.commit()  # a run that made no step (if Lightning had nothing to do)
    except BaseException as err:
        # Before the new run's first good step, a failure of any kind puts the old run back.
        restored = replacement is not None and replacement.restore()
        if claimed and _is_interrupt(err):
            # Ctrl+C / SIGTERM before the first checkpoint: nothing to resume, so the folder
            # goes and the same command starts again (it needed --resume of a run of no step).
            remove_unstarted_run(run_dir)
        if isinstance(err, SIGTERMException):
            # Lightning's own SIGTERM path (at an epoch end): the epoch's checkpoint is on disk.
            assert stop is not None
            raise RunStopped(stop.signum or 15, trainer.global_step, resume_command) from None
        if isinstance(err, NonFiniteLossError):
            raise _true_nan_message(err, run_dir, restored) from None
        disk = disk_error(err) if isinstance(err, Exception) else None
        if disk is not None and not isinstance(err, DiskWriteError):
            raise _disk_error_message(disk, run_dir, restored, resume_command) from None
        raise
    finally:
        if stop is not None:
            stop.uninstall()
    return run_dir


def _is_interrupt(err: BaseException) -> bool:
    """A signal ended the command (Ctrl+C, SIGTERM), not a failure of the run's."""
    return isinstance(err, (KeyboardInterrupt, SIGTERMException, RunStopped)) or \
        not isinstance(err, Exception)  # the CLI's SIGTERM before training, SystemExit


class _CommitReplacement(L.Callback):
    """Deletes the replaced run, if any, once the new run's first optimizer step has succeeded:
    its batches decoded, and the loss computed with its weights (the next step's) and the
    weights checked finite here; the module checks only every ``train.log_every_steps``
    steps. Until then, a failure puts the old run back (a run of one step: at its end)."""

    replacement: Replacement | None = None
    _first_step = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        # A too-high learning rate leaves finite but huge weights after the first update: the
        # loss turns NaN on the next forward pass, so that step is waited for too.
        if self.replacement is None or trainer.global_step < self._first_step + 2:
            return
        if hasattr(module, "check_finite"):
            module.check_finite()  # every rank: each raises alike on NaN weights
        if trainer.is_global_zero:
            self.replacement.commit()
        self.replacement = None
