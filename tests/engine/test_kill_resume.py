"""SIGKILL a real `tribyol pretrain` mid-epoch, resume it, and get the uninterrupted result.

The run is a subprocess of the real CLI. A test-only callback (tests/engine/child_hooks, put on
PYTHONPATH) logs each step's batch and parks the process right after step 11, so the kill
lands at a known point: mid-epoch 0, three steps after the step-8 checkpoint. The test then
sends SIGKILL from outside, as a crash or an OOM killer would, and resumes the killed run (in this
process, like the uninterrupted reference run: a second interpreter start costs more than the run).

On CPU with ``train.deterministic=true``, fp32, the same thread count and every piece of state
restored (weights, optimizer, LR schedule, EMA tau, loop counters, loader position, RNGs), the
resumed run performs the same operations in the same order as the uninterrupted one, so the
final weights are compared *bitwise* (``atol=rtol=0``): any drift means some state was lost.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tribyol.checkpoints import load_checkpoint
from tribyol.cli import PRETRAIN_FLAGS, build_parser, overrides_from_args
from tribyol.engine import pretrain
from tribyol.resolve import load_config

pytestmark = pytest.mark.slow

HOOKS = Path(__file__).parent / "child_hooks"
STEPS_PER_EPOCH, EPOCHS, CKPT_EVERY, KILL_AT = 16, 2, 4, 11

ARGS = [
    "pretrain", "--dataset", "digits", "--limit", str(16 * STEPS_PER_EPOCH), "--batch-size", "16",
    "--epochs", str(EPOCHS), "--precision", "32", "--accelerator", "cpu", "--devices", "1",
    "--set", "model.width=8", "--set", "model.hidden_dim=32", "--set", "model.proj_dim=16",
    "--set", "train.progress_bar=false", "--set", "train.deterministic=true",
    "--set", "train.log_every_steps=1", "--set", f"train.ckpt_every_steps={CKPT_EVERY}",
]


def child_env(**hooks: str) -> dict[str, str]:
    env = dict(os.environ)
    # One thread: the same arithmetic as the in-process reference run, and no OpenMP spin-waits
    # fighting over a busy CI machine's two cores.
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), env.get("PYTHONPATH")]))
    env["TRIBYOL_TEST_HOOKS"] = "1"
    env.update(hooks)
    return env


def cli(run_dir: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tribyol.cli", *ARGS, "--runs-root", str(run_dir), "--name", name, *extra]


class BatchLog(L.Callback):
    """In-process twin of the hooks' batch log (step -> digest of the batch's images)."""

    def __init__(self) -> None:
        self.digests: dict[int, str] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.digests[trainer.global_step] = hashlib.sha256(batch[0].numpy().tobytes()).hexdigest()[:16]


def in_process(runs: Path, name: str, resume: bool = False) -> tuple[dict[int, str], Path]:
    """Run ``name`` in this process (saves a subprocess start) on one thread like the child:
    step -> digest of the batch it trained on, and its last checkpoint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = build_parser().parse_args([*cli(runs, name)[3:]])
        cfg = load_config(None, overrides_from_args(args, PRETRAIN_FLAGS))
        log = BatchLog()
        run_dir = pretrain(cfg, resume=resume, extra_callbacks=[log])
    finally:
        torch.set_num_threads(threads)
    return log.digests, run_dir / "checkpoints" / "last.ckpt"


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cut_progress = tmp_path / "cut"
    full, full_ckpt = in_process(runs, "full")

    log = tmp_path / "cut.log"  # a file, not a pipe: a full pipe would stall the child
    with open(log, "w") as out:
        child = subprocess.Popen(
            cli(runs, "cut"),
            env=child_env(TRIBYOL_TEST_PROGRESS=str(cut_progress), TRIBYOL_TEST_PAUSE_AT=str(KILL_AT)),
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )
    paused = Path(f"{cut_progress}.paused")
    deadline = time.monotonic() + 240
    while not paused.exists():
        assert child.poll() is None, f"run ended before step {KILL_AT}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "run never reached the kill point"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    ckpt_dir = runs / "cut" / "checkpoints"
    on_disk = load_checkpoint(ckpt_dir / "last.ckpt")["global_step"]
    assert on_disk == KILL_AT // CKPT_EVERY * CKPT_EVERY == 8
    assert KILL_AT - on_disk < CKPT_EVERY  # at most one checkpoint interval of work lost
    assert not list(ckpt_dir.glob(".*.tmp"))  # the kill did not land mid-save here

    resumed, _ = in_process(runs, "cut", resume=True)
    assert min(resumed) == on_disk + 1  # continues at the very next step...
    assert max(resumed) == max(full) == STEPS_PER_EPOCH * EPOCHS
    for step in resumed:  # ...with the very batches the uninterrupted run saw
        assert resumed[step] == full[step], f"step {step} trained on another batch"

    final_full = load_checkpoint(full_ckpt)
    final_resumed = load_checkpoint(ckpt_dir / "last.ckpt")
    assert final_resumed["global_step"] == final_full["global_step"] == STEPS_PER_EPOCH * EPOCHS
    assert final_resumed["state_dict"].keys() == final_full["state_dict"].keys()
    for key, value in final_full["state_dict"].items():
        torch.testing.assert_close(final_resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)
