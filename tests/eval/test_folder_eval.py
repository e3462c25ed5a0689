"""Folder evaluation scores what the folders hold: test labels by class name, a feature cache
that notices changed files, corrupt images left out and counted, outputs that fail in one
line without losing the score."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tribyol.checkpoints import EncoderInfo
from tribyol.cli import main

COLOURS = {"a": (220, 30, 30), "b": (30, 220, 30), "c": (30, 30, 220)}


def encoder_file(folder: Path) -> Path:
    """A random-init 3-channel ConvNet export: colour alone separates the classes below."""
    torch.manual_seed(0)
    info = EncoderInfo(backbone="convnet", in_channels=3, image_size=16, small_stem=True,
                       mean=(0.5,), std=(0.25,), width=8, method="tribyol", dataset="folder")
    path = folder / "enc.safetensors"
    save_file(info.build_encoder().state_dict(), str(path), metadata=info.to_metadata())
    return path


def images(folder: Path, colour: tuple[int, int, int], count: int, seed: int = 0,
           start: int = 0) -> None:
    """``count`` noisy 16x16 PNGs of one colour."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = (np.array(colour) + rng.integers(-20, 20, (16, 16, 3))).clip(0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")


def tree(root: Path, train: dict[str, int], test: dict[str, int]) -> Path:
    for split, counts in (("train", train), ("test", test)):
        for name, count in counts.items():
            images(root / split / name, COLOURS.get(name, (128, 128, 128)), count,
                   seed=len(name) + count + (split == "test"))
    return root


def linear(tmp_path: Path, root: Path, *extra: str) -> int:
    return main(["eval", "linear", str(encoder_file(tmp_path)), "--data-root", str(root),
                 "--dataset", "folder", "--force-small-test", "--max-iter", "30", "--val-fraction", "0",
                 "--device", "cpu", *extra])


def record(store: Path, line: int = -1) -> dict:
    return json.loads(store.read_text().splitlines()[line])


@pytest.mark.parametrize("test_classes", [
    {"a": 6, "b": 0, "c": 6},  # an empty b/: skipped, c used to take b's label
    {"a": 6, "c": 6},  # no b/ at all
])
def test_test_labels_follow_train_class_names(tmp_path, capsys, test_classes) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8, "c": 8}, test_classes)
    if "b" in test_classes:
        (root / "test" / "b").mkdir(exist_ok=True)
    store = tmp_path / "r.jsonl"
    assert linear(tmp_path, root, "--store", str(store), "--no-cache") == 0
    # by position, test c was scored as b: 50 %
    assert record(store)["value"] == 100.0, capsys.readouterr().out
    assert record(store)["params"]["num_test"] == 12


def test_a_test_class_train_lacks_is_refused(tmp_path, capsys) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8, "c": 8}, {"a": 4, "b": 4, "c": 4, "d": 4})
    store = tmp_path / "r.jsonl"
    assert linear(tmp_path, root, "--store", str(store), "--no-cache") == 2
    err = capsys.readouterr().err
    (line,) = err.splitlines()[-1:]
    assert line.startswith("error: folder: the test split has classes that train has no "
                           "images of: d"), err
    assert "Traceback" not in err and not store.exists()


def test_cache_is_not_reused_after_a_re_split(tmp_path, capsys) -> None:
    root = tmp_path / "imgs"
    tree(root, {"a": 8, "b": 8}, {"a": 4, "b": 4})
    store, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    args = ("--store", str(store), "--cache-dir", str(cache))
    assert linear(tmp_path, root, *args) == 0
    assert record(store)["value"] == 100.0
    # re-split: the same counts per class, but test now holds images of the other class
    for name, other in (("a", "b"), ("b", "a")):
        shutil.rmtree(root / "test" / name)
        images(root / "test" / name, COLOURS[other], 4, seed=9)
    assert linear(tmp_path, root, *args) == 0
    assert record(store)["value"] == 0.0  # the old cache said 100.0
    assert len(list(cache.glob("*.safetensors"))) == 3  # train once, test twice


def test_cache_is_not_reused_after_two_classes_swap_contents(tmp_path, capsys) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8, "c": 8}, {"a": 4, "b": 4, "c": 4})
    store, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    args = ("--store", str(store), "--cache-dir", str(cache))
    assert linear(tmp_path, root, *args) == 0
    assert record(store)["value"] == 100.0
    test = root / "test"
    os.rename(test / "a", test / "tmp")  # same file names, sizes kept by the move
    os.rename(test / "b", test / "a")
    os.rename(test / "tmp", test / "b")
    assert linear(tmp_path, root, *args) == 0
    assert abs(record(store)["value"] - 100 / 3) < 0.01  # only c is right; the cache said 100


def test_corrupt_eval_images_are_left_out_and_not_counted(tmp_path, capsys, caplog) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 4, "b": 4})
    for path in (root / "train" / "a" / "000.png", root / "train" / "b" / "001.png",
                 root / "test" / "b" / "002.png"):
        path.write_bytes(b"not a png")
    store = tmp_path / "r.jsonl"
    with caplog.at_level(logging.WARNING):
        assert linear(tmp_path, root, "--store", str(store), "--no-cache") == 0
    params = record(store)["params"]
    # 24 files, 3 corrupt: 14 train + 7 test scored (a duplicate used to fill each gap)
    assert (params["num_train"], params["num_test"]) == (14, 7)
    assert "14 train / 7 test" in capsys.readouterr().out
    assert "002.png" in caplog.text and "1 of 8 images left out" in caplog.text


def test_unwritable_store_prints_the_record_and_one_error_line(tmp_path, capsys,
                                                               monkeypatch) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 4, "b": 4})
    store = tmp_path / "r.jsonl"

    def read_only(path, record):  # tests run as root: a read-only filesystem, simulated
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("tribyol.eval.cli.append_result", read_only)
    assert linear(tmp_path, root, "--store", str(store), "--no-cache") == 2
    captured = capsys.readouterr()
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert printed["value"] == 100.0 and printed["protocol"] == "linear"
    assert printed["params"]["num_test"] == 8 and printed["time"]
    assert captured.err.count("error: ") == 1 and "Traceback" not in captured.err
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot append to --store {store} (Read-only file system)")


def test_store_that_cannot_be_written_is_refused_before_evaluating(tmp_path, capsys,
                                                                   monkeypatch) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 4, "b": 4})
    store = tmp_path / "ro" / "r.jsonl"
    store.parent.mkdir()
    real = os.access
    monkeypatch.setattr("tribyol.eval.cli.os.access",
                        lambda p, mode: False if Path(p) == store.parent else real(p, mode))
    assert linear(tmp_path, root, "--store", str(store), "--no-cache") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --store {store} cannot be written") and "--no-store" in err


def test_unwritable_cache_falls_back_to_no_cache(tmp_path, capsys, caplog, monkeypatch) -> None:
    """The default cache under a read-only home must not break every evaluation."""
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 4, "b": 4})
    home = tmp_path / "home"
    home.write_text("")  # tests run as root: a file in the way stands for a read-only home
    monkeypatch.delenv("TRIBYOL_CACHE_DIR", raising=False)
    monkeypatch.setattr(Path, "home", lambda: home)
    store = tmp_path / "r.jsonl"
    with caplog.at_level(logging.WARNING):
        assert linear(tmp_path, root, "--store", str(store)) == 0
    assert record(store)["value"] == 100.0 and record(store)["params"]["features_file"] is None
    warnings = [r for r in caplog.records if "cannot write the feature cache" in r.getMessage()]
    assert len(warnings) == 1 and str(home) in warnings[0].getMessage()


def test_extraction_reports_progress_on_stderr_only(tmp_path, capsys, caplog,
                                                    monkeypatch) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 4, "b": 4})
    monkeypatch.setattr("tribyol.eval.features.PROGRESS_SECONDS", 0.0, raising=False)
    with caplog.at_level(logging.INFO, logger="tribyol.eval.features"):
        assert linear(tmp_path, root, "--no-store", "--no-cache", "--eval-batch-size", "4") == 0
    lines = [r.getMessage() for r in caplog.records if "features:" in r.getMessage()]
    assert "folder:imgs train features: 4/16 images" in lines
    assert "features" not in capsys.readouterr().out  # stdout: the result line only


def test_finetune_leaves_corrupt_images_out_of_training_and_test(tmp_path, capsys) -> None:
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 4, "b": 4})
    (root / "train" / "a" / "000.png").write_bytes(b"not a png")
    (root / "test" / "b" / "001.png").write_bytes(b"not a png")
    store = tmp_path / "r.jsonl"
    assert main(["eval", "finetune", str(encoder_file(tmp_path)), "--dataset", "folder",
                 "--data-root", str(root), "--label-fraction", "1", "--epochs", "1",
                 "--batch-size", "4", "--force-small-test", "--store", str(store), "--no-cache",
                 "--device", "cpu", "--splits-dir", str(tmp_path / "splits")]) == 0
    params = record(store)["params"]
    assert (params["num_train"], params["num_test"]) == (15, 7)  # 16 / 8 files, one bad each


def test_the_test_size_rule_counts_the_images_scored(tmp_path, capsys) -> None:
    """100 test files, 3 corrupt: 97 are scored, fewer than the 100 the rule asks for."""
    root = tree(tmp_path / "imgs", {"a": 8, "b": 8}, {"a": 50, "b": 50})
    for i in range(3):
        (root / "test" / "a" / f"{i:03d}.png").write_bytes(b"not a png")
    args = ["eval", "knn", str(encoder_file(tmp_path)), "--data-root", str(root), "--dataset",
            "folder", "--k", "5", "--device", "cpu", "--no-store", "--no-cache"]
    assert main(args) == 2  # the corrupt files used to count (as copies of other images)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "has only 97 labelled images that can be scored (3 more are corrupt" in lines[0]
    assert main([*args, "--force-small-test"]) == 0
    assert "16 train / 97 test" in capsys.readouterr().out
