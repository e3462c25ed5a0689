"""End to end on a tiny digits run: eval linear / knn / finetune / transfer append to the store."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    # the untrained encoder claims no pre-training budget; the trained one its own
    assert (records[3]["pretrain_steps"], records[3]["pretrain_epochs"]) == (0, 0.0)
    assert records[0]["pretrain_steps"] > 0 and records[0]["pretrain_epochs"] > 0
    first = records[0]
    assert first["dataset"] == "digits" and first["pretrain_batch_size"] == 16
    assert first["backbone"] == "convnet" and first["test_split"] == "test"
    assert records[2]["label_fraction"] == 0.1
    # the seeds each record was made with: the test set's, and fine-tuning's (--seed's default)
    assert [r["params"]["split_seed"] for r in records] == [0, 0, 0, 0]
    assert records[2]["params"]["finetune_seed"] == records[2]["params"]["options"]["finetune_seed"] == 0
    # digits are near linearly separable even on weak features: a wrong pipeline (labels
    # shuffled against features, train/test mixed up, a broken probe) lands far below these
    assert first["value"] >= 90.0 and records[1]["value"] >= 80.0, [r["value"] for r in records]
    # every record says which images it was scored on: digits has 1,437 train / 360 test
    sizes = [(r["params"]["num_train"], r["params"]["num_test"]) for r in records]
    assert sizes == [(1437, 360), (1437, 360), (144, 360), (144, 360)]
    out = capsys.readouterr().out
    assert "linear" in out and "val " in out and "nan" not in out


def test_linear_without_val_split_says_so(run_dir, tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    assert main(["eval", "linear", str(run_dir), "--dataset", "digits", "--val-fraction", "0",
                 "--max-iter", "10", "--store", str(store), "--no-cache", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "no val split, wd 1e-06" in out and "nan" not in out
    params = json.loads(store.read_text())["params"]
    assert params["val_top1"] is None and params["num_val"] == 0  # valid JSON, no NaN


def test_small_test_set_is_refused_unless_forced(run_dir, tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    args = ["eval", "knn", str(run_dir), "--dataset", "digits", "--limit-test", "50", "--k", "5",
            "--store", str(store), "--no-cache", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "only 50 labelled images, fewer than 100" in line and "--force-small-test" in line
    assert "Traceback" not in err and not store.exists()
    assert main([*args, "--force-small-test"]) == 0
    assert json.loads(store.read_text())["params"]["num_test"] == 50


def test_limit_below_the_number_of_classes_is_refused(run_dir, tmp_path, capsys):
    # a stratified subset keeps one image per class, so --limit-train 5 used to give 10 images
    assert main(["eval", "knn", str(run_dir), "--dataset", "digits", "--limit-train", "5",
                 "--no-store", "--no-cache", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --limit-train 5 is fewer than the 10 classes of digits")
    assert "--limit-train 10 or more" in err


def png_folder(root: Path, per_class: int = 10) -> Path:
    """Two classes of 16x16 PNGs: dark and bright, so a linear probe separates them."""
    rng = np.random.default_rng(0)
    for label, base in (("dark", 30), ("bright", 200)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = (base + rng.integers(0, 40, (16, 16, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i:02d}.png")
    return root


def test_transfer_to_a_folder_carves_its_test_set(run_dir, tmp_path, capsys):
    folder = png_folder(tmp_path / "imgs")
    store = tmp_path / "r.jsonl"
    args = ["eval", "transfer", str(run_dir), "--targets", "folder", "--data-root", str(folder),
            "--test-from-train", "0.2", "--max-iter", "10", "--store", str(store),
            "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    # 4 test images: refused (a row naming the remedy), nothing stored
    assert main(args) == 0
    assert "| folder | refused |" in capsys.readouterr().out and not store.exists()
    assert main([*args, "--force-small-test"]) == 0
    record = json.loads(store.read_text())
    assert record["dataset"] == "folder:imgs" and record["test_split"].startswith("carved 0.2")
    assert (record["params"]["num_train"], record["params"]["num_test"]) == (16, 4)
    assert "| folder | 100.00 | 16 / 4 |" in capsys.readouterr().out


def test_test_carved_from_train(run_dir, tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    args = ["eval", "knn", str(run_dir), "--dataset", "digits", "--test-from-train", "0.2",
            "--store", str(store), "--no-cache", "--device", "cpu"]
    # run_dir pre-trained on 200 digits train images (data.limit, train.seed 0): a limit and a
    # carve of one seed are nested stratified draws, so every one of them is in the carve
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --test-from-train 0.2 --split-seed 0: 200 of the 287 carved "
                          "test images of digits") and "drop --test-from-train" in err
    assert "\n" not in err and not store.exists()
    assert main([*args, "--random-init"]) == 0  # untrained weights saw no image
    record = json.loads(store.read_text())
    assert record["test_split"] == "carved 0.2 of train (split seed 0)"
    assert record["params"]["num_test"] == 287 and record["params"]["split_seed"] == 0


def test_transfer_keeps_a_folder_targets_own_test_split(run_dir, tmp_path, capsys):
    png_folder(tmp_path / "imgs" / "train")
    png_folder(tmp_path / "imgs" / "test", per_class=3)
    store = tmp_path / "r.jsonl"
    assert main(["eval", "transfer", str(run_dir), "--targets", "folder", "--data-root",
                 str(tmp_path / "imgs"), "--test-from-train", "0.2", "--force-small-test",
                 "--max-iter", "10", "--store", str(store), "--no-cache", "--device", "cpu"]) == 0
    record = json.loads(store.read_text())
    assert record["test_split"] == "test"
    assert (record["params"]["num_train"], record["params"]["num_test"]) == (20, 6)
