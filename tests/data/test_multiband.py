"""Folders of N-band, 16-bit and float files through the data path: decoded in their own dtype
(``tribyol.data.arrays``), normalised from the training images only, recorded with the run;
JPEG folders keep today's uint8 bits. Every file is written here, in its real format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.helpers import error_line, uint16_tiff_folder
from tribyol.cli import main
from tribyol.data.arrays import resize_and_crop
from tribyol.data.band_stats import band_stats
from tribyol.data.carves import pretrain_subset
from tribyol.data.images import FolderImages, TensorImages
from tribyol.errors import ConfigError

tifffile = pytest.importorskip("tifffile")

BANDS, SIDE = 13, 16
PRETRAIN = ["--method", "byol", "--backbone", "convnet", "--batch-size", "4", "--max-steps", "2",
            "--precision", "32", "--accelerator", "cpu", "--devices", "1",
            "--set", "model.width=8", "--set", "model.hidden_dim=16", "--set", "model.proj_dim=8",
            "--set", "train.progress_bar=false", "--set", "data.image_size=16"]


def tiff_folder(root: Path, per_class: int = 5, bands: int = BANDS) -> Path:
    """``root/train/c<k>/<i>.tif``: uint16 tiles, bands last (as EuroSAT's), classes apart by
    brightness, each file brighter than the last, so statistics over different files differ."""
    return uint16_tiff_folder(root, {"train": per_class}, bands, SIDE, ramp=900)


def test_a_13_band_uint16_folder_pretrains_with_stats_from_its_train_carve_only(
        tmp_path: Path, monkeypatch) -> None:
    from safetensors import safe_open

    root = tiff_folder(tmp_path / "tiles")
    sub = tmp_path / "sub"
    picked = pretrain_subset(root, sub, per_class=3, test_fraction=0.4, seed=0)
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", *PRETRAIN, "--dataset", "folder", "--data-root", str(sub),
                 "--runs-root", "runs", "--name", "ms", "--set", "data.scale=10000"]) == 0
    train_mean, train_std = band_stats(sorted(map(str, picked)), seed=0, scale=10000)
    every = sorted(str(p) for p in (root / "train").rglob("*.tif"))
    all_mean, _ = band_stats(every, seed=0, scale=10000)

    ckpt = torch.load("runs/ms/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    info = ckpt["hyper_parameters"]["data_info"]
    assert (info["channels"], info["dtype"], info["scale"], info["stats"]) == (
        BANDS, "uint16", 10000.0, "data")
    assert info["mean"] == pytest.approx(train_mean, rel=1e-9)
    assert info["std"] == pytest.approx(train_std, rel=1e-9)
    assert max(abs(a - b) for a, b in zip(info["mean"], all_mean, strict=True)) > 1e-3
    saved = yaml.safe_load(Path("runs/ms/config.yaml").read_text())["data"]
    assert saved["channels"] == BANDS and saved["mean"] == pytest.approx(train_mean, rel=1e-9)

    assert main(["export", "runs/ms", "--out", "ms.safetensors"]) == 0
    with safe_open("ms.safetensors", "pt") as f:
        meta = f.metadata()
    assert (meta["bands"], meta["in_channels"], meta["dtype"], meta["scale"]) == (
        str(BANDS), str(BANDS), "uint16", "10000.0")
    assert [float(v) for v in meta["mean"].split(",")] == pytest.approx(train_mean, rel=1e-9)

    # evaluated on the carve pre-training stayed outside, each record says the pixels it read
    for protocol in ("knn", "linear"):
        assert main(["eval", protocol, "ms.safetensors", "--data-root", str(root), "--dataset",
                     "folder", "--test-from-train", "0.4", "--force-small-test", "--no-cache",
                     "--device", "cpu", "--store", "r.jsonl"]) == 0
    records = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert [(r["params"]["bands"], r["params"]["dtype"]) for r in records] == [(BANDS, "uint16")] * 2


def test_a_folder_keeps_its_dtype_and_bands_and_resizes_in_it(tmp_path: Path) -> None:
    root = tiff_folder(tmp_path / "tiles", per_class=2)
    folder = FolderImages(root / "train", image_size=8, resize=10, channels=None)
    images, labels = folder[[0, 1, 2]]
    assert (images.dtype, tuple(images.shape), folder.channels) == (torch.uint16, (3, BANDS, 8, 8),
                                                                    BANDS)
    assert labels.tolist() == [0, 0, 1]
    raw = torch.from_numpy(tifffile.imread(folder.samples[0][0]).transpose(2, 0, 1).copy())
    assert torch.equal(FolderImages(root / "train", image_size=SIDE, channels=BANDS)[[0]][0][0], raw)
    with pytest.raises(ConfigError, match="has 13 bands but data.channels is 4"):
        FolderImages(root / "train", channels=4)


def test_resize_and_crop_keeps_dtype_and_rounds_integers() -> None:
    x = torch.full((2, 20, 30), 40000, dtype=torch.uint16)
    y = resize_and_crop(x, 10, 8)
    assert (y.dtype, tuple(y.shape), int(y.int().max())) == (torch.uint16, (2, 8, 8), 40000)
    f = torch.linspace(-1000, 400, 2 * 12 * 12).reshape(2, 12, 12)
    assert resize_and_crop(f, 12, 10).dtype == torch.float32
    assert torch.equal(resize_and_crop(f, 12, 10), f[:, 1:11, 1:11])


def test_a_16_bit_png_and_float_npy_folder_keep_their_pixels(tmp_path: Path) -> None:
    png = tmp_path / "png" / "a"
    png.mkdir(parents=True)
    pixels = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 200 + 7
    Image.fromarray(pixels).save(png / "0.png")  # PIL writes I;16 as a 16-bit grayscale PNG
    images, _ = FolderImages(png.parent, image_size=16, channels=None)[[0]]
    assert images.dtype == torch.uint16 and torch.equal(images[0, 0], torch.from_numpy(pixels))
    npy = tmp_path / "npy" / "a"
    npy.mkdir(parents=True)
    arr = np.random.default_rng(1).normal(-500, 300, (16, 16, 2)).astype(np.float32)
    np.save(npy / "0.npy", arr)
    images, _ = FolderImages(npy.parent, image_size=16, channels=None)[[0]]
    assert images.dtype == torch.float32 and torch.equal(images[0], torch.from_numpy(arr).permute(2, 0, 1))


def test_tensor_images_hold_16_bit_and_float_pixels() -> None:
    for dtype in (torch.uint16, torch.int16, torch.float32):
        images = TensorImages(torch.zeros(2, 13, 4, 4, dtype=dtype), torch.zeros(2))
        assert images.dtype == str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match="uint8, uint16, int16 or float32"):
        TensorImages(torch.zeros(2, 3, 4, 4, dtype=torch.float64), torch.zeros(2))


def _pil_reference(path: Path, resize: int, crop: int, mode: str) -> np.ndarray:
    """Today's decoding, written out with PIL alone: shorter side to ``resize`` (bilinear),
    centre ``crop``."""
    with Image.open(path) as img:
        img = img.convert(mode)
    w, h = img.size
    s = resize / min(w, h)
    if s != 1:
        img = img.resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - crop) // 2, (h - crop) // 2
    arr = np.asarray(img.crop((left, top, left + crop, top + crop)))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def test_a_jpeg_folder_keeps_the_uint8_path_and_its_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "jpg"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, (w, h) in enumerate([(40, 30), (32, 32), (50, 64)]):
            rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / c / f"{i}.jpg", quality=90)
            Image.fromarray(rgb[..., 0]).save(root / c / f"g{i}.png")
    for channels, mode in ((None, "RGB"), (3, "RGB"), (1, "L")):
        folder = FolderImages(root, 32, 36, channels)
        assert (folder.format, folder.dtype, folder.channels) == (None, "uint8", len(mode))
        images, _ = folder[list(range(len(folder)))]
        assert images.dtype == torch.uint8
        for image, (path, _) in zip(images, folder.samples, strict=True):
            assert np.array_equal(image.numpy(), _pil_reference(Path(path), 36, 32, mode))
    with pytest.raises(ConfigError, match="read as 1 .grayscale. or 3"):
        FolderImages(root, channels=4)


def _bad_folders(root: Path) -> dict[str, tuple[Path, str]]:
    """Folders that each hold one kind of bad file, and what their error line must say."""
    rng = np.random.default_rng(2)
    cases = {}

    def folder(name: str) -> Path:
        path = root / name / "c0"
        path.mkdir(parents=True)
        for i in range(4):
            np.save(path / f"{i}.npy", rng.random((3, 16, 16), dtype=np.float32))
        return path

    mixed = folder("mixed")
    np.save(mixed / "9.npy", rng.random((4, 16, 16), dtype=np.float32))
    cases["mixed"] = (mixed.parent, "9.npy has 4 bands of float32 but")
    nan = folder("nan")
    bad = rng.random((3, 16, 16), dtype=np.float32)
    bad[0, 3, 3] = np.nan
    np.save(nan / "9.npy", bad)
    cases["nan"] = (nan.parent, "9.npy: holds 1 NaN or Inf values")
    empty = root / "empty" / "c0"
    empty.mkdir(parents=True)
    for i in range(4):
        tifffile.imwrite(empty / f"{i}.tif", rng.integers(0, 9, (16, 16, 3), dtype=np.uint16))
    (empty / "9.tif").write_bytes(b"")
    cases["empty"] = (empty.parent, "9.tif: is an empty file (0 bytes)")
    pages = root / "pages" / "c0"
    pages.mkdir(parents=True)
    for i in range(4):
        tifffile.imwrite(pages / f"{i}.tif", rng.integers(0, 9, (16, 16), dtype=np.uint16))
    with tifffile.TiffWriter(pages / "9.tif") as tif:
        tif.write(rng.integers(0, 9, (16, 16), dtype=np.uint16))
        tif.write(rng.integers(0, 9, (8, 8), dtype=np.uint16))
    cases["pages"] = (pages.parent, "9.tif: is a multi-page TIFF whose pages differ in shape")
    return cases


@pytest.mark.parametrize("case", ["mixed", "nan", "empty", "pages"])
def test_bad_files_are_one_error_line_and_nothing_written(
        tmp_path: Path, monkeypatch, capsys, case: str) -> None:
    root, expected = _bad_folders(tmp_path / "data")[case]
    monkeypatch.chdir(tmp_path)
    code = main(["pretrain", *PRETRAIN, "--dataset", "folder", "--data-root", str(root),
                 "--runs-root", "runs", "--name", "bad"])
    line = error_line(capsys)
    assert code == 2 and expected in line and line.startswith("error: "), line
    assert not Path("runs").exists()


def test_a_float_folder_without_a_bad_file_pretrains_with_a_value_range(
        tmp_path: Path, monkeypatch) -> None:
    root, _ = _bad_folders(tmp_path / "data")["pages"]
    monkeypatch.chdir(tmp_path)
    (root / "c0" / "9.tif").unlink()
    assert main(["pretrain", *PRETRAIN, "--dataset", "folder", "--data-root", str(root),
                 "--runs-root", "runs", "--name", "ok", "--set", "data.value_range=[0,4]"]) == 0
    saved = json.dumps(yaml.safe_load(Path("runs/ok/config.yaml").read_text())["data"])
    assert '"value_range": [0.0, 4.0]' in saved and '"channels": 1' in saved
