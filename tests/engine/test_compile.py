"""train.compile on CPU (inductor's default mode) against eager: the same losses and weights
over 5 steps of BYOL and TriBYOL, an exact resume, no recompilation while the learning rate and
tau move, and ``auto`` off on CPUs. The compile dominates the time (see ``compiled_runs``).

The runs are fp64 (``train.precision=64-true``). In fp32, eager and inductor kernels sum in
different orders: one step's gradients differ by ~3e-6 relative, and 5 steps of a tiny ConvNet
amplify that to ~4e-5 in a weight, so any fp32 tolerance loose enough to pass would also pass a
small real error. In fp64 the same rounding is ~1e-16; measured, eager and compiled agree to
2.2e-13 after 5 steps, so a tolerance of 1e-9 leaves 4,000x headroom for rounding and still
fails on any change in what is computed (a wrong BatchNorm pass, EMA or learning rate). The bf16
step is compared on CUDA (tests/gpu/test_compiled_step.py)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch._dynamo.utils import counters

from tests.conftest import tiny_config
from tribyol.checkpoints import load_checkpoint
from tribyol.engine import pretrain
from tribyol.engine.compiled import compile_setting, compile_wanted
from tribyol.engine.logs import read_metrics
from tribyol.engine.module import PretrainModule
from tribyol.errors import ConfigError

# 160 digits (16 px views) in batches of 32: 5 steps, lr cosine over them, tau cosine from 0.9;
# a checkpoint after step 3 (where the resumed run is cut).
SMALL = [("data.limit", 160), ("train.batch_size", 32), ("model.width", 4),
         ("model.hidden_dim", 16), ("model.proj_dim", 8), ("method.tau", 0.9),
         ("method.tau_schedule", "cosine"), ("optim.lr", 0.1), ("train.precision", "64-true"),
         ("train.ckpt_every_steps", 3)]
STEPS, CUT = 5, 3
TOLERANCE = {"rtol": 1e-9, "atol": 1e-9}


class Watch(L.Callback):
    """Per step: dynamo's count of compiled graphs, the learning rate and tau in use."""

    def __init__(self) -> None:
        self.graphs, self.lrs, self.taus, self.compile_seconds = [], [], [], None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.graphs.append(counters["stats"]["unique_graphs"])
        self.lrs.append(float(trainer.optimizers[0].param_groups[0]["lr"]))
        self.taus.append(module.method.current_tau(trainer.global_step - 1, module._total_steps))
        self.compile_seconds = module.compile_seconds


class Crash(Exception):
    pass


class CrashAfter(L.Callback):
    """Fails the run as step ``step + 1`` starts, after step ``step``'s checkpoint is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"cut after step {self.step}")


def losses(run_dir: Path) -> list[float]:
    return [row["train/loss"] for row in read_metrics(run_dir) if "train/loss" in row]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], **tol) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tol, msg=lambda m, key=key: f"{key}: {m}")


@pytest.fixture(scope="module")
def compiled_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Eager and compiled runs of BYOL and TriBYOL, and a compiled BYOL run cut after step 3
    then resumed. Each method compiles once (~1 min each on a 2-core CPU with a cold inductor
    cache); a second module of the same shapes reuses the compiled graph."""
    root = tmp_path_factory.mktemp("compile")
    out: dict[str, object] = {}
    for method in ("byol", "tribyol"):
        def cfg(*extra, method=method):
            return tiny_config(root, *SMALL, ("method.name", method), *extra)

        out[f"{method}/eager"] = pretrain(cfg(("name", f"{method}-eager")))
        watch = Watch()
        out[f"{method}/on"] = pretrain(cfg(("train.compile", "on"), ("name", f"{method}-on")),
                                       extra_callbacks=[watch])
        out[f"{method}/watch"] = watch
    cut = tiny_config(root, *SMALL, ("method.name", "byol"), ("train.compile", "on"),
                      ("name", "byol-cut"))
    with pytest.raises(Crash):
        pretrain(cut, extra_callbacks=[CrashAfter(CUT)])
    out["byol/cut"] = load_checkpoint(Path(cut.runs_root) / "byol-cut" / "checkpoints" / "last.ckpt")
    out["byol/resumed"] = pretrain(cut, resume=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byol", "tribyol"])
def test_compiled_step_matches_eager(compiled_runs, method) -> None:
    eager, on = compiled_runs[f"{method}/eager"], compiled_runs[f"{method}/on"]
    eager_losses, on_losses = losses(eager), losses(on)
    assert len(on_losses) == STEPS and len(set(on_losses)) == STEPS  # the loss moved each step
    torch.testing.assert_close(torch.tensor(on_losses), torch.tensor(eager_losses), **TOLERANCE)
    a, b = weights(eager), weights(on)
    assert a["method.online.0.features.0.0.weight"].dtype == torch.float64
    assert_weights_close(a, b, **TOLERANCE)
    # the EMA moved the targets (else equal targets would prove nothing)
    target = next(k for k in a if ".target" in k and k.endswith("weight"))
    online = target.replace("targets.0.", "online.").replace("target.", "online.")
    assert not torch.allclose(b[target], b[online], rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byol", "tribyol"])
def test_learning_rate_and_tau_moving_recompile_nothing(compiled_runs, method) -> None:
    watch = compiled_runs[f"{method}/watch"]
    assert len(set(watch.lrs)) == STEPS and len(set(watch.taus)) == STEPS  # both moved each step
    # the graphs the first step compiled (forward and backward, EMA) serve every later step
    assert watch.graphs[0] > 0 and watch.graphs[1:] == [watch.graphs[0]] * (STEPS - 1)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert watch.compile_seconds is not None and watch.compile_seconds > 0


@pytest.mark.slow
def test_compiled_run_resumed_matches_the_uninterrupted_one(compiled_runs) -> None:
    assert compiled_runs["byol/cut"]["global_step"] == CUT  # it really was cut mid-run
    resumed, whole = compiled_runs["byol/resumed"], compiled_runs["byol/on"]
    assert len(losses(resumed)) == STEPS
    # the same compiled kernels on the same inputs: equal, not merely close
    torch.testing.assert_close(torch.tensor(losses(resumed)), torch.tensor(losses(whole)),
                               rtol=0, atol=0)
    assert_weights_close(weights(resumed), weights(whole), rtol=0, atol=0)


def test_auto_compiles_on_cuda_only_and_never_under_ddp() -> None:
    assert compile_wanted("auto", cuda=False, world_size=1) is False
    assert compile_wanted("auto", cuda=True, world_size=1) is True
    assert compile_wanted("auto", cuda=True, world_size=2) is False
    assert compile_wanted("off", cuda=True, world_size=1) is False
    assert compile_wanted("on", cuda=False, world_size=1) is True
    assert compile_setting(True) == "on" and compile_setting(False) == "off"  # YAML's on / off
    with pytest.raises(ConfigError, match="train.compile=on is not supported with 2 processes"):
        compile_wanted("on", cuda=True, world_size=2)
    # the oldest torch it runs on is 2.11 (the GPU machine's); auto is off below it
    assert compile_wanted("auto", cuda=True, world_size=1, version="2.4.1") is False
    assert compile_wanted("auto", cuda=True, world_size=1, version="2.11.0+cu128") is True
    with pytest.raises(ConfigError, match=r"needs torch >= 2.11 .* this is torch 2.10.0"):
        compile_wanted("on", cuda=True, world_size=1, version="2.10.0")


def test_auto_is_off_on_this_cpu(tmp_path) -> None:
    module = PretrainModule(tiny_config(tmp_path, *SMALL), {"channels": 1, "image_size": 8,
                            "num_classes": 10, "num_train_images": 80, "mean": [0.5],
                            "std": [0.5]})
    assert module.cfg.train.compile == "auto" and module.compiling is False


@pytest.mark.parametrize("devices", [("train.devices", 2), ("train.strategy", "ddp"),
                                     ("train.num_nodes", 2)])
def test_compile_on_with_ddp_is_refused_before_torch(tmp_path, devices) -> None:
    with pytest.raises(ConfigError, match="train.compile=on is not supported with DDP"):
        tiny_config(tmp_path, ("train.compile", True), devices)
