"""The run directory's lock: ``.tribyol.lock`` (pid, host, process start) keeps two processes
out of one run directory; a dead holder's lock is taken over, with a warning."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from tribyol.errors import DiskWriteError, RunDirLockedError

log = logging.getLogger(__name__)

LOCK_NAME = ".tribyol.lock"


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


def unlink_if_ours(path: Path, token: str) -> None:
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
            unlink_if_ours(self.path, self.token)
