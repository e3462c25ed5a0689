"""``tribyol data check``: every image of a folder decoded once; pretrain's pre-flight check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tribyol.cli import main
from tribyol.data.check import check_before_training, check_folder, format_check
from tribyol.data.images import FolderImages
from tribyol.errors import BadImageError


def image_folder(root: Path) -> list[Path]:
    """a/: three RGB 16x16 PNGs and a garbage file; b/: two grayscale 20x12 PNGs and a
    truncated one. Returns the two broken files."""
    rng = np.random.default_rng(0)
    for name, count, shape in (("a", 3, (16, 16, 3)), ("b", 3, (12, 20))):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / name / f"{i}.png")
    garbage = root / "a" / "9_garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    truncated = root / "b" / "2.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    return [garbage, truncated]


def test_check_counts_classes_sizes_modes_and_names_each_bad_file(tmp_path: Path) -> None:
    bad = image_folder(tmp_path / "imgs")
    report = check_folder(tmp_path / "imgs", jobs=2)
    assert report.classes == {".": {"a": 4, "b": 3}} and report.total == 7
    assert report.sizes == {(16, 16): 3, (20, 12): 2}
    assert report.modes == {"RGB": 3, "L": 2}
    assert [path for path, _ in report.bad] == bad
    text = format_check(report)
    assert "2 classes, 7 images" in text and "  a  4" in text and "  b  3" in text
    assert "16x16 (3), 20x12 (2)" in text and "RGB (3), L (2)" in text
    assert all(f"unreadable: {path}: " in text for path in bad)


def test_check_command_exits_2_with_one_error_line(tmp_path: Path, capsys) -> None:
    bad = image_folder(tmp_path / "imgs")
    assert main(["data", "check", str(tmp_path / "imgs")]) == 2
    out, err = capsys.readouterr()
    assert all(str(path) in out for path in bad)  # the report, with every bad file, on stdout
    assert err.count("\n") == 1 and err.startswith(f"error: 2 of 7 images under {tmp_path / 'imgs'}")
    assert "data.bad_images=skip" in err


def test_check_command_of_a_good_folder_with_splits_exits_0(tmp_path: Path, capsys) -> None:
    for path in image_folder(tmp_path / "imgs" / "train"):
        path.unlink()
    (tmp_path / "imgs" / "test").mkdir()
    (tmp_path / "imgs" / "train" / "a").rename(tmp_path / "imgs" / "test" / "a")
    assert main(["data", "check", str(tmp_path / "imgs")]) == 0
    out, err = capsys.readouterr()
    assert "train/: 1 class, 2 images" in out and "test/: 1 class, 3 images" in out
    assert "5 images, 0 unreadable" in out and err == ""


def test_check_of_a_missing_folder_is_one_error_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_pre_flight_check_raises_only_for_error_mode_and_names_the_files(tmp_path: Path) -> None:
    bad = image_folder(tmp_path / "imgs")
    folder = FolderImages(tmp_path / "imgs", image_size=16)
    check_before_training(folder, "skip")  # skip mode: no decode pass at all
    with pytest.raises(BadImageError) as err:
        check_before_training(folder, "error")
    message = str(err.value)
    assert message.startswith(f"cannot decode image {bad[0]} (")
    assert f"and 1 more of the 7 images ({bad[1]})" in message
    assert "tribyol data check" in message and "data.bad_images=skip" in message
    check_before_training(folder.subset([0, 1, 4]), "error")  # data.limit's subset: all good


def test_pretrain_with_bad_images_error_stops_before_the_first_step(tmp_path: Path, capsys) -> None:
    """Before: the run started and failed at whichever step first drew the file. Now nothing
    is trained and no run is recorded."""
    bad = image_folder(tmp_path / "imgs")
    runs = tmp_path / "runs"
    rc = main(["pretrain", "--dataset", "folder", "--data-root", str(tmp_path / "imgs"),
               "--set", "data.image_size=16", "--set", "data.bad_images=error",
               "--batch-size", "4", "--max-steps", "1", "--accelerator", "cpu", "--devices", "1",
               "--precision", "32", "--set", "model.width=8", "--set", "train.progress_bar=false",
               "--set", "train.online_probe=false", "--name", "r", "--runs-root", str(runs)])
    err = capsys.readouterr().err
    assert rc == 2
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and str(bad[0]) in line[0] and str(bad[1]) in line[0]
    assert "tribyol: starting run" not in err  # training never began
    assert not (runs / "r" / "checkpoints").exists()
    marker = runs / "r" / "run.json"
    assert not marker.exists() or json.loads(marker.read_text())["status"] == "starting"
