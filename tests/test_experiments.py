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


def _scientific():  # experiments/ is not a package: load the script as a module
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("scientific", EXPERIMENTS / "scientific.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["scientific"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_scientific_without_the_shared_data_is_one_error_line(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    import pytest

    sci = _scientific()
    monkeypatch.setattr(sci, "SHARED", tmp_path / "nowhere")
    with pytest.raises(SystemExit) as exit_info:
        sci.main(["--quick", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "eurosat_ms_sample.tar.gz" in err[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # nothing written


def test_scientific_eight_bit_arms_from_the_real_files(tmp_path: Path) -> None:
    """The RGB-only and 8-bit CT baselines' PNG pixels (skips without ../shared/data)."""
    import tarfile

    import numpy as np
    import pytest

    sci = _scientific()
    if not all((sci.SHARED / ds.tarball).is_file() for ds in sci.DATASETS.values()):
        pytest.skip("../shared/data has no EuroSAT-MS / CT tarball")
    tifffile = pytest.importorskip("tifffile")
    for ds in sci.DATASETS.values():
        with tarfile.open(sci.SHARED / ds.tarball) as t:
            member = next(m for m in t.getmembers() if m.name.endswith((".tif", ".dcm")))
            t.extract(member, tmp_path, filter="data")
        path = tmp_path / member.name
        if path.suffix == ".tif":
            dn = tifffile.imread(path)
            rgb = sci.rgb_png(path)
            assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
            expect = np.round(np.clip(dn[..., 3] / sci.RGB_PEAK, 0, 1) * 255)  # B04 is red
            assert np.array_equal(rgb[..., 0], expect)
        else:
            png = sci.ct_png(path)
            assert png.shape == (512, 512) and png.dtype == np.uint8 and png.max() > png.min()
