"""A ``--test-from-train`` carve: its test images move with ``--split-seed`` only, and a carve
holding images the encoder was pre-trained on is refused, naming how many (issue 20)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from torch import nn

from tests.conftest import tiny_config
from tests.helpers import random_png_folder
from tribyol.checkpoints import EncoderInfo, load_encoder
from tribyol.cli import main
from tribyol.data.carves import pretrain_subset
from tribyol.engine import pretrain
from tribyol.errors import ConfigError
from tribyol.eval.carve_overlap import check_carve_unseen
from tribyol.eval.data import load_eval_data
from tribyol.eval.sources import Source


def carve(root: Path, **options):
    return load_eval_data("folder", root, image_size=8, channels=3, test_from_train=0.2, **options)


def test_only_the_split_seed_moves_the_test_images(tmp_path):
    root = random_png_folder(tmp_path / "toy")
    base = carve(root).test_indices.tolist()
    assert len(base) == 20
    assert carve(root, seed=1).test_indices.tolist() == base  # --seed keeps the test set
    assert carve(root, split_seed=1).test_indices.tolist() != base
    # and so does --limit-test: its subset of the test images is the split seed's too
    limited = [carve(root, limit_test=10, **s).test_indices.tolist()
               for s in ({}, {"seed": 1}, {"split_seed": 1})]
    assert limited[0] == limited[1] != limited[2]


def files(data) -> set[str]:
    return {os.path.realpath(data.train.samples[i][0]) for i in data.test_indices.tolist()}


def folder_source(**meta: str) -> Source:
    info = EncoderInfo(backbone="convnet", in_channels=3, image_size=8, small_stem=True,
                       mean=(0.5,) * 3, std=(0.5,) * 3, method="byol", dataset="folder")
    return Source(nn.Identity(), {**info.to_metadata(), **meta}, "enc", Path("enc.safetensors"))


def test_whole_folder_pretraining_is_refused_and_unrecorded_metadata_warns(tmp_path, caplog):
    root = random_png_folder(tmp_path / "toy")
    data = carve(root)
    with pytest.raises(ConfigError, match=r"20 of the 20 carved test images .* pre-train on a "
                                          r"subset drawn outside the carve"):
        check_carve_unseen(folder_source(pretrain_root=str(root.resolve())), data, "folder")
    other = random_png_folder(tmp_path / "other")  # pre-trained elsewhere: nothing in common
    check_carve_unseen(folder_source(pretrain_root=str(other.resolve())), data, "folder")
    with caplog.at_level(logging.WARNING):  # an export from before the record: cannot tell
        check_carve_unseen(folder_source(), data, "folder")
    assert "cannot check whether enc was pre-trained on the carved test images" in caplog.text


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory):
    """A run pre-trained on 6 images per class drawn outside the seed-0 carve of a toy folder."""
    tmp = tmp_path_factory.mktemp("subset")
    root = random_png_folder(tmp / "toy")
    sub = tmp / "toy-pre6"
    pretrain_subset(root, sub, per_class=6, test_fraction=0.2, seed=0)
    run = pretrain(tiny_config(tmp, ("data.dataset", "folder"), ("data.root", str(sub)),
                               ("data.limit", None), ("data.image_size", 8)))
    return root, sub, run


def test_a_carve_overlapping_the_pretraining_subset_is_refused(subset_run, tmp_path, capsys):
    root, sub, run = subset_run
    seen = {os.path.realpath(p) for p in (sub / "train").rglob("*.png")}
    overlap = len(files(carve(root, split_seed=1)) & seen)
    assert not files(carve(root)) & seen and overlap > 0  # the toy reproduces the issue
    store = tmp_path / "r.jsonl"
    common = ["eval", "knn", "--data-root", str(root), "--dataset", "folder", "--test-from-train",
              "0.2", "--force-small-test", "--k", "5", "--no-cache", "--device", "cpu",
              "--store", str(store)]
    expected = (f"error: --test-from-train 0.2 --split-seed 1: {overlap} of the 20 carved test "
                "images of folder:toy are among ")
    remedy = "pass --test-from-train 0.2 --split-seed 0, the carve its pre-training subset"

    assert main([*common, str(run)]) == 0
    assert main([*common, str(run), "--seed", "1"]) == 0  # another evaluation seed: same carve
    assert main([*common, str(run), "--split-seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected) and remedy in err and "\n" not in err
    records = [json.loads(line) for line in store.read_text().splitlines()]
    assert [(r["seed"], r["params"]["split_seed"]) for r in records] == [(0, 0), (1, 0)]

    # the export carries the subset's record; with the subset folder gone it is redrawn
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    meta = load_encoder(out)[1]
    assert meta["pretrain_root"] == str(sub.resolve())
    assert json.loads(meta["pretrain_subset"]) == {"per_class": 6, "seed": 0, "test_fraction": 0.2}
    moved = tmp_path / "moved"
    shutil.move(sub, moved)
    try:
        assert main([*common, str(out)]) == 0
        assert main([*common, str(out), "--split-seed", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(expected) and remedy in err
        assert "redrawn here: 6 per class outside the carve 0.2, split seed 0" in err
    finally:
        shutil.move(moved, sub)


def test_a_validation_carve_scores_outside_the_test_carve_and_the_probe_pool(tmp_path):
    """``--validation-from-train`` (issue 20, item 5): the scored images are a validation carve
    outside the test carve, neither set trains the probe, and the record's split names it."""
    root = random_png_folder(tmp_path / "toy")
    test = set(carve(root).test_indices.tolist())
    data = carve(root, validation_from_train=0.1)
    val, pool = set(data.test_indices.tolist()), set(data.train_indices.tolist())
    assert len(val) == 10 and not val & test and not pool & (val | test)
    assert len(pool) == 70 and data.validation == 0.1
    assert data.test_split.startswith("validation 0.1 of train outside the test carve 0.2 "
                                      "(split seed 0, sha256 ")
    with pytest.raises(ConfigError, match="pass --test-from-train 0.2 with it"):
        load_eval_data("folder", root, image_size=8, channels=3, validation_from_train=0.1)


def test_a_validation_carve_overlapping_the_pretraining_subset_is_refused(subset_run, tmp_path,
                                                                          capsys):
    """A subset drawn outside the test carve only holds validation images: refused, naming
    the count; one drawn outside both carves passes."""
    root, sub, run = subset_run
    seen = {os.path.realpath(p) for p in (sub / "train").rglob("*.png")}
    overlap = len(files(carve(root, validation_from_train=0.1)) & seen)
    assert overlap > 0
    args = ["eval", "knn", str(run), "--data-root", str(root), "--dataset", "folder",
            "--test-from-train", "0.2", "--validation-from-train", "0.1", "--force-small-test",
            "--k", "5", "--no-cache", "--device", "cpu", "--store", str(tmp_path / "r.jsonl")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --test-from-train 0.2 --split-seed 0 --validation-from-train "
                          f"0.1: {overlap} of the 10 carved validation images") and "\n" not in err
    assert "drawn outside the test carve only" in err
    both = tmp_path / "toy-pre6-val"
    pretrain_subset(root, both, per_class=6, test_fraction=0.2, seed=0, validation_fraction=0.1)
    assert json.loads((both / "subset.json").read_text())["validation_fraction"] == 0.1
    check_carve_unseen(folder_source(pretrain_root=str(both.resolve())),
                       carve(root, validation_from_train=0.1), "folder")
