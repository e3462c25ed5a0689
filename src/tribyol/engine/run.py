"""The pre-training driver: ``pretrain()`` validates a run, writes its start, and trains it.

The steps live beside it: the data module in ``loader``, the Trainer in ``trainer``, resume in
``resume``, run directories in ``rundir`` and ``lock``, callbacks in ``callbacks``,
``checkpointing`` and ``progress``, and what a failure says in ``failures``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import lightning as L

from tribyol.config import RunConfig, read_yaml_file
from tribyol.config.fields import option_name
from tribyol.data.check import check_before_training
from tribyol.data.pretrain import DataInfo, data_info_for, load_pretrain_data, resolved_config
from tribyol.engine.callbacks import CommitReplacement, RunRecord, StopOnSignal
from tribyol.engine.checkpointing import AtomicCheckpoint
from tribyol.engine.failures import is_interrupt, run_error
from tribyol.engine.loader import PretrainData, planned_world_size
from tribyol.engine.lock import LOCK_NAME, RunLock
from tribyol.engine.module import PretrainModule
from tribyol.engine.monitor import knn_monitor
from tribyol.engine.plan import plan_batches
from tribyol.engine.resume import (
    check_resume,
    keep_checkpoint_statistics,
    map_checkpoint,
    select_resume_checkpoint,
)
from tribyol.engine.rundir import (
    Replacement,
    check_is_run,
    is_secondary_rank,
    record_config,
    remove_unstarted_run,
    write_marker,
)
from tribyol.engine.summary import RunSummary
from tribyol.engine.trainer import build_trainer, check_hardware
from tribyol.errors import ConfigError, RunDirExistsError

log = logging.getLogger(__name__)


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
    if t.max_steps > 0 and (num_images is None or t.batch_size == "auto"
                            or t.max_steps < t.epochs * planned_steps_per_epoch(cfg, num_images)):
        budget = f"s{t.max_steps}"
    backbone = cfg.model.backbone.replace(":", "-")  # timm:resnet18: no ':' in a folder name
    return f"{cfg.method.name}_{backbone}_{batch}_{budget}_{cfg.data.dataset}"


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


def _split_record(dataset: Any) -> dict[str, Any] | None:
    """A preset's own train/test split (e.g. ucmerced): its seed and the hash of its file lists."""
    split = (getattr(dataset, "info", None) or {}).get("split")
    return {k: split[k] for k in ("seed", "sha256") if k in split} if split else None


def build_module(cfg: RunConfig, info: DataInfo) -> PretrainModule:
    """The networks for this config and data; one that cannot be built is a ``ConfigError``."""
    try:
        return PretrainModule(cfg, info)
    except ConfigError:  # already one line (e.g. model.weights that do not fit the backbone)
        raise
    except ValueError as err:  # a method's options that do not fit the data, e.g. PIRL's grid
        raise ConfigError(f"method '{cfg.method.name}' cannot be built for this data: {err}; "
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


@dataclasses.dataclass
class _Start:
    """A validated run, before anything of it is written; ``_write_start`` fills in the rest."""

    cfg: RunConfig
    dataset: Any
    run_dir: Path
    lock: RunLock
    secondary: bool  # a DDP rank other than 0: it neither checks nor writes the run directory
    replace: bool  # --overwrite of an existing run
    ckpt: Path | None
    changes: dict[str, tuple[Any, Any]]
    batch_plan: dict[str, Any] | None = None  # train.batch_size=auto: the batch finder's table
    replacement: Replacement | None = None
    claimed: bool = False  # a folder this run made (or found holding only a dead run's lock)


def _pretrain(cfg: RunConfig, resume: bool | str | Path, overwrite: bool, extra_callbacks: list | None,
              resume_command: str | None, locks: list[RunLock]) -> Path:
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
    dataset, monitors = _training_data(cfg)
    run_dir, resume = _run_dir_for(cfg, len(dataset), resume)
    exists = check_run_dir(run_dir, resume, overwrite)
    cfg, batch_plan = _auto_batch(cfg, dataset, run_dir if exists and resume else None)
    _check_one_batch(cfg, dataset)
    lock = RunLock(run_dir)
    locks.append(lock)
    if exists and not secondary:
        # Before its checkpoint is read (a broken one is moved aside) or anything is written:
        # a run still training there, or a second --resume or --overwrite of it, is refused.
        lock.acquire()
    if not secondary:  # data.bad_images=error: every image decoded once, before any step
        check_before_training(dataset, cfg.data.bad_images)
    info = data_info_for(cfg, dataset)
    ckpt, mapped = _resume_checkpoint(run_dir, info) if resume else (None, None)
    if mapped is not None:
        info = keep_checkpoint_statistics(mapped, info)
    cfg = resolved_config(cfg, info)
    module = build_module(cfg, info)
    changes = check_resume(run_dir, cfg, ckpt, mapped, module) if resume and not secondary else {}
    start = _Start(cfg, dataset, run_dir, lock, secondary, exists and overwrite and not secondary,
                   ckpt, changes, batch_plan)
    commit = CommitReplacement()
    callbacks: list = [*monitors, *(extra_callbacks or []), commit,
                       RunRecord(run_dir, {"method": cfg.method.name, "dataset": cfg.data.dataset}),
                       RunSummary(run_dir, cfg, info)]
    # The Trainer checks strategy, devices and precision; it writes nothing until fit.
    trainer = build_trainer(cfg, run_dir, callbacks)
    _train(trainer, module, start, commit, resume_command)
    return run_dir


def _training_data(cfg: RunConfig) -> tuple[Any, list[L.Callback]]:
    """The training images and the monitors' callbacks; fewer images than a batch is refused."""
    dataset = load_pretrain_data(cfg)
    # The monitor's held-out images leave first: the run is named by the steps it will take.
    dataset, monitors = knn_monitor(cfg, dataset)  # holds out data.monitor_fraction, if on
    return dataset, monitors


def _check_one_batch(cfg: RunConfig, dataset: Any) -> None:
    if len(dataset) < cfg.train.batch_size:
        raise ConfigError(
            f"{len(dataset)} training images are fewer than one batch of {cfg.train.batch_size}; "
            "lower train.batch_size or add data"
        )


def _auto_batch(cfg: RunConfig, dataset: Any, resumed: Path | None) -> tuple[RunConfig, Any]:
    """``train.batch_size=auto``: the batch finder's choice (and its table, for run.json), or
    on resume the batch the run's config.yaml recorded; any other batch as it is."""
    if cfg.train.batch_size != "auto":
        return cfg, None
    if resumed is not None:
        saved = (read_yaml_file(resumed / "config.yaml")
                 if (resumed / "config.yaml").is_file() else {}) or {}
        batch, plan = (saved.get("train") or {}).get("batch_size"), None
        if not isinstance(batch, int) or isinstance(batch, bool):
            raise ConfigError(f"train.batch_size=auto on resume reads the batch {resumed} "
                              "recorded in its config.yaml, which has none; give "
                              "--batch-size N (the batch the run trained at)")
    else:
        found = plan_batches(cfg, dataset, data_info_for(cfg, dataset),
                             memory_gib=cfg.train.memory_gib)
        batch, plan = found.chosen, found.record()
        log.info("train.batch_size=auto: batch %d (largest within %.2f GiB)", batch,
                 plan["budget_gib"])
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch)), plan


def _run_dir_for(cfg: RunConfig, num_images: int, resume: bool | str | Path) -> tuple[Path, bool]:
    """The run directory, and whether this start resumes it."""
    run_dir = Path(cfg.runs_root) / run_name(cfg, num_images)
    if isinstance(resume, (str, Path)):  # that folder, whatever name the config would give
        return Path(resume), True
    return run_dir, bool(resume)


def _resume_checkpoint(run_dir: Path, info: DataInfo) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume from and its mapped contents, or ``(None, None)``."""
    ckpt = select_resume_checkpoint(run_dir)
    return (ckpt, map_checkpoint(ckpt)) if ckpt is not None else (None, None)


def _write_start(start: _Start, commit: CommitReplacement, resume_command: str | None) -> None:
    """Validated: from here on, files are written. Move the replaced run aside, or make and
    lock a new folder; then the config and the ``starting`` marker (rank 0 only)."""
    cfg, run_dir = start.cfg, start.run_dir
    if start.replace:
        start.replacement = commit.replacement = Replacement(run_dir, start.lock)
    elif not start.secondary and not start.lock.held:
        claim_new_run_dir(run_dir, start.lock)
        start.claimed = True
    if start.secondary:
        return
    record_config(run_dir, cfg, start.changes)
    write_marker(run_dir, name=run_dir.name, status="starting",
                 resume_command=resume_command, batch_size=cfg.train.batch_size,
                 accumulate=cfg.train.accumulate, epochs_planned=cfg.train.epochs,
                 max_steps=cfg.train.max_steps, data_split=_split_record(start.dataset),
                 **({"batch_plan": start.batch_plan} if start.batch_plan else {}))


def _train(trainer: L.Trainer, module: PretrainModule, start: _Start, commit: CommitReplacement,
           resume_command: str | None) -> None:
    """Write the run's start and fit, stopping on SIGTERM / SIGINT with a checkpoint; a failure
    puts a replaced run back and is raised as one line where ``run_error`` has one."""
    stop = None
    try:
        _write_start(start, commit, resume_command)
        saver = next(c for c in trainer.callbacks if isinstance(c, AtomicCheckpoint))
        stop = StopOnSignal(saver.save, resume_command)
        trainer.callbacks.append(stop)
        stop.install()
        trainer.fit(
            module,
            datamodule=PretrainData(start.cfg, start.dataset),
            ckpt_path=str(start.ckpt) if start.ckpt is not None else None,
            weights_only=True,
        )
        if start.replacement is not None:
            start.replacement.commit()  # a run that made no step (if Lightning had nothing to do)
    except BaseException as err:
        error = _after_failure(err, start, stop, trainer, resume_command)
        if error is None:
            raise
        raise error from None
    finally:
        if stop is not None:
            stop.uninstall()


def _after_failure(err: BaseException, start: _Start, stop: StopOnSignal | None, trainer: L.Trainer,
                   resume_command: str | None) -> BaseException | None:
    """Put a replaced run back, remove a new run's folder after a signal; the error to raise."""
    # Before the new run's first good step, a failure of any kind puts the old run back.
    restored = start.replacement is not None and start.replacement.restore()
    if start.claimed and is_interrupt(err):
        # Ctrl+C / SIGTERM before the first checkpoint: nothing to resume, so the folder
        # goes and the same command starts again (it needed --resume of a run of no step).
        remove_unstarted_run(start.run_dir)
    return run_error(err, start.run_dir, restored, resume_command, stop, trainer)
