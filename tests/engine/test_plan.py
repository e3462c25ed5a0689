"""``engine.plan``: the batch finder (``tribyol plan``, ``train.batch_size=auto``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import error_line
from tribyol.cli import main
from tribyol.engine.plan import GIB, Measure, default_candidates, find_batch, free_memory, largest_within

TINY = ["--dataset", "digits", "--limit", "8", "--backbone", "convnet", "--precision", "32",
        "--accelerator", "cpu", "--set", "model.width=4", "--set", "model.hidden_dim=8",
        "--set", "model.proj_dim=4"]


def affine(base: float, per_image: float, calls: list[int] | None = None):
    """A stand-in for a child's measure: memory affine in the batch, as it is."""
    def measure(batch: int) -> Measure:
        if calls is not None:
            calls.append(batch)
        return Measure(batch, int(base + per_image * batch))
    return measure


def test_find_batch_takes_the_largest_that_fits_and_stops_past_the_budget() -> None:
    calls: list[int] = []
    rows, chosen = find_batch(affine(1 * GIB, 0.1 * GIB, calls), [64, 2, 4, 8, 16, 32],
                              budget=int(2.7 * GIB))
    # 16 needs 2.6 GiB, 32 needs 4.2: extrapolated past the budget, so never started
    assert chosen == 16 and calls == [2, 4, 8, 16]
    assert [r.fits for r in rows] == [True, True, True, True, False]
    assert rows[-1].batch == 32 and rows[-1].note.startswith("skipped: extrapolated 4.20 GiB")
    rows, chosen = find_batch(affine(3 * GIB, 0.1 * GIB), [2, 4], budget=2 * GIB)
    assert chosen is None and [r.batch for r in rows] == [2]  # the smallest does not fit


def test_an_out_of_memory_candidate_does_not_fit_and_ends_the_search() -> None:
    def measure(batch: int) -> Measure:
        return Measure(batch, None, note="out of memory") if batch >= 8 else Measure(batch, batch)
    rows, chosen = find_batch(measure, [2, 4, 8, 16], budget=10**12)
    assert chosen == 4 and [r.batch for r in rows] == [2, 4, 8] and rows[-1].fits is False


def test_a_packed_run_plans_within_its_share_of_the_gpu(monkeypatch) -> None:
    """Under reproduce --jobs 6 every cell sees the GPU nearly empty at its start: the budget
    is its 1/6 share, not what is free."""
    monkeypatch.setattr("torch.cuda.mem_get_info", lambda *a: (120 * GIB, 140 * GIB))
    monkeypatch.delenv("TRIBYOL_CUDA_MEMORY_FRACTION", raising=False)
    assert free_memory(cuda=True) == 120 * GIB
    monkeypatch.setenv("TRIBYOL_CUDA_MEMORY_FRACTION", str(1 / 6))
    assert free_memory(cuda=True) == int(140 * GIB / 6)
    monkeypatch.setattr("torch.cuda.mem_get_info", lambda *a: (10 * GIB, 140 * GIB))
    assert free_memory(cuda=True) == 10 * GIB  # less free than the share: what is free


def test_largest_within_bisects_to_the_exact_batch() -> None:
    calls: list[int] = []
    best, taken = largest_within(affine(100, 10, calls), 16, 48, budget=100 + 10 * 37)
    assert best == 37 and len(taken) == len(calls) <= 6
    assert largest_within(affine(100, 10), 16, 48, budget=0)[0] == 16  # none: the low end


def test_default_candidates_are_powers_of_two_up_to_the_data() -> None:
    assert default_candidates(100) == [2, 4, 8, 16, 32, 64]
    assert default_candidates(1) == [2]


@pytest.mark.slow
def test_plan_measures_real_steps_and_prints_the_table(tmp_path: Path, capsys) -> None:
    assert main(["plan", *TINY, "--batches", "2,8", "--steps", "1", "--memory", "64"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| 2 |") or ln.startswith("| 8 |")]
    peaks = [float(r.split("|")[2]) for r in rows]
    # a whole process with torch: far more than nothing, far less than the budget; the larger
    # batch needs at least as much
    assert len(peaks) == 2 and 0.1 < peaks[0] <= peaks[1] < 64
    assert "largest batch that fits: 8" in out
    # a budget below the smallest batch's need: one line naming that need
    assert main(["plan", *TINY, "--batches", "2", "--steps", "1", "--memory", "0.01"]) == 2
    line = error_line(capsys)
    assert "no batch fits in 0.01 GiB" in line and "batch 2, needs" in line


def test_plan_and_auto_refuse_several_devices(capsys) -> None:
    assert main(["plan", *TINY, "--devices", "2"]) == 2
    assert "need train.devices=1" in error_line(capsys)


@pytest.mark.slow
def test_batch_size_auto_trains_at_the_chosen_batch_and_resumes_without_planning(
        tmp_path: Path, capsys, monkeypatch) -> None:
    runs = tmp_path / "runs"
    tiny = [a if a != "8" else "4" for a in TINY]  # 4 images: candidates 2 and 4
    assert main(["pretrain", *tiny, "--batch-size", "auto", "--max-steps", "2", "--runs-root",
                 str(runs), "--set", "train.memory_gib=64", "--set",
                 "train.progress_bar=false"]) == 0
    run = runs / "tribyol_convnet_bauto_s2_digits"
    record = json.loads((run / "run.json").read_text())
    plan = record["batch_plan"]
    assert [r["batch"] for r in plan["rows"]] == [2, 4]
    assert plan["chosen"] == 4 == record["batch_size"] and plan["budget_gib"] == 64
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"] == 4
    # resume: the batch its config.yaml recorded, no second plan
    import tribyol.engine.plan as plan_module

    monkeypatch.setattr(plan_module, "plan_batches", lambda *a, **k: pytest.fail("re-planned"))
    assert main(["pretrain", "--resume", str(run), "--batch-size", "auto", "--max-steps", "3"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["batch_size"] == 4 and record["steps_done"] == 3


def test_batch_size_must_be_auto_or_two_or_more(tmp_path: Path, capsys) -> None:
    for bad in ("1", "autox"):
        assert main(["pretrain", *TINY, "--batch-size", bad, "--runs-root", str(tmp_path)]) == 2
        line = error_line(capsys)
        assert "train.batch_size must be auto or a whole number >= 2" in line or \
            "--batch-size must be auto or a whole number >= 2" in line
