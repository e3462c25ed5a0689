"""On CUDA (benchmarks/gpu.sh step 1; skipped elsewhere): the compiled step
(``train.compile=on``: CUDA graphs) trains as the eager step does, and resumes.

The same runs as tests/engine/test_compile.py, on the GPU: fp64 (``train.precision=64-true``),
where eager and compiled differ only by rounding (~1e-16 a step), so 1e-9 after 5 steps fails
on any change in what is computed; and bf16 autocast, the precision runs use, where the
losses must track eager's within bf16's rounding (5 %). A compiled run cut after step 3 and
resumed matches the uninterrupted one (1e-9: cuDNN's kernels are not bitwise deterministic).
In the order of the graphs they compile: the fp64 one, reused by the resume, then the bf16 one,
so that a step cap reached mid-file loses the bf16 comparison first.

``TRIBYOL_GPU_TEST_ACCELERATOR=cpu`` runs them on the CPU, to rehearse this file without a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tests.engine.test_compile import (
    CUT,
    SMALL,
    STEPS,
    TOLERANCE,
    Crash,
    CrashAfter,
    assert_weights_close,
    losses,
    weights,
)
from tribyol.checkpoints import load_checkpoint
from tribyol.engine import pretrain

ACCELERATOR = os.environ.get("TRIBYOL_GPU_TEST_ACCELERATOR", "gpu")
pytestmark = pytest.mark.skipif(ACCELERATOR == "gpu" and not torch.cuda.is_available(),
                                reason="needs a CUDA GPU")


def run(root: Path, name: str, method: str, compile_: str, *extra, **kwargs) -> Path:
    cfg = tiny_config(root, *SMALL, ("train.accelerator", ACCELERATOR), ("method.name", method),
                      ("train.compile", compile_), ("name", name), *extra)
    return pretrain(cfg, **kwargs)


def test_the_compiled_step_matches_eager_in_fp64(tmp_path: Path) -> None:
    # TriBYOL only: each graph compiles anew on the GPU (BYOL's is compared on the CPU)
    eager, compiled = run(tmp_path, "eager", "tribyol", "off"), run(tmp_path, "on", "tribyol", "on")
    a, b = losses(eager), losses(compiled)
    assert len(a) == len(b) == STEPS
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), **TOLERANCE)
    assert_weights_close(weights(eager), weights(compiled), **TOLERANCE)


def test_a_compiled_run_resumes_on_cuda(tmp_path: Path) -> None:
    whole = run(tmp_path, "whole", "tribyol", "on")
    with pytest.raises(Crash):
        run(tmp_path, "cut", "tribyol", "on", extra_callbacks=[CrashAfter(CUT)])
    cut_at = load_checkpoint(tmp_path / "runs" / "cut" / "checkpoints" / "last.ckpt")["global_step"]
    assert cut_at == CUT
    resumed = run(tmp_path, "cut", "tribyol", "on", resume=True)
    assert len(losses(resumed)) == STEPS
    torch.testing.assert_close(torch.tensor(losses(resumed)), torch.tensor(losses(whole)),
                               **TOLERANCE)
    assert_weights_close(weights(resumed), weights(whole), **TOLERANCE)


def test_the_compiled_step_tracks_eager_in_bf16(tmp_path: Path) -> None:
    bf16 = ("train.precision", "bf16-mixed")
    eager = run(tmp_path, "eager", "tribyol", "off", bf16)
    compiled = run(tmp_path, "on", "tribyol", "on", bf16)
    a, b = losses(eager), losses(compiled)
    assert len(a) == len(b) == STEPS
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=0.05, atol=0.0)
