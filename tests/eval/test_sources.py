"""What is evaluated (``tribyol.eval.sources``), issue 13: no few-label fine-tuning of encoders
that already saw every label of the dataset, and the labels older exports saw."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from tests.conftest import tiny_config
from tests.helpers import error_line
from tribyol.cli import main
from tribyol.engine import pretrain
from tribyol.eval.sources import pretrain_labels


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
    return pretrain(tiny_config(tmp_path_factory.mktemp("sup"), ("method.name", "supervised"),
                                ("data.limit", 64)))


def test_few_label_finetune_of_an_encoder_that_saw_every_label_is_refused(supervised_run, tmp_path,
                                                                         capsys):
    store = tmp_path / "r.jsonl"
    common = ["--dataset", "digits", "--store", str(store), "--device", "cpu", "--no-cache",
              "--splits-dir", str(tmp_path / "s"), "--epochs", "1", "--limit-test", "100"]
    args = ["eval", "finetune", str(supervised_run), *common]
    assert main([*args, "--label-fraction", "0.1"]) == 2
    line = error_line(capsys)
    assert line.startswith("error: eval finetune --label-fraction 0.1: ")
    assert "'digits train labels'" in line and "--label-fraction 1" in line
    assert not store.exists()
    # the exported encoder says the same
    out = tmp_path / "sup.safetensors"
    assert main(["export", str(supervised_run), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["labels_seen"] == "digits train labels"
    capsys.readouterr()
    assert main(["eval", "finetune", str(out), *common, "--label-fraction", "0.01"]) == 2
    assert "every label of digits" in error_line(capsys)
    # so does the name it is filed under in the store (--dataset-label)
    assert main([*args, "--label-fraction", "0.1", "--dataset-label", "digits"]) == 2
    capsys.readouterr()
    # all the labels, or the same network from random weights, are fine
    assert main([*args, "--label-fraction", "1", "--limit-train", "100"]) == 0
    assert main([*args, "--label-fraction", "0.1", "--random-init"]) == 0
    records = [json.loads(line) for line in store.read_text().splitlines()]
    assert [r["pretrain_labels"] for r in records] == ["digits train labels", "none"]
    assert [r["method"] for r in records] == ["supervised", "scratch"]


def test_labels_seen_of_older_exports():
    assert pretrain_labels({"method": "supervised", "dataset": "cifar10"}) == "cifar10 train labels"
    assert pretrain_labels({"method": "supervised-imagenet", "dataset": "stl10"}) == (
        "imagenet labels, stl10 train labels")
    assert pretrain_labels({"method": "byol", "dataset": "stl10"}) is None  # unknown, not guessed
    assert pretrain_labels({"method": "supervised", "labels_seen": "x"}) == "x"
