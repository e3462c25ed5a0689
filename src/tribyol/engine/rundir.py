"""Run directories: atomic writes, the marker that makes them ours, and safe replacement.

tribyol deletes a folder only when it carries the run marker (``run.json``) and every file in
it, at every depth, is one a run writes (``run_files``). A replaced run is first renamed aside
and deleted only once the new run's first optimizer step has succeeded with a finite loss, so a
failed start puts it back. The lock that keeps two processes out of one run directory is
``tribyol.engine.lock``; what a resume checks, ``tribyol.engine.resume``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from tribyol.config import RunConfig, to_dict
from tribyol.config.fields import option_name
from tribyol.engine.lock import LOCK_NAME, RunLock, read_lock, unlink_if_ours
from tribyol.errors import RunDirExistsError, RunInterrupted, RunStopped

log = logging.getLogger(__name__)

RUN_MARKER = "run.json"
RUN_FORMAT = "tribyol-run-v1"
CONFIG_NAME = "config.yaml"
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
            unlink_if_ours(self.aside / LOCK_NAME, self.lock.token)
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
            unlink_if_ours(self.aside / LOCK_NAME, self.lock.token)
            log.error("the new run failed; the old run is kept in %s (%s now holds other files)",
                      self.aside, new)
            return False
        os.replace(self.aside, new)
        log.warning("the new run failed in its first steps; the old run is back in %s", new)
        return True


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


def is_secondary_rank() -> bool:
    """True in a DDP process other than global rank 0 (launched by Lightning, torchrun or SLURM).

    Lightning's DDP launcher re-runs the whole command for ranks 1..N-1, after rank 0 has made
    the run directory: those must neither refuse it as existing nor touch it.
    """
    return any(os.environ.get(k, "0") not in ("", "0") for k in
               ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def exception_status(exception: BaseException) -> str:
    """run.json's status for a run that ``exception`` ended."""
    if isinstance(exception, RunInterrupted):
        return "interrupted"
    return "stopped" if isinstance(exception, RunStopped) else "failed"
