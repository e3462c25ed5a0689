"""SIGTERM (pre-emption under SLURM / Kubernetes) and SIGINT (Ctrl+C) end a run with a checkpoint
at the current step, a message naming the step and the exact resume command, and a non-zero exit
code (143 / 130), never 0. The run is the real CLI in a subprocess, parked at a known step by the
test hooks (tests/engine/child_hooks) so the signal lands at that step."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.test_kill_resume import ARGS, child_env
from tribyol.checkpoints import load_checkpoint
from tribyol.cli import main

pytestmark = pytest.mark.slow


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_with_checkpoint_message_and_exit_code(tmp_path: Path, signum, code) -> None:
    progress = tmp_path / "progress"
    cmd = [sys.executable, "-m", "tribyol.cli", *ARGS, "--runs-root", str(tmp_path / "runs"),
           "--name", "r", "--set", "train.ckpt_every_steps=0"]
    proc = subprocess.Popen(cmd, env=child_env(TRIBYOL_TEST_PROGRESS=str(progress),
                                               TRIBYOL_TEST_PAUSE_AT="5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(Path(f"{progress}.paused"), proc)
    proc.send_signal(signum)
    time.sleep(0.3)  # the handler runs while the hook sleeps
    Path(f"{progress}.continue").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    lines = [line for line in err.splitlines() if line.startswith(f"stopped by {name}")]
    assert len(lines) == 1, err
    prefix = f"stopped by {name} at step 5; resume with: "
    assert lines[0].startswith(prefix)
    resume = shlex.split(lines[0][len(prefix):])
    assert resume[0] == "tribyol" and resume[1:] == [*cmd[3:], "--resume"]
    run = tmp_path / "runs" / "r"
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5  # saved on stop
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    assert json.loads((run / "throughput.json").read_text())["status"] == "stopped"
    assert "run directory:" not in out  # nothing claims success

    # the printed command resumes the run to its end (in this process: the CLI's own entry point,
    # without a second interpreter start)
    assert main(resume[1:]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 32


def test_second_ctrl_c_interrupts_at_once_keeping_the_last_checkpoint(tmp_path: Path) -> None:
    """Ctrl+C twice: the second one ends the run at once, without the checkpoint of this step.
    Lightning turned it into exit 1 and "failed"; it is exit 130, "interrupted", and the line
    names the checkpoint a resume continues from."""
    progress = tmp_path / "progress"
    cmd = [sys.executable, "-m", "tribyol.cli", *ARGS, "--runs-root", str(tmp_path / "runs"),
           "--name", "r"]  # a checkpoint every 4 steps
    proc = subprocess.Popen(cmd, env=child_env(TRIBYOL_TEST_PROGRESS=str(progress),
                                               TRIBYOL_TEST_PAUSE_AT="5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(Path(f"{progress}.paused"), proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # the first is recorded; the run would stop after this step
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run = tmp_path / "runs" / "r"
    last = run / "checkpoints" / "last.ckpt"
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [
        "interrupted by a second SIGINT at step 5, without a checkpoint of that step; the last "
        f"good checkpoint is {last} (step 4); resume with: {shlex.join(['tribyol', *cmd[3:], '--resume'])}"
    ], err
    assert load_checkpoint(last)["global_step"] == 4
    record = json.loads((run / "run.json").read_text())
    assert (record["status"], record["checkpoint_step"]) == ("interrupted", 4)
    assert json.loads((run / "throughput.json").read_text())["status"] == "interrupted"
    assert not list(run.rglob("*.tmp"))
    assert "run directory:" not in out


# The folder scan (or a download) before training, interrupted: the scan sends the signal to
# its own process, then waits for it to act.
SIGNAL_DURING_SCAN = """
import os, signal, sys, time
import tribyol.engine.run as run

# A shell's background job (CI under `cmd &`) starts with SIGINT ignored; a terminal's does not.
signal.signal(signal.SIGINT, signal.default_int_handler)

def scan(cfg):
    os.kill(os.getpid(), int(sys.argv[1]))
    time.sleep(60)
    raise AssertionError("the signal did not stop the scan")

run.load_pretrain_data = scan
from tribyol.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_before_training_is_one_line_and_exit_code(tmp_path: Path, signum, code) -> None:
    """Ctrl+C during the folder scan printed a traceback (and SIGTERM killed the process
    wherever it was): now one line, 128 + the signal, and no run directory."""
    done = subprocess.run([sys.executable, "-c", SIGNAL_DURING_SCAN, str(int(signum)), *ARGS,
                           "--runs-root", str(tmp_path / "runs"), "--name", "r"],
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    name = signal.Signals(signum).name
    assert done.stderr.strip().splitlines()[-1] == \
        f"interrupted by {name} before training started; no step was trained"
    assert not (tmp_path / "runs").exists()
