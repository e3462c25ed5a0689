"""benchmarks/gpu.sh, the one GPU call of issue 24: its ``--smoke`` rehearsal runs every step on
the CPU and writes the files the device tool returns; the claim's plan fits its time cap."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = {"gpu.log", "steps.tsv", "throughput_eager.json", "throughput_compiled.json",
         "packing.json", "claim.tar.gz", "summary.md"}


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_claims_epochs_come_from_the_measured_packed_speed(tmp_path: Path) -> None:
    claim_plan = script("claim_plan")
    packing = tmp_path / "packing.json"
    # 6 packed TriBYOL runs at 200 img/s each; BYOL 1.5x faster alone (throughput.json)
    packing.write_text(json.dumps({"settings": {"method": "tribyol", "jobs": 6, "batch": 32,
                                                "backbone": "resnet18"}, "speedup": 3.4,
                                   "packed": {"per_run_images_per_s": [190.0, 200.0, 210.0]}}))
    throughput = tmp_path / "throughput.json"
    throughput.write_text(json.dumps({"rows": [
        {"method": "tribyol", "batch": 32, "variant": "base", "images_per_s": 400.0},
        {"method": "byol", "batch": 32, "variant": "base", "images_per_s": 600.0}]}))
    out = tmp_path / "claim" / "grid.yaml"
    argv = ["--packing", str(packing), "--throughput", str(throughput), "--budget-s", "300",
            "--root", str(tmp_path / "cifar"), "--out", str(out)]
    assert claim_plan.main(argv) == 0
    made = json.loads((out.parent / "claim_plan.json").read_text())
    # (300 - 35 - 45) x 0.9 = 198 s; slowest: TriBYOL at 200 img/s (BYOL-eq: 1.5 / 300) ->
    # 39,600 images = 3 epochs of 10,000 (9,984 a epoch at b32)
    assert made["train_s"] == pytest.approx(198.0) and made["tribyol_img_s"] == 200.0
    assert (made["epochs"], made["per_class"], made["tribyol_steps"]) == (3, 1000, 936)
    assert made["expected_train_s"] <= made["train_s"]
    import yaml

    grid = yaml.safe_load(out.read_text())
    assert grid["base"]["train"]["epochs"] == 3 and grid["cost"]["packing_speedup"] == 3.4
    # a slower machine: fewer images, never fewer than 2 epochs
    assert claim_plan.main([*argv, "--budget-s", "150"]) == 0
    made = json.loads((out.parent / "claim_plan.json").read_text())
    assert made["epochs"] == 2 and made["per_class"] < 1000
    assert made["expected_train_s"] <= made["train_s"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_gpu_script_smoke_runs_every_step_and_writes_its_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PY": sys.executable, "TMPDIR": str(tmp_path),
           "OMP_NUM_THREADS": "1"}
    env.pop("CLAIM_ARCHIVE", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=1150)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == FILES  # at most 8 come back from the device tool
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [s[0] for s in steps] == ["tests", "eager", "compiled", "packing", "plan", "claim"]
    assert {s[1] for s in steps} == {"0"}
    packing = json.loads((out / "packing.json").read_text())
    assert packing["packed"]["runs"] == 2 and packing["sequential"]["runs"] == 2
    rows = json.loads((out / "throughput_eager.json").read_text())["rows"]
    assert {(r["method"], r["batch"]) for r in rows if r.get("images_per_s")} == {
        ("tribyol", 8), ("byol", 8), ("tribyol", 16), ("byol", 16)}
    with tarfile.open(out / "claim.tar.gz") as tar:
        names = tar.getnames()
        store = tar.extractfile("claim/out/results.jsonl").read().decode().splitlines()
    assert "claim/out/tables.md" in names and "claim/claim_plan.json" in names
    assert not any("checkpoints" in n or n.endswith(".ckpt") for n in names)
    # TriBYOL, BYOL and BYOL at equal compute, one seed in the smoke: linear + kNN each
    assert len(store) == 6
    summary = (out / "summary.md").read_text()
    assert "| byol (equal compute x1.5) |" in summary and "| 2 | tribyol | convnet | 8 |" in summary
    assert (tmp_path / "out").exists() and not list(tmp_path.glob("tribyol-gpu.*"))  # work removed
