"""Helpers the reproduce tests share: a tiny digits grid, and runners that stand in for
``tribyol ...`` child processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tribyol.cli import main

GRIDS = Path(__file__).resolve().parents[2] / "configs" / "grids"


TINY_BASE = {
    "method": {"name": "tribyol"},
    "data": {"dataset": "digits", "limit": 64},
    "model": {"backbone": "convnet", "width": 8, "hidden_dim": 16, "proj_dim": 8},
    "train": {"batch_size": 16, "epochs": 2, "precision": "32", "accelerator": "cpu"},
}


TINY_EVAL = {"limit_train": 200, "limit_test": 100, "device": "cpu"}


def tiny(**spec: Any) -> dict[str, Any]:
    return {"base": TINY_BASE, "eval": TINY_EVAL, **spec}


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


class FakeRunner:
    """Stands in for ``tribyol ...`` subprocesses: records the argv, writes what a real
    command writes (a run.json, one store record), and can stop a pretrain midway."""

    def __init__(self, stop_pretrain: set[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.stop_pretrain = stop_pretrain or set()

    def __call__(self, argv: list[str], log_file: Path, env: dict) -> int:
        self.calls.append(list(argv))
        if argv[0] == "pretrain":
            run = Path(argv[argv.index("--runs-root") + 1]) / argv[argv.index("--name") + 1]
            run.mkdir(parents=True, exist_ok=True)
            stopped = run.name in self.stop_pretrain
            self.stop_pretrain.discard(run.name)
            (run / "run.json").write_text(json.dumps(
                {"format": "tribyol-run-v1", "status": "stopped" if stopped else "finished"}))
            return 143 if stopped else 0
        if argv[0] == "eval":
            source = Path(argv[2])
            store = Path(argv[argv.index("--store") + 1])
            config = yaml.safe_load((source.parent.parent / "cells" / f"{source.name}.yaml")
                                    .read_text()) if (source.parent.parent / "cells").is_dir() else {}
            method = "random-init" if "--random-init" in argv else config["method"]["name"]
            record = {"run_id": source.name + ("+random-init" if "--random-init" in argv else ""),
                      "method": method, "dataset": "digits", "protocol": argv[1], "metric": "top1",
                      "value": 50.0 + config["train"]["seed"], "seed": 0, "test_split": "test",
                      "pretrain_batch_size": config["train"]["batch_size"],
                      "pretrain_epochs": config["train"]["epochs"], "source": str(source),
                      "params": {"num_train": 200, "num_test": 100}}
            with open(store, "a") as f:
                f.write(json.dumps(record) + "\n")
        return 0

    def names(self) -> list[str]:
        return [a[0] if a[0] != "eval" else f"{a[1]}:{Path(a[2]).name}" for a in self.calls]


class InterruptedRunner(FakeRunner):
    """Ctrl+C during the first pretrain: ``raise_in_parent`` as the parent's wait sees it
    (jobs 1), else the child's exit code 130 only (a worker thread, jobs > 1)."""

    def __init__(self, raise_in_parent: bool) -> None:
        super().__init__()
        self.raise_in_parent = raise_in_parent

    def __call__(self, argv: list[str], log_file: Path, env: dict) -> int:
        if argv[0] == "pretrain" and not any(a[0] == "pretrain" for a in self.calls):
            self.calls.append(list(argv))
            if self.raise_in_parent:
                raise KeyboardInterrupt
            return 130
        return super().__call__(argv, log_file, env)


def in_process(argv: list[str], log_file: Path, env: dict) -> int:
    return main(argv)


def validation_spec(root: Path, **over: Any) -> dict[str, Any]:
    spec = {"select_on": "validation",
            "data": {"root": str(root), "pretrain_subset": {
                "per_class": 6, "test_fraction": 0.2, "seed": 0, "validation_fraction": 0.1}},
            "base": {"method": {"name": "tribyol"}, "data": {"dataset": "folder", "image_size": 8},
                     "model": {"backbone": "convnet", "width": 8, "hidden_dim": 16, "proj_dim": 8},
                     "train": {"batch_size": 16, "epochs": 1, "precision": "32",
                               "accelerator": "cpu"}},
            "seeds": [0],
            "eval": {"dataset": "folder", "test_from_train": 0.2, "validation_from_train": 0.1,
                     "force_small_test": True, "device": "cpu", "knn": {"k": 5}}}
    spec.update(over)
    return spec
