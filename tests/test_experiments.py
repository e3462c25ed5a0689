"""The experiment scripts never pre-train on the images they test on."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import random_png_folder
from tribyol.data.carves import pretrain_subset
from tribyol.eval.data import load_eval_data

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_pretrain_subset_is_disjoint_from_the_carved_test_split(tmp_path: Path) -> None:
    root, sub = tmp_path / "cifar", tmp_path / "sub"
    random_png_folder(root, per_class=20)
    written = pretrain_subset(root, sub, per_class=10, test_fraction=0.2, seed=0)
    pretrain = {p.resolve() for p in written}
    assert len(pretrain) == 100  # 10 per class: all of the 16 non-test images would fit
    data = load_eval_data("folder", root, image_size=8, channels=3, test_from_train=0.2, seed=0)
    test = {Path(data.test.samples[i][0]).resolve() for i in data.test_indices.tolist()}
    assert len(test) == 40
    assert not pretrain & test
    # the old way (the first N files of each class) took test images
    first = {p.resolve() for c in range(10) for p in sorted((root / "train" / f"class{c}").iterdir())[:10]}
    assert first & test


def test_pretrain_subset_never_deletes_what_it_did_not_write(tmp_path: Path) -> None:
    import pytest

    root = tmp_path / "cifar"
    random_png_folder(root, classes=2, per_class=5)
    partial = tmp_path / "sub.partial"
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        pretrain_subset(root, tmp_path / "sub", per_class=2)
    assert (partial / "notes.txt").read_text() == "mine"
    (partial / "notes.txt").unlink()
    (partial / "train").mkdir()
    (partial / "train" / "old").symlink_to(root)  # a leftover of an interrupted call: cleared
    assert len(pretrain_subset(root, tmp_path / "sub", per_class=2)) == 4 and not partial.exists()
    with pytest.raises(FileExistsError, match="already exists"):
        pretrain_subset(root, tmp_path / "sub", per_class=2)


def test_scripts_carve_with_the_fraction_and_seed_they_evaluate_with() -> None:
    checked = 0
    for script in sorted(EXPERIMENTS.glob("*.sh")):
        text = script.read_text()
        if "--test-from-train" not in text:
            continue
        carve = re.search(r"pretrain_subset\.py .*?--test-fraction ([0-9.]*[0-9])\s+--seed (\d+)", text, re.S)
        assert carve, f"{script.name} evaluates on a carved split but does not pre-train outside it"
        fractions = set(re.findall(r"--test-from-train ([0-9.]*[0-9])", text))
        assert fractions == {carve.group(1)}, script.name
        eval_arrays = re.findall(r"=\(([^)]*--test-from-train[^)]*)\)", text)  # eval flags, seed 0
        assert eval_arrays and carve.group(2) == "0", script.name
        assert not any("--seed" in flags for flags in eval_arrays), script.name
        assert "/work/" not in text, f"{script.name}: default paths must be relative to the repository"
        checked += 1
    assert checked >= 2
