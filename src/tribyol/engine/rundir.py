"""Run directories: the marker that makes them ours, the lock, safe replacement, and config
changes on resume.

tribyol deletes a folder only when it carries the run marker (``run.json``) and every file in
it, at every depth, is one a run writes (``run_files``). A replaced run is first renamed aside
and deleted only once the new run's first optimizer step has succeeded with a finite loss, so a
failed start puts it back. A lock file (``.tribyol.lock``: pid and host) keeps two processes out
of one run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import torch
import yaml

from tribyol.config import RunConfig, dotted_items, read_yaml_file, to_dict, upgrade_tree
from tribyol.config.fields import option_name, option_value
from tribyol.config.structured import build_dataclass
from tribyol.data.pretrain import DataInfo
from tribyol.errors import (
    CheckpointError,
    ConfigError,
    DiskWriteError,
    RunDirExistsError,
    RunDirLockedError,
)
from tribyol.methods import upgrade_state_keys
from tribyol.resolve import full_method

log = logging.getLogger(__name__)

RUN_MARKER = "run.json"
RUN_FORMAT = "tribyol-run-v1"
CONFIG_NAME = "config.yaml"
LOCK_NAME = ".tribyol.lock"
# Every file a run writes, as paths inside its directory (write_atomic's ".<name>.<hex>.tmp"
# and a killed checkpoint's ".last.ckpt.<hex>.tmp" included, and the older ".<name>.tmp");
# Lightning's loggers write the logs/ and tb/ ones. Anything else, at any depth, is someone
# else's: --overwrite refuses to delete it.
_TOP_FILES = r"run\.json|config\.yaml|config\.attempt\d+\.yaml|throughput\.json"
_TMP = r"(?:\.[0-9a-f]{12})?\.tmp"  # temp_path's suffix
_RUN_FILE = re.compile("|".join((
    rf"(?:{_TOP_FILES})",
    rf"\.(?:{_TOP_FILES}){_TMP}",
    r"\.tribyol\.lock(?:\.stale-[0-9a-f]+)?",
    r"checkpoints/(?:last|previous)\.ckpt",
    rf"checkpoints/\.last\.ckpt{_TMP}|checkpoints/last\.ckpt\.corrupt",
    r"logs/attempt\d+/(?:metrics\.csv|hparams\.yaml)",
    r"tb/hparams\.yaml|tb/events\.out\.tfevents\.[^/]+",
)))
_RUN_FOLDER = re.compile(r"checkpoints|logs|logs/attempt\d+|tb")
# Config keys whose change makes a checkpoint unusable: they decide the networks' shapes.
BREAKING_KEYS = (
    "method.name", "method.num_views", "method.target_policy", "method.pred_hidden_dim",
    "model.backbone", "model.width", "model.hidden_dim", "model.proj_dim",
    "model.small_stem", "model.norm", "model.norm_groups", "data.dataset",
)  # data.channels / image_size: legacy configs hold unresolved values; the shape check covers them


def temp_path(path: Path) -> Path:
    """A new temporary name beside ``path``, ``.<name>.<12 hex>.tmp``: in the destination folder,
    so the rename is atomic and nothing is staged elsewhere ($TMPDIR may be small or absent)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def is_temp_of(path: Path, name: str) -> bool:
    """Whether ``path`` is a temporary file that ``temp_path`` (or an older version) made for ``name``."""
    return re.fullmatch(rf"\.{re.escape(name)}(?:\.[0-9a-f]{{12}})?\.tmp", path.name) is not None


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse it; the rename is done
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a new temporary file beside ``path``, fsync it, rename it over ``path``.

    Every JSON / YAML file of a run is written so: a reader sees the old file or the new one,
    never a truncated one. On any failure (a full disk, a signal) the temporary file is removed
    and ``path`` keeps its old content.
    """
    tmp = temp_path(path)
    created = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    fsync_dir(path.parent)


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((run_dir / RUN_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == RUN_FORMAT else None


def write_marker(run_dir: Path, **fields: Any) -> None:
    """Create or update ``run.json`` (the fields given replace the stored ones)."""
    marker = read_marker(run_dir) or {"format": RUN_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    marker.update(fields)
    write_atomic(run_dir / RUN_MARKER, json.dumps(marker, indent=2) + "\n")


def foreign_files(run_dir: Path) -> list[str]:
    """Paths in ``run_dir``, at any depth, that no run writes (a folder of them as ``name/``).

    Links and other non-regular files are never a run's, whatever their name.
    """
    foreign: list[str] = []

    def scan(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if is_dir and _RUN_FOLDER.fullmatch(rel):
                    scan(entry.path, rel + "/")
                elif not (entry.is_file(follow_symlinks=False) and _RUN_FILE.fullmatch(rel)):
                    foreign.append(rel + ("/" if is_dir else ""))

    scan(str(run_dir), "")
    return sorted(foreign)


def _name_or_run_dir() -> str:
    """``--name or --runs-root`` on the command line; the API's ``name or run_dir``."""
    return f"{option_name('--name')} or {option_name('--runs-root')}"


def _listed(paths: list[str]) -> str:
    return ", ".join(paths[:5]) + (f" ... ({len(paths)} in all)" if len(paths) > 5 else "")


def check_is_run(run_dir: Path, action: str) -> None:
    """Refuse to ``action`` a folder that is not a tribyol run, naming what makes it foreign.

    A run carries the ``run.json`` marker. To replace it (``action`` other than ``resume``),
    every file in it must also be one a run writes: deleting it must lose nothing else.
    """
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise RunDirExistsError(
            f"{run_dir} is not a run directory (not a plain folder); will not {action} it"
        )
    if read_marker(run_dir) is None:
        foreign = foreign_files(run_dir)
        what = f"it holds {_listed(foreign)}, " if foreign else ""
        raise RunDirExistsError(
            f"{run_dir} is not a tribyol run directory ({what}no {RUN_MARKER} marker); "
            f"will not {action} it. Pick another {_name_or_run_dir()}, or move the folder away."
        )
    if action != "resume":  # resuming deletes nothing
        foreign = foreign_files(run_dir)
        if foreign:
            raise RunDirExistsError(
                f"{run_dir} is not a tribyol run directory as written: it holds files tribyol did "
                f"not write ({_listed(foreign)}); will not {action} it, which would delete them. "
                f"Move them out of the run, or pick another {_name_or_run_dir()}."
            )


def read_lock(path: Path) -> dict[str, Any] | None:
    """A lock file's record (pid, host, ...), or ``None`` when it is gone or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _process_start(pid: int) -> str | None:
    """When the kernel started ``pid`` (Linux ``/proc``), to tell a reused pid from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": field 3 onwards
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or cannot tell: alive
        return True
    return True


def _unlink_if_ours(path: Path, token: str) -> None:
    record = read_lock(path)
    if record is not None and record.get("token") == token:
        path.unlink(missing_ok=True)


class RunLock:
    """``.tribyol.lock`` in a run directory: the process training in it (pid, host, start).

    Taken with ``O_CREAT | O_EXCL``, so two processes never both hold it. A holder that is alive
    on this host, or on another host (which cannot be checked), means refusal; a dead one's lock
    is taken over, with a warning. Only DDP rank 0 takes it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.token = uuid.uuid4().hex  # tells this lock from any other, even of this process
        self.held = False

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_NAME

    def acquire(self) -> None:
        """Lock ``run_dir`` (which must exist); raises ``RunDirLockedError`` if it is in use."""
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_stale()
                continue
            except OSError as err:  # a read-only filesystem, an I/O error, ...: one line
                raise self._cannot_lock(err) from None
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": _process_start(os.getpid()),
                      "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "token": self.token}
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(record) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:  # a full disk: an empty lock file would block the next start
                self.path.unlink(missing_ok=True)
                raise self._cannot_lock(err) from None
            self.held = True
            return
        raise RunDirLockedError(f"{self.run_dir} is being locked by other processes over and over "
                                f"({self.path}); try again once they are done")

    def _cannot_lock(self, err: OSError) -> DiskWriteError:
        """The lock file cannot be written: nothing of the run was touched yet."""
        fix = ("free some space on that disk" if err.errno in (errno.ENOSPC, errno.EDQUOT)
               else "make the folder writable, or copy the run to a writable disk")
        return DiskWriteError(f"cannot lock {self.run_dir}: cannot write {self.path} "
                              f"({err.strerror or err}); {fix}, then try again")

    def _take_over_stale(self) -> None:
        """Remove the lock file there if its holder is gone; raise if it may still run."""
        holder = read_lock(self.path)
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return  # released meanwhile: try again
            if age < 10:  # its holder may be writing it this instant
                raise RunDirLockedError(f"{self.run_dir} is being locked by another process right "
                                        "now; try again in a moment")
            why = "its lock file is unreadable"
        else:
            why = self._dead_holder(holder)
        moved = self.path.with_name(f"{LOCK_NAME}.stale-{self.token}")
        try:
            os.replace(self.path, moved)
        except FileNotFoundError:
            return
        if read_lock(moved) != holder:  # another process took it over first: it is theirs
            with contextlib.suppress(OSError):  # put it back, unless yet another one is there
                os.link(moved, self.path)
            moved.unlink(missing_ok=True)
            raise RunDirLockedError(f"{self.run_dir} was just locked by another process; "
                                    "try again once it is done")
        moved.unlink(missing_ok=True)
        log.warning("took over the lock of %s: %s (a run that ended without releasing it)",
                    self.run_dir, why)

    def _dead_holder(self, holder: dict[str, Any]) -> str:
        """Why ``holder`` no longer runs; raises ``RunDirLockedError`` when it may."""
        pid, host, since = holder.get("pid"), holder.get("host"), holder.get("since", "?")
        if host != socket.gethostname():
            raise RunDirLockedError(
                f"{self.run_dir} is locked by pid {pid} on host {host} (since {since}), which "
                f"this host cannot check; if no run uses it any more, delete {self.path} and "
                "try again"
            )
        if not isinstance(pid, int) or pid <= 0:
            return "it names no process"
        if not _pid_alive(pid):
            return f"pid {pid} on {host} is no longer running"
        started, now = holder.get("started"), _process_start(pid)
        if started and now and started != now:
            return f"pid {pid} on {host} is now another process"
        raise RunDirLockedError(
            f"{self.run_dir} is in use by pid {pid} on this host ({host}, since {since}); wait "
            f"for that run to end or stop it (kill {pid}), then try again"
        )

    def release(self) -> None:
        """Remove the lock, if this process holds it (a no-op otherwise)."""
        if self.held:
            self.held = False
            _unlink_if_ours(self.path, self.token)


def remove_unstarted_run(run_dir: Path) -> bool:
    """Remove the folder a new run made, when it was interrupted before its first checkpoint:
    the same command then simply starts again (no ``--resume`` of a run of no step). Only when
    every file in it is one tribyol writes; returns whether it is gone."""
    try:
        if any((run_dir / "checkpoints" / n).exists() for n in ("last.ckpt", "previous.ckpt")):
            return False
        foreign = foreign_files(run_dir)
        if foreign:
            log.warning("kept %s: it holds files tribyol did not write (%s)", run_dir,
                        _listed(foreign))
            return False
        shutil.rmtree(run_dir)
    except OSError as err:  # a read-only disk: what is there stays, and the error says why
        log.warning("could not remove %s, made by the interrupted run: %s", run_dir, err)
        return False
    log.info("removed %s: the run was interrupted before its first step", run_dir)
    return True


def aside_name(name: str) -> str:
    """Where ``--overwrite`` parks the old run: ``.<name>.replaced-<pid>``, or a hash of the
    name where that would be longer than a folder name may be (255 bytes)."""
    aside = f".{name}.replaced-{os.getpid()}"
    if len(os.fsencode(aside)) > 255:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
        aside = f".tribyol-{digest}.replaced-{os.getpid()}"
    return aside


class Replacement:
    """``--overwrite``: the old run moves aside, and is deleted once the new run's first step
    has succeeded (``commit``); a failure before that puts it back (``restore``).

    ``lock`` holds the old run (it moves aside with it); it is taken again on the new, empty
    run directory made in its place.
    """

    def __init__(self, run_dir: Path, lock: RunLock) -> None:
        self.run_dir, self.lock = run_dir, lock
        self.committed = False
        aside = run_dir.with_name(aside_name(run_dir.name))
        n = 0
        while aside.exists() or aside.is_symlink():  # left by an earlier process of this pid
            n += 1
            aside = run_dir.with_name(f"{aside_name(run_dir.name)}-{n}")
        self.aside = aside
        os.replace(run_dir, self.aside)
        log.info("moved the old run %s aside to %s until the new one has made its first step",
                 run_dir, self.aside)
        try:
            run_dir.mkdir()
            lock.acquire()
        except BaseException:
            self.restore()
            raise

    def commit(self) -> None:
        """The new run made its first step: delete the old one (checked to be a run before it
        moved, and again now, in case someone put a file into it since)."""
        if self.committed:
            return
        self.committed = True
        if not self.aside.is_dir():
            return
        foreign = foreign_files(self.aside)
        if foreign:
            _unlink_if_ours(self.aside / LOCK_NAME, self.lock.token)
            log.warning("kept the replaced run in %s: it now holds files tribyol did not write (%s)",
                        self.aside, _listed(foreign))
            return
        shutil.rmtree(self.aside)
        log.info("deleted the replaced run (%s)", self.aside)

    def restore(self) -> bool:
        """The new run failed in its first steps: drop what it wrote and put the old run
        back. Returns whether the old run is back in ``run_dir``."""
        if self.committed or not self.aside.is_dir():
            return False
        new = self.run_dir
        made_here = (read_lock(new / LOCK_NAME) or {}).get("token") == self.lock.token
        if made_here and new.is_dir() and not new.is_symlink() and not foreign_files(new):
            shutil.rmtree(new)  # only what this run wrote, in the folder it made moments ago
        if new.exists() or new.is_symlink():
            _unlink_if_ours(self.aside / LOCK_NAME, self.lock.token)
            log.error("the new run failed; the old run is kept in %s (%s now holds other files)",
                      self.aside, new)
            return False
        os.replace(self.aside, new)
        log.warning("the new run failed in its first steps; the old run is back in %s", new)
        return True


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every key whose value differs."""
    a, b = dotted_items(old), dotted_items(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def check_resume_config(run_dir: Path, cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Compare the resolved config with the run's saved one; refuse changes that break the checkpoint.

    Returns the allowed changes (empty when the configs agree).
    """
    saved_path = run_dir / CONFIG_NAME
    if not saved_path.exists():
        return {}
    try:
        saved_tree = upgrade_tree(read_yaml_file(saved_path))
        saved_cfg = build_dataclass(RunConfig, saved_tree)
        saved_cfg.method = full_method(saved_cfg.method)  # an older run's defaults and names
        saved = to_dict(saved_cfg)
    except ConfigError as err:
        raise ConfigError(
            f"{saved_path} cannot be read back ({err}); restore it from config.attempt*.yaml"
        ) from None
    changes = config_changes(saved, to_dict(cfg))
    # Older runs saved data.channels / image_size unresolved (the default 3, null); what the
    # data decided is no change by the user, and a real one fails the weight-shape check.
    for key in ("data.channels", "data.image_size"):
        if key in changes and (key == "data.channels" or changes[key][0] is None):
            del changes[key]
    breaking = [k for k in changes if k in BREAKING_KEYS]
    if breaking:
        listed = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in breaking)
        raise ConfigError(
            f"cannot resume {run_dir} with a different network: {listed}. Its checkpoint holds "
            f"the old one; drop {option_name('--resume')} (with {option_name('--name')} for a "
            f"new run), or resume with the saved config: {option_value('--config', str(saved_path))} "
            f"{option_name('--resume')}"
        )
    return changes


def map_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint read a moment ago and verified (``select_resume_checkpoint``), mapped
    (``mmap``): its hyper-parameters and tensor shapes without reading the data a second time."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def check_checkpoint_fits(path: Path, mapped: dict[str, Any], module_state: dict[str, Any],
                          method: type | None = None) -> None:
    """The module about to resume has the same weights (names and shapes) as the checkpoint
    (``mapped``, from ``map_checkpoint(path)``). Weights that ``method`` has renamed since are
    compared under their new names (they load so)."""
    saved = mapped["state_dict"]
    if method is not None:
        saved = upgrade_state_keys(method, saved, prefix="method.")
    missing = sorted(k for k in module_state if k not in saved)
    extra = sorted(k for k in saved if k not in module_state)
    shapes = sorted(k for k in module_state.keys() & saved.keys()
                    if tuple(module_state[k].shape) != tuple(saved[k].shape))
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra), ("other shape", shapes))
                 if keys]
        raise CheckpointError(
            f"{path} does not fit the network this config builds ({'; '.join(parts)}). "
            f"Resume with the run's own config.yaml, or start a new run without "
            f"{option_name('--resume')}."
        )


def keep_checkpoint_statistics(mapped: dict[str, Any], info: DataInfo) -> DataInfo:
    """``info`` with the normalisation the run started with, read from its checkpoint
    (``mapped``): a resumed run keeps normalising as it began, even where this version would
    compute other statistics (e.g. a grayscale folder before they were luma-weighted)."""
    hp = mapped.get("hyper_parameters")
    saved = (hp or {}).get("data_info") or {}
    mean, std = tuple(saved.get("mean") or ()), tuple(saved.get("std") or ())
    if len(mean) != info.channels or len(std) != info.channels or (mean, std) == (info.mean, info.std):
        return info
    log.warning("resuming with the run's own normalisation, mean %s std %s (a new run would use "
                "mean %s std %s)", mean, std, info.mean, info.std)
    return dataclasses.replace(info, mean=mean, std=std)


def record_config(run_dir: Path, cfg: RunConfig, changes: dict[str, tuple[Any, Any]]) -> None:
    """Write the resolved config; on a resume with changes, keep the previous one beside it."""
    path = run_dir / CONFIG_NAME
    if changes and path.exists():
        numbers = [p.stem.removeprefix("config.attempt") for p in run_dir.glob("config.attempt*.yaml")]
        attempt = 1 + max((int(n) for n in numbers if n.isdigit()), default=-1)
        kept = run_dir / f"config.attempt{attempt}.yaml"
        os.replace(path, kept)
        for key, (old, new) in changes.items():
            log.warning("resuming with %s changed: %r -> %r", key, old, new)
        log.warning("the previous config is kept as %s", kept)
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
