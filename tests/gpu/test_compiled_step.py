"""On CUDA only (benchmarks/gpu.sh step 1; skipped elsewhere): the compiled step
(``train.compile=on``: CUDA graphs) trains as the eager step does, and resumes exactly.

fp32 (TF32 off), a tiny ConvNet, 5 steps: eager and compiled differ only by the kernels'
summation order, so the losses and weights agree to 1e-3. A compiled run stopped at step 3 and
resumed to 5 matches one that ran 5 steps (the same kernels: 1e-4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tribyol.checkpoints import load_checkpoint
from tribyol.config.schema import TrainConfig
from tribyol.engine import pretrain
from tribyol.engine.logs import read_metrics

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif("compile" not in {f.name for f in dataclasses.fields(TrainConfig)},
                       reason="train.compile is not in this version"),
]

CUDA = [("train.accelerator", "gpu"), ("train.precision", "32"), ("data.limit", 128),
        ("train.epochs", 2), ("train.deterministic", False), ("optim.schedule", "constant")]


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def run(tmp_path: Path, name: str, method: str, compile_: str, steps: int, resume: bool = False) -> Path:
    cfg = tiny_config(tmp_path, *CUDA, ("method.name", method), ("train.compile", compile_),
                      ("train.max_steps", steps), ("name", name))
    return pretrain(cfg, resume=resume)


def losses(run_dir: Path) -> list[float]:
    return [row["train/loss"] for row in read_metrics(run_dir) if "train/loss" in row]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def assert_same_weights(a: Path, b: Path, tol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key, value in wa.items():
        if value.is_floating_point():
            torch.testing.assert_close(wb[key], value, rtol=tol, atol=tol, msg=key)


@pytest.mark.parametrize("method", ["tribyol", "byol"])
def test_the_compiled_step_matches_eager_on_cuda(tmp_path: Path, method: str) -> None:
    eager = run(tmp_path, "eager", method, "off", 5)
    compiled = run(tmp_path, "compiled", method, "on", 5)
    a, b = losses(eager), losses(compiled)
    assert len(a) == len(b) == 5
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-3, atol=1e-3)
    assert_same_weights(eager, compiled, 1e-3)


def test_a_compiled_run_resumes_exactly_on_cuda(tmp_path: Path) -> None:
    straight = run(tmp_path, "straight", "tribyol", "on", 5)
    cut = run(tmp_path, "cut", "tribyol", "on", 3)
    cut = run(tmp_path, "cut", "tribyol", "on", 5, resume=True)
    assert load_checkpoint(cut / "checkpoints" / "last.ckpt")["global_step"] == 5
    torch.testing.assert_close(torch.tensor(losses(cut)), torch.tensor(losses(straight)),
                               rtol=1e-4, atol=1e-4)
    assert_same_weights(straight, cut, 1e-4)
