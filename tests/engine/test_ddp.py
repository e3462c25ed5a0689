"""Two-process DDP on CPU (gloo), through the real CLI and Lightning's own launcher.

Each rank dumps a SHA-256 of every tensor of its state_dict at the end of fit (a test-only
callback from tests/engine/child_hooks, on PYTHONPATH), and for SimCLR what its all-gather of
embeddings returned. Checked:

- TriBYOL: the online network and the EMA target hold bitwise the same weights on both ranks
  (gradients are all-reduced, the EMA runs on identical weights). Without SyncBN the BatchNorm
  running statistics differ (each rank saw its own half-batch): this shows the hashes would
  catch a difference.
- SimCLR: each rank's loss saw the other rank's embeddings as negatives (in rank order).
- SyncBN: with ``model.sync_bn=true`` the BatchNorm statistics agree across ranks, on CPU through
  ``tribyol.nets.sync_bn.GlobalBatchNorm`` (PyTorch's SyncBatchNorm is GPU-only), on 2+ GPUs
  through PyTorch's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HOOKS = Path(__file__).parent / "child_hooks"
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def launch(tmp_path: Path, name: str, *extra: str, accelerator: str = "cpu") -> subprocess.Popen:
    """Start a two-rank run of the real CLI (its output to files: a full pipe would stall it)."""
    dump = tmp_path / f"dump_{name}"
    env = dict(os.environ, TRIBYOL_TEST_HOOKS="1", TRIBYOL_TEST_DUMP_DIR=str(dump),
               OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), env.get("PYTHONPATH")]))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(key, None)  # a clean launch, even when the test itself runs under a launcher
    cmd = [
        sys.executable, "-m", "tribyol.cli", "pretrain", "--dataset", "digits", "--limit", "128",
        "--batch-size", "16", "--max-steps", "3", "--precision", "32",
        "--accelerator", accelerator, "--devices", "2", "--strategy", "ddp",
        "--set", "model.width=8", "--set", "model.hidden_dim=32", "--set", "model.proj_dim=16",
        "--set", "train.progress_bar=false", "--set", "train.log_every_steps=1",
        "--runs-root", str(tmp_path / "runs"), "--name", name, *extra,
    ]
    with open(tmp_path / f"{name}.log", "w") as log:
        return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Kill a run's process group (rank 0 and the rank it started), where any of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def finish(tmp_path: Path, name: str, proc: subprocess.Popen) -> list[dict]:
    """Wait for ``launch``'s run; each rank's dump, checked for a whole two-rank run."""
    try:
        proc.wait(timeout=400)
    finally:
        stop(proc)
    assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    dump = tmp_path / f"dump_{name}"
    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["step"] for r in ranks] == [3, 3]
    return ranks


def ddp_run(tmp_path: Path, name: str, *extra: str, accelerator: str = "cpu") -> list[dict]:
    return finish(tmp_path, name, launch(tmp_path, name, *extra, accelerator=accelerator))


# The CPU runs, launched together: each spends most of its time starting Python, torch and
# Lightning (one rank after the other), so together they take about as long as the slowest.
CPU_RUNS = {
    "tribyol": ("--method", "tribyol"),
    "simclr": ("--method", "simclr"),
    "syncbn_cpu": ("--method", "tribyol", "--set", "model.sync_bn=true"),
}


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory: pytest.TempPathFactory):
    """``cpu_runs(name)`` -> the ranks' dumps of CPU_RUNS[name]; all of them start with the module."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    procs = {name: launch(tmp_path, name, *extra) for name, extra in CPU_RUNS.items()}
    yield lambda name: finish(tmp_path, name, procs[name])
    for proc in procs.values():
        stop(proc)


def split(hashes: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    weights = {k: v for k, v in hashes.items() if not k.endswith(BN_STATS)}
    stats = {k: v for k, v in hashes.items() if k.endswith(BN_STATS)}
    return weights, stats


def test_tribyol_online_and_target_identical_on_both_ranks(cpu_runs) -> None:
    rank0, rank1 = cpu_runs("tribyol")
    w0, s0 = split(rank0["hashes"])
    w1, s1 = split(rank1["hashes"])
    online = [k for k in w0 if k.startswith("method.online.") or k.startswith("method.predictor.")]
    target = [k for k in w0 if k.startswith("method.targets.")]
    assert online and target
    differ = [k for k in w0 if w0[k] != w1[k]]
    assert not differ, f"weights differ across ranks: {differ[:5]}"
    # Sensitivity: per-rank BatchNorm statistics do differ without SyncBN.
    assert any(s0[k] != s1[k] for k in s0 if k.endswith("running_mean"))


def test_simclr_sees_negatives_from_both_ranks(cpu_runs) -> None:
    pytest.importorskip("tribyol.methods.simclr", reason="methods/simclr.py is not in the tree")
    rank0, rank1 = cpu_runs("simclr")
    w0, _ = split(rank0["hashes"])
    w1, _ = split(rank1["hashes"])
    assert w0 == w1
    g0, g1 = rank0["gather"], rank1["gather"]
    assert g0 and g1, "SimCLR's gather_with_grad was not called"
    assert g0["gathered_rows"] == g1["gathered_rows"] == 2 * g0["local_rows"] == 32
    # Rank order: slice r of the gathered keys is rank r's own embeddings.
    assert g0["slices"] == g1["slices"] == [g0["local"], g1["local"]]
    assert g0["local"] != g1["local"]


def test_sync_bn_statistics_agree_across_cpu_ranks(cpu_runs) -> None:
    """On CPU, model.sync_bn=true swaps in GlobalBatchNorm: one set of global-batch statistics."""
    rank0, rank1 = cpu_runs("syncbn_cpu")
    stats = [k for k in rank0["hashes"] if k.endswith("running_mean")]
    assert stats
    # Unlike the plain run above, BatchNorm buffers now agree as well as the weights.
    assert rank0["hashes"] == rank1["hashes"]


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="SyncBatchNorm runs on CUDA only; needs 2 GPUs")
def test_sync_bn_statistics_agree_across_gpus(tmp_path: Path) -> None:
    rank0, rank1 = ddp_run(tmp_path, "syncbn", "--method", "simclr", "--set", "model.sync_bn=true",
                           accelerator="gpu")
    # one set of statistics over the global batch: BatchNorm buffers agree as well as weights
    assert rank0["hashes"] == rank1["hashes"]
    assert any(k.endswith("running_mean") for k in rank0["hashes"])
