"""Packing ``reproduce --jobs N`` (issue 24): each concurrent cell's device, threads and memory
cap, with the GPU count faked; the cost model's overlap; the engine's memory cap."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

import tribyol.reproduce.packing as packing
from tests.conftest import tiny_config
from tests.reproduce.helpers import FakeRunner, tiny
from tribyol.engine.trainer import cap_cuda_memory
from tribyol.errors import ConfigError
from tribyol.reproduce.cost import CostModel
from tribyol.reproduce.grid import expand_grid
from tribyol.reproduce.runner import Reproduction


@pytest.fixture
def machine(monkeypatch):
    """``machine(gpus, cores)``: fake the GPU count and the host's cores (no parent env set)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def fake(gpus: int, cores: int) -> None:
        monkeypatch.setattr(packing, "gpu_count", lambda: gpus)
        monkeypatch.setattr(packing, "host_cores", lambda: cores)
    return fake


def envs(jobs: int, accelerator: str = "gpu") -> list[dict[str, str]]:
    return [s.env() for s in packing.pool_for(jobs, accelerator).slots]


def test_one_gpu_six_jobs_all_on_cuda0_with_a_sixth_of_the_memory(machine) -> None:
    machine(gpus=1, cores=16)
    assert envs(6) == [{"OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "0",
                        packing.MEMORY_FRACTION_ENV: f"{1 / 6:.6g}"}] * 6


def test_two_gpus_four_jobs_round_robin_half_the_memory_each(machine) -> None:
    machine(gpus=2, cores=16)
    got = envs(4)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in got] == ["0", "1", "0", "1"]
    assert {e[packing.MEMORY_FRACTION_ENV] for e in got} == {"0.5"}
    assert {e["OMP_NUM_THREADS"] for e in got} == {"4"}


def test_the_parents_visible_gpus_are_the_ones_handed_out(machine, monkeypatch) -> None:
    machine(gpus=2, cores=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs(3)] == ["3", "5", "3"]
    # GPU 3 holds two slots, GPU 5 one: each GPU's memory is split between its own slots
    assert [e[packing.MEMORY_FRACTION_ENV] for e in envs(3)] == ["0.5", "1", "0.5"]


def test_cpu_gets_no_cuda_variables_and_the_cores_are_split(machine) -> None:
    machine(gpus=0, cores=8)
    assert envs(4) == [{"OMP_NUM_THREADS": "2"}] * 4
    machine(gpus=1, cores=8)
    assert envs(3, accelerator="cpu") == [{"OMP_NUM_THREADS": "2"}] * 3  # the grid says cpu
    machine(gpus=0, cores=2)
    assert envs(6) == [{"OMP_NUM_THREADS": "1"}] * 6  # never 0 threads


def test_one_job_inherits_everything_and_a_set_omp_num_threads_wins(machine, monkeypatch) -> None:
    machine(gpus=2, cores=16)
    assert envs(1) == [{}]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert {e["OMP_NUM_THREADS"] for e in envs(4)} == {"3"}


class BarrierRunner(FakeRunner):
    """Every pretrain waits until ``n`` are running at once, so all slots are held together."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.barrier, self.envs = threading.Barrier(n, timeout=20), {}
        self._lock = threading.Lock()

    def __call__(self, argv: list[str], log_file: Path, env: dict) -> int:
        if argv[0] == "pretrain":
            with self._lock:
                self.envs[argv[argv.index("--name") + 1]] = dict(env)
            self.barrier.wait()
        with self._lock:
            return super().__call__(argv, log_file, env)


def test_the_runner_gives_each_running_cell_its_own_slot(tmp_path: Path, machine) -> None:
    machine(gpus=2, cores=8)
    spec = tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1])
    spec["base"] = {**spec["base"], "train": {**spec["base"]["train"], "accelerator": "gpu"}}
    grid = expand_grid(spec)
    runner = BarrierRunner(4)
    repro = Reproduction(grid, tmp_path, runner=runner, jobs=4, echo=lambda m: None)
    assert repro.run(grid.cells) == []
    gpus = sorted(e["CUDA_VISIBLE_DEVICES"] for e in runner.envs.values())
    assert gpus == ["0", "0", "1", "1"]  # four cells at once: two per GPU
    assert {e["OMP_NUM_THREADS"] for e in runner.envs.values()} == {"2"}
    text, _ = repro.plan(grid.cells)
    assert "packing: 4 cells at once on GPU(s) 0, 1 (round-robin)" in text
    assert all(repro.state(c)["jobs"] == 4 for c in grid.cells)


def test_the_eta_knows_packed_cells_overlap(tmp_path: Path, machine) -> None:
    machine(gpus=1, cores=2)
    spec = tiny(axes={"method": ["byol"]}, seeds=[0, 1, 2, 3, 4, 5],
                cost={"byol_step_seconds": 1.0, "eval_seconds": 10})
    spec["base"] = {**spec["base"], "train": {**spec["base"]["train"], "accelerator": "gpu"}}
    grid = expand_grid(spec)
    total = sum(CostModel(grid.spec, []).seconds(c, grid.spec) for c in grid.cells)
    text, wall = Reproduction(grid, tmp_path, runner=FakeRunner(), jobs=6).plan(grid.cells)
    assert wall == pytest.approx(total / 3)  # the default: 6 packed runs give 3x, not 6x
    assert "6 jobs: packing speed-up 3x on the GPU" in text
    spec["cost"]["packing_speedup"] = 4.5
    assert CostModel(spec, [], jobs=6, gpu=True).wall(total, 6) == pytest.approx(total / 4.5)
    assert CostModel(spec, [], jobs=2, gpu=True).wall(total, 2) == pytest.approx(total / 2)
    # the CPU: cells share the cores (2 here), so 6 jobs give 2x
    assert CostModel(spec, [], jobs=6, gpu=False, cores=2).wall(total, 6) == pytest.approx(total / 2)
    # fewer cells left than jobs: only those overlap
    assert CostModel(spec, [], jobs=6, gpu=True).wall(total, 1) == pytest.approx(total)
    for bad in (0.5, "fast", True):
        with pytest.raises(ConfigError, match="cost.packing_speedup"):
            CostModel({**spec, "cost": {"packing_speedup": bad}}, [])


def test_a_cell_measured_while_packed_is_costed_as_if_alone(tmp_path: Path) -> None:
    spec = tiny(cost={"packing_speedup": 3.0})
    # 6 packed cells each took 2x as long as alone (6 jobs / 3x): 4 s per unit packed = 2 alone
    packed = [{"pretrain_s": 40.0, "units": 10.0, "jobs": 6, "eval_s": 20.0, "evals": 2}]
    model = CostModel(spec, packed, jobs=6, gpu=True)
    assert model.unit == pytest.approx(2.0) and model.eval == pytest.approx(5.0)
    assert CostModel(spec, [{**packed[0], "jobs": 1}], gpu=True).unit == pytest.approx(4.0)


def test_the_engine_caps_cuda_memory_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple[float, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda f, d: calls.append((f, d)))
    cfg = tiny_config(tmp_path, ("train.accelerator", "gpu"))
    monkeypatch.delenv(packing.MEMORY_FRACTION_ENV, raising=False)
    assert cap_cuda_memory(cfg) is None and calls == []
    monkeypatch.setenv(packing.MEMORY_FRACTION_ENV, "0.25")
    assert cap_cuda_memory(cfg) == 0.25 and calls == [(0.25, 0), (0.25, 1)]
    assert cap_cuda_memory(tiny_config(tmp_path, ("train.accelerator", "cpu"))) is None and len(calls) == 2
    monkeypatch.setenv(packing.MEMORY_FRACTION_ENV, "1.5")
    with pytest.raises(ConfigError, match="expected a fraction in"):
        cap_cuda_memory(cfg)
