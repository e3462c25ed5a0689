"""A full (or read-only) disk, $TMPDIR, and run.json during a run.

A full disk is simulated where it shows: the checkpoint's write raises ``ENOSPC`` half-way
(after writing part of the file), or the disk reports too little free space. The run must stop
with one ``error:`` line naming the last good checkpoint, leave ``last.ckpt`` / ``previous.ckpt``
a good pair and no temporary file, and every JSON file of the run valid.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch

import tribyol.engine.checkpointing as checkpointing
from tribyol.checkpoints import load_checkpoint
from tribyol.cli import main
from tribyol.engine import pretrain
from tribyol.engine.progress import Throughput
from tribyol.engine.rundir import write_atomic

# 128 images / 16 = 8 steps per epoch, a checkpoint every 2 steps.
ARGS = ["pretrain", "--dataset", "digits", "--limit", "128", "--batch-size", "16", "--epochs", "1",
        "--precision", "32", "--accelerator", "cpu", "--devices", "1", "--set", "model.width=8",
        "--set", "model.hidden_dim=32", "--set", "model.proj_dim=16",
        "--set", "train.progress_bar=false", "--set", "train.log_every_steps=1",
        "--set", "train.ckpt_every_steps=2", "--name", "r"]


def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], Path]:
    code = main([*ARGS, "--runs-root", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("error: ")], tmp_path / "runs" / "r"


def assert_good_pair_and_no_temp(run: Path, last_step: int) -> None:
    folder = run / "checkpoints"
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == last_step  # reads and verifies
    assert load_checkpoint(folder / "previous.ckpt")["global_step"] == last_step - 2
    assert not [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]


def assert_json_files_valid(run: Path) -> dict:
    for name in ("run.json", "throughput.json"):
        text = (run / name).read_text()
        assert text.strip(), f"{name} is empty"
        json.loads(text)
    return json.loads((run / "run.json").read_text())


class _Save:
    """``torch.save`` that, from its ``fail_at``-th call on, writes part of the file and then
    fails as a full disk does."""

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at, self.save = 0, fail_at, torch.save

    def __call__(self, obj, f, *args, **kwargs):
        self.calls += 1
        if self.calls < self.fail_at:
            return self.save(obj, f, *args, **kwargs)
        if hasattr(f, "write"):
            f.write(b"PK\x03\x04" + b"\x00" * 4096)  # the first part of a zip
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_mid_checkpoint_stops_with_one_line_naming_the_last_good_one(
        tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch, "save", _Save(fail_at=3))  # saves at steps 2 and 4; 6 fails
    code, errors, run = run_cli(tmp_path, capsys)
    assert code == 2
    assert len(errors) == 1, errors
    last = run / "checkpoints" / "last.ckpt"
    assert errors[0].startswith(f"error: cannot write {last}: No space left on device; ")
    assert f"the last good checkpoint is {last} (step 4)" in errors[0]
    assert "free some space" in errors[0] and errors[0].endswith("/runs --resume")
    assert_good_pair_and_no_temp(run, 4)
    record = assert_json_files_valid(run)
    assert (record["status"], record["checkpoint_step"]) == ("failed", 4)
    assert "No space left on device" in record["error"]
    assert json.loads((run / "throughput.json").read_text())["status"] == "failed"


def test_too_little_free_space_stops_before_writing(tmp_path: Path, capsys, monkeypatch) -> None:
    """The free-space check refuses a checkpoint the disk has no room for before a byte of it
    is written (here the disk "fills up" after step 4)."""
    real_usage, full = shutil.disk_usage, {"now": False}

    def disk_usage(path):
        usage = real_usage(path)
        return usage._replace(free=100_000) if full["now"] else usage

    class FillDisk(L.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            full["now"] = trainer.global_step >= 4

    saves = _Save(fail_at=10**9)  # never fails; counts the writes
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", disk_usage)
    monkeypatch.setattr(torch, "save", saves)
    real_pretrain = pretrain

    def with_full_disk(cfg, **kwargs):
        return real_pretrain(cfg, **{**kwargs, "extra_callbacks": [FillDisk()]})

    monkeypatch.setattr("tribyol.engine.pretrain", with_full_disk)
    code, errors, run = run_cli(tmp_path, capsys)
    assert code == 2 and len(errors) == 1, errors
    assert "not enough free space for a checkpoint: it needs about " in errors[0]
    assert "the disk has 0.1 MB free" in errors[0]
    assert f"the last good checkpoint is {run / 'checkpoints' / 'last.ckpt'} (step 4)" in errors[0]
    assert saves.calls == 2  # steps 2 and 4; nothing of step 6 was written
    assert_good_pair_and_no_temp(run, 4)
    assert assert_json_files_valid(run)["status"] == "failed"


def test_checkpoints_are_written_in_their_folder_not_in_tmpdir(tiny, monkeypatch) -> None:
    """Lightning staged each checkpoint in a temporary file of $TMPDIR (fsspec's transaction)
    and moved it: a cluster node's small /tmp failed runs whose own folder had room. Here
    every temporary file made through ``tempfile`` fails, as on a full /tmp."""

    def full_tmp(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tempfile.gettempdir())

    monkeypatch.setattr(tempfile, "mkstemp", full_tmp)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full_tmp)
    run = pretrain(tiny(("train.ckpt_every_steps", 2), ("name", "t")))
    folder = run / "checkpoints"
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == 4
    assert load_checkpoint(folder / "previous.ckpt")["global_step"] == 2
    assert not list(folder.glob("*.tmp"))


def test_run_json_follows_every_checkpoint(tiny) -> None:
    """run.json said "running", steps_done 0 while last.ckpt was at step 35: a run killed then
    (SIGKILL) left it so. It is updated with every checkpoint."""
    seen: list[tuple[int, int | None, int | None, str, int | None]] = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            run = Path(trainer.default_root_dir)
            record = json.loads((run / "run.json").read_text())
            last = run / "checkpoints" / "last.ckpt"
            on_disk = load_checkpoint(last)["global_step"] if last.exists() else None
            seen.append((trainer.global_step, record["steps_done"], record.get("checkpoint_step"),
                         record["status"], on_disk))

    cfg = tiny(("data.limit", 128), ("train.ckpt_every_steps", 3), ("name", "w"))
    run = pretrain(cfg, extra_callbacks=[Watch()])
    for step, done, checkpoint_step, status, on_disk in seen:
        assert status == "running"
        saved = step if step == 8 else step // 3 * 3 or None  # every 3 steps, and the last one
        assert checkpoint_step == on_disk == saved, step
        if saved == step:
            assert done == step  # recorded with the checkpoint of this very step
    assert [s[0] for s in seen] == list(range(1, 9))
    record = json.loads((run / "run.json").read_text())
    assert (record["status"], record["steps_done"], record["checkpoint_step"]) == ("finished", 8, 8)


def test_a_failed_json_write_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    """throughput.json was truncated to 0 bytes by a full disk; every JSON is written aside
    and renamed, and a write that fails (ENOSPC at fsync, where a delayed allocation reports
    it) leaves the old file and no temporary one."""
    out = tmp_path / "throughput.json"
    write_atomic(out, '{"old": true}\n')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    class Trainer:
        is_global_zero, global_step, world_size = True, 7, 1

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        Throughput(16, out).write(Trainer(), "finished")  # type: ignore[arg-type]
    assert json.loads(out.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["throughput.json"]
