"""The run directory's lock: one process at a time trains in a run folder (resume, overwrite,
two fresh starts), a dead holder's lock is taken over, another host's is not guessed at."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest

from tribyol.cli import main
from tribyol.engine import pretrain
from tribyol.engine.lock import LOCK_NAME, RunLock, _process_start, read_lock
from tribyol.errors import RunDirExistsError, RunDirLockedError


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process of this host that runs while the test does (it could hold a lock)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None, **extra: object) -> dict:
    record = {"pid": pid, "host": host or socket.gethostname(), "since": "2025-01-01T00:00:00",
              "token": "theirs", **extra}
    (run_dir / LOCK_NAME).write_text(json.dumps(record))
    return record


def snapshot(run_dir: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("how", ["resume", "overwrite"])
def test_a_run_in_use_is_neither_resumed_nor_replaced(tiny, live_pid: int, how: str) -> None:
    cfg = tiny(("train.max_steps", 2), ("name", "r"))
    run_dir = pretrain(cfg)
    write_lock(run_dir, live_pid, started=_process_start(live_pid))
    before = snapshot(run_dir)
    with pytest.raises(RunDirLockedError, match=f"in use by pid {live_pid} on this host"):
        pretrain(tiny(("train.max_steps", 4), ("name", "r")), **{how: True})
    assert snapshot(run_dir) == before  # the holder's lock and files untouched
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]


def test_a_locked_run_is_one_error_line(tmp_path: Path, capsys, live_pid: int) -> None:
    runs = tmp_path / "runs"
    args = ["pretrain", "--dataset", "digits", "--limit", "64", "--batch-size", "16",
            "--max-steps", "1", "--accelerator", "cpu", "--set", "model.width=8",
            "--set", "train.progress_bar=false", "--runs-root", str(runs), "--name", "r"]
    assert main(args) == 0
    write_lock(runs / "r", live_pid)
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1
    assert f"in use by pid {live_pid}" in lines[0] and f"kill {live_pid}" in lines[0]


@pytest.mark.parametrize("how", ["resume", "overwrite"])
def test_a_dead_holders_lock_is_taken_over_with_a_note(tiny, caplog, how: str) -> None:
    cfg = tiny(("train.max_steps", 2), ("name", "r"))
    run_dir = pretrain(cfg)
    pid = dead_pid()
    write_lock(run_dir, pid)  # a run killed with SIGKILL leaves this
    with caplog.at_level(logging.WARNING, logger="tribyol"):
        pretrain(tiny(("train.max_steps", 3), ("name", "r")), **{how: True})
    notes = [r.getMessage() for r in caplog.records if "took over the lock" in r.getMessage()]
    assert len(notes) == 1 and f"pid {pid}" in notes[0] and "no longer running" in notes[0]
    assert not (run_dir / LOCK_NAME).exists()
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]


def test_a_reused_pid_does_not_keep_a_lock_alive(tiny, live_pid: int, caplog) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    if _process_start(live_pid) is None:
        pytest.skip("no /proc to read process start times from")
    write_lock(run_dir, live_pid, started="1")  # the pid now names another process
    with caplog.at_level(logging.WARNING, logger="tribyol"):
        pretrain(tiny(("train.max_steps", 2), ("name", "r")), resume=True)
    assert any("is now another process" in r.getMessage() for r in caplog.records)


def test_another_hosts_lock_is_refused_with_the_way_out(tiny) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    write_lock(run_dir, 1234, host="node-elsewhere")
    with pytest.raises(RunDirLockedError, match="pid 1234 on host node-elsewhere") as err:
        pretrain(cfg, resume=True)
    assert f"delete {run_dir / LOCK_NAME}" in str(err.value)
    assert (run_dir / LOCK_NAME).exists()


class LockSeen(L.Callback):
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.record = read_lock(Path(trainer.default_root_dir) / LOCK_NAME)


@pytest.mark.parametrize("how", ["new", "resume", "overwrite", "failed overwrite"])
def test_the_lock_is_held_while_training_and_released_after(tiny, how: str) -> None:
    import os

    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    if how != "new":
        pretrain(cfg)
    seen = LockSeen()
    overrides = [("train.max_steps", 2), ("name", "r")]
    if how == "failed overwrite":
        overrides.append(("optim.lr", 1e38))
    try:
        run_dir = pretrain(tiny(*overrides), resume=how == "resume",
                           overwrite="overwrite" in how, extra_callbacks=[seen])
    except FloatingPointError:
        run_dir = Path(cfg.runs_root) / "r"
    assert seen.record["pid"] == os.getpid() and seen.record["host"] == socket.gethostname()
    assert not (run_dir / LOCK_NAME).exists()
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]


def test_a_folder_another_process_is_starting_in_is_refused(tiny, live_pid: int) -> None:
    """Two fresh runs at once: the second finds the first one's lock (and nothing else yet)."""
    run_dir = Path(tiny().runs_root) / "r"
    run_dir.mkdir(parents=True)
    write_lock(run_dir, live_pid)
    with pytest.raises(RunDirLockedError, match=f"pid {live_pid}"):
        pretrain(tiny(("train.max_steps", 1), ("name", "r")))
    assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME]


def test_a_run_made_while_this_one_started_is_not_written_into(tiny, monkeypatch) -> None:
    """The other run got there between this one's check and its first write: refused, and the
    other run's files are left as they are (once, this failed on a .config.yaml.tmp rename)."""
    import tribyol.engine.run as run

    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    checked = run.check_run_dir

    def racing(*args):
        exists = checked(*args)
        monkeypatch.setattr(run, "check_run_dir", checked)
        pretrain(cfg)  # the other run, from start to end
        return exists

    monkeypatch.setattr(run, "check_run_dir", racing)
    with pytest.raises(RunDirExistsError, match="made by another run while this one started"):
        pretrain(tiny(("train.max_steps", 2), ("name", "r")))
    run_dir = Path(cfg.runs_root) / "r"
    assert json.loads((run_dir / "run.json").read_text())["steps_done"] == 1
    assert not (run_dir / LOCK_NAME).exists()


def test_secondary_ranks_do_not_take_the_lock(tiny, live_pid: int, monkeypatch) -> None:
    """DDP ranks 1..N-1 re-run the command in the folder rank 0 has locked."""
    import tribyol.engine.run as run

    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    rank0 = write_lock(run_dir, live_pid)
    monkeypatch.setattr(run, "is_secondary_rank", lambda: True)
    pretrain(cfg)
    assert read_lock(run_dir / LOCK_NAME) == rank0


def test_one_lock_excludes_another() -> None:
    """In one process too: each RunLock is its own holder."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        first, second = RunLock(Path(folder)), RunLock(Path(folder))
        first.acquire()
        with pytest.raises(RunDirLockedError):
            second.acquire()
        second.release()  # never held: removes nothing
        assert (Path(folder) / LOCK_NAME).exists()
        first.release()
        assert not (Path(folder) / LOCK_NAME).exists()
        second.acquire()
        second.release()


@pytest.mark.parametrize("code", [errno.EROFS, errno.EIO])
@pytest.mark.parametrize("how", ["--resume", "--overwrite"])
def test_a_lock_file_that_cannot_be_written_is_one_error_line(tmp_path: Path, capsys, monkeypatch,
                                                               code: int, how: str) -> None:
    """A read-only filesystem or an I/O error (not a permission error) when taking the lock of
    an existing run: one line naming the lock and a fix that fits, and the run untouched."""
    runs = tmp_path / "runs"
    args = ["pretrain", "--dataset", "digits", "--limit", "64", "--batch-size", "16",
            "--max-steps", "1", "--accelerator", "cpu", "--set", "model.width=8",
            "--set", "train.progress_bar=false", "--runs-root", str(runs), "--name", "r"]
    assert main(args) == 0
    before = snapshot(runs / "r")
    real_open = os.open

    def refusing_open(path, flags, *rest):
        if Path(path).name == LOCK_NAME:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *rest)

    monkeypatch.setattr(os, "open", refusing_open)
    assert main([*args, how]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert f"cannot lock {runs / 'r'}" in lines[0] and os.strerror(code) in lines[0]
    assert "make the folder writable" in lines[0] and "free some space" not in lines[0]
    monkeypatch.undo()
    assert snapshot(runs / "r") == before
