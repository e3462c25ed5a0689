"""End to end on a tiny digits run: eval linear / knn / finetune append to the store."""

import json

import pytest

from tests.conftest import tiny_config
from tribyol.cli import main
from tribyol.engine import pretrain


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return pretrain(tiny_config(tmp_path_factory.mktemp("pretrain"), ("data.limit", 200)))


def test_eval_commands_append_records(run_dir, tmp_path, capsys):
    store = tmp_path / "results.jsonl"
    common = ["--store", str(store), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["eval", "linear", str(run_dir), "--dataset", "digits", "--max-iter", "30", *common]) == 0
    assert main(["eval", "knn", str(run_dir), "--dataset", "digits", "--k", "10", *common]) == 0
    # the second command read the cached features: one file per split
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    splits = tmp_path / "splits"
    args = ["eval", "finetune", str(run_dir), "--dataset", "digits", "--label-fraction", "0.1",
            "--epochs", "1", "--splits-dir", str(splits), *common]
    assert main(args) == 0
    assert main([*args, "--random-init"]) == 0
    (index_file,) = splits.glob("*.json")
    assert len(json.loads(index_file.read_text())["indices"]) == 144  # 10 % of 1,437 train
    records = [json.loads(line) for line in store.read_text().splitlines()]
    assert [r["protocol"] for r in records] == ["linear", "knn", "finetune", "finetune"]
    assert [r["method"] for r in records] == ["tribyol", "tribyol", "tribyol", "scratch"]
    first = records[0]
    assert first["dataset"] == "digits" and first["pretrain_batch_size"] == 16
    assert first["backbone"] == "convnet" and first["test_split"] == "test"
    assert 0 <= first["value"] <= 100 and records[2]["label_fraction"] == 0.1
    assert "linear" in capsys.readouterr().out


def test_test_carved_from_train(run_dir, tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    assert main(["eval", "knn", str(run_dir), "--dataset", "digits", "--test-from-train", "0.2",
                 "--store", str(store), "--no-cache", "--device", "cpu"]) == 0
    record = json.loads(store.read_text())
    assert record["test_split"].startswith("carved 0.2") and record["params"]["num_test"] == 287
