"""Reading scientific image files as they are: TIFF, DICOM, 16-bit PNG, .npy, JPEG/PNG.

Every file is written here, in the real format, by the library its users write it with.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tribyol.data import formats
from tribyol.data.formats import ImageFormat, folder_format, probe, read_image
from tribyol.errors import USER_ERRORS, BadImageError, ConfigError

tifffile = pytest.importorskip("tifffile")
pydicom = pytest.importorskip("pydicom")

RNG = np.random.default_rng(0)
# GeoTIFF's tags (ModelPixelScale, ModelTiepoint, GeoKeyDirectory), as a Sentinel-2 tile has.
GEO_TAGS = [(33550, "d", 3, (10.0, 10.0, 0.0), False),
            (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 5000000.0, 0.0), False),
            (34735, "H", 8, (1, 1, 0, 1, 1024, 0, 1, 1), False)]


def geotiff(path: Path, bands: int = 13, side: int = 8) -> np.ndarray:
    """A ``bands``-band uint16 GeoTIFF, pixel-interleaved like EuroSAT's; returns ``[H, W, C]``."""
    pixels = RNG.integers(0, 21700, (side, side, bands), dtype=np.uint16)
    tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig",
                     extratags=GEO_TAGS)
    return pixels


def dicom(path: Path, pixels: np.ndarray, rescale: tuple[float, float] | None = None,
          bits: int = 16) -> None:
    """A single-frame CT-like DICOM of 2-D ``pixels`` (uint16 or int16); ``rescale`` is
    (RescaleSlope, RescaleIntercept), or ``None`` for a file without those tags."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def png16_colour(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG written byte by byte (PIL cannot write one): ``pixels`` ``[H, W, 3]``."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def one_line_error(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert isinstance(err.value, USER_ERRORS)
    assert "\n" not in message and str(path) in message and ";" in message, message
    return message


# -- TIFF -------------------------------------------------------------------------------------


def test_13_band_uint16_geotiff_keeps_every_band_and_level(tmp_path: Path) -> None:
    pixels = geotiff(tmp_path / "tile.tif")
    arr = read_image(tmp_path / "tile.tif")
    assert arr.dtype == np.uint16 and arr.shape == (13, 8, 8)
    np.testing.assert_array_equal(arr, pixels.transpose(2, 0, 1))  # no 8-bit squash
    assert probe(tmp_path / "tile.tif") == ImageFormat(13, "uint16")


def test_planar_and_multi_page_tiffs_stack_bands(tmp_path: Path) -> None:
    bands = RNG.integers(-500, 500, (4, 6, 6), dtype=np.int16)
    tifffile.imwrite(tmp_path / "planar.tiff", bands, photometric="minisblack",
                     planarconfig="separate")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for band in bands:
            tif.write(band, photometric="minisblack")
    for name in ("planar.tiff", "pages.tif"):
        arr = read_image(tmp_path / name)
        np.testing.assert_array_equal(arr, bands)
        assert probe(tmp_path / name) == ImageFormat(4, "int16"), name


def test_float32_tiff_and_single_band(tmp_path: Path) -> None:
    pixels = RNG.normal(size=(5, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", pixels)
    arr = read_image(tmp_path / "f.tif")
    assert arr.shape == (1, 5, 7) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0], pixels)


def test_tiff_pages_of_different_shapes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((8, 8), np.uint16))
        tif.write(np.zeros((4, 4), np.uint16))
    with pytest.raises(BadImageError) as err:
        read_image(path)
    assert "differ in shape" in one_line_error(err, path)
    with pytest.raises(BadImageError):
        probe(path)


def test_empty_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.touch()
    for read in (read_image, probe):
        with pytest.raises(BadImageError) as err:
            read(path)
        assert "0 bytes" in one_line_error(err, path)


def test_truncated_tiff_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    geotiff(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BadImageError) as err:
        read_image(path)
    one_line_error(err, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_files_are_refused(tmp_path: Path, bad: float) -> None:
    pixels = np.ones((3, 4, 4), np.float32)
    pixels[1, 2, 2] = bad
    tifffile.imwrite(tmp_path / "f.tif", pixels, photometric="minisblack", planarconfig="separate")
    np.save(tmp_path / "f.npy", pixels)
    for path in (tmp_path / "f.tif", tmp_path / "f.npy"):
        with pytest.raises(BadImageError) as err:
            read_image(path)
        assert "NaN or Inf" in one_line_error(err, path)


# -- DICOM ------------------------------------------------------------------------------------


def test_int16_dicom_without_rescale_stays_int16(tmp_path: Path) -> None:
    pixels = RNG.integers(-1024, 3000, (6, 5), dtype=np.int16)
    dicom(tmp_path / "ct.dcm", pixels)
    arr = read_image(tmp_path / "ct.dcm")
    assert arr.dtype == np.int16 and arr.shape == (1, 6, 5)
    np.testing.assert_array_equal(arr[0], pixels)


def test_dicom_rescale_gives_hounsfield_float32(tmp_path: Path) -> None:
    """As in the shared CT set: 12-bit unsigned with intercept -1024, 16-bit signed with 1 and
    -1024, a slope of 1.0002441, and tags of 1 and 0: one folder, one format, exact values."""
    unsigned = RNG.integers(0, 4096, (6, 6), dtype=np.uint16)
    signed = RNG.integers(-2000, 2000, (6, 6), dtype=np.int16)
    files = {"u12.dcm": (unsigned, (1, -1024), 12), "s16.dcm": (signed, (1, -1024), 16),
             "slope.dcm": (unsigned, (1.0002441, -1024), 12), "unit.dcm": (signed, (1, 0), 16)}
    for name, (pixels, rescale, bits) in files.items():
        dicom(tmp_path / name, pixels, rescale, bits)
        arr = read_image(tmp_path / name)
        assert arr.dtype == np.float32, name
        expected = pixels.astype(np.float64) * rescale[0] + rescale[1]
        np.testing.assert_allclose(arr[0], expected, rtol=1e-6)
    assert folder_format([tmp_path / name for name in files]) == ImageFormat(1, "float32")
    np.testing.assert_array_equal(read_image(tmp_path / "u12.dcm")[0], unsigned.astype(np.int32) - 1024)


def test_a_broken_dicom_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(b"not a dicom file at all")
    with pytest.raises(BadImageError) as err:
        read_image(path)
    one_line_error(err, path)


# -- PNG, JPEG --------------------------------------------------------------------------------


def test_16_bit_grayscale_png_keeps_16_bits(tmp_path: Path) -> None:
    from PIL import Image

    pixels = RNG.integers(0, 65536, (24, 20), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "xray.png")
    arr = read_image(tmp_path / "xray.png")
    assert arr.dtype == np.uint16 and arr.shape == (1, 24, 20)
    np.testing.assert_array_equal(arr[0], pixels)
    assert len(np.unique(arr)) > 256  # more levels than 8 bits hold


def test_16_bit_colour_png_keeps_16_bits(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    png16_colour(tmp_path / "c.png", pixels)
    arr = read_image(tmp_path / "c.png")
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, pixels.transpose(2, 0, 1))


def test_8_bit_jpeg_and_png(tmp_path: Path) -> None:
    from PIL import Image

    ramp = np.linspace(0, 255, 8).astype(int)  # smooth, so JPEG keeps it close
    rgb = np.stack([np.add.outer(ramp, ramp) // 2, np.tile(ramp, (8, 1)), np.tile(ramp[:, None], 8)],
                   -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png"), rgb.transpose(2, 0, 1))
    jpg = read_image(tmp_path / "a.jpg")
    assert jpg.dtype == np.uint8 and jpg.shape == (3, 8, 8)
    assert np.abs(jpg.astype(int) - rgb.transpose(2, 0, 1)).mean() < 8  # lossy, but close
    assert read_image(tmp_path / "gray.png").shape == (1, 8, 8)


# -- .npy -------------------------------------------------------------------------------------


def test_npy_band_axis_is_the_small_one(tmp_path: Path) -> None:
    chw = RNG.normal(size=(4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "chw.npy", chw)
    np.save(tmp_path / "hwc.npy", chw.transpose(1, 2, 0))
    np.save(tmp_path / "hw.npy", chw[0])
    for name in ("chw.npy", "hwc.npy"):
        np.testing.assert_array_equal(read_image(tmp_path / name), chw)
        assert probe(tmp_path / name) == ImageFormat(4, "float32")
    assert read_image(tmp_path / "hw.npy").shape == (1, 8, 8)
    assert formats.npy_layout((4, 4, 4)) == "CHW"  # a tie is [C, H, W]


def test_npy_layout_can_be_given(tmp_path: Path) -> None:
    hwc = RNG.integers(0, 9, (6, 6, 8), dtype=np.uint8)  # 8 bands on 6 x 6: ambiguous
    np.save(tmp_path / "a.npy", hwc)
    assert read_image(tmp_path / "a.npy").shape == (6, 6, 8)  # the rule reads [C, H, W]
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy", layout="HWC"),
                                  hwc.transpose(2, 0, 1))
    with pytest.raises(ConfigError):
        read_image(tmp_path / "a.npy", layout="WHC")


@pytest.mark.parametrize("dtype", ["float64", "int32", "bool", "uint32", "float16"])
def test_unsupported_dtypes_are_refused(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 4, 4), dtype=dtype))
    with pytest.raises(BadImageError) as err:
        read_image(path)
    assert dtype in one_line_error(err, path)


def test_more_than_64_bands_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.zeros((64, 2, 2), np.uint8))
    np.save(tmp_path / "x.npy", np.zeros((65, 2, 2), np.uint8))
    assert read_image(tmp_path / "ok.npy").shape[0] == 64
    for read in (read_image, probe):
        with pytest.raises(BadImageError) as err:
            read(tmp_path / "x.npy")
        assert "65 bands" in one_line_error(err, tmp_path / "x.npy")


def test_pickled_npy_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadImageError) as err:
        read_image(path)
    one_line_error(err, path)


def test_big_endian_npy_comes_back_native(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 60000, (2, 3, 3)).astype(">u2")
    np.save(tmp_path / "be.npy", pixels)
    arr = read_image(tmp_path / "be.npy")
    assert arr.dtype == np.uint16 and arr.dtype.isnative
    np.testing.assert_array_equal(arr, pixels)


# -- folders ----------------------------------------------------------------------------------


def test_folder_format_reads_bands_and_dtype(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.tif" for i in range(3)]
    for path in paths:
        geotiff(path)
    assert folder_format(paths) == ImageFormat(13, "uint16")
    assert folder_format(paths, channels=13) == ImageFormat(13, "uint16")


def test_folder_mixing_3_and_4_bands_names_the_first_that_differs(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.npy" for i in range(4)]
    for i, path in enumerate(paths):
        np.save(path, np.zeros((3 if i < 2 else 4, 5, 5), np.uint8))
    with pytest.raises(ConfigError) as err:
        folder_format(paths)
    message = one_line_error(err, paths[2])
    assert "4 bands" in message and str(paths[3]) not in message


def test_folder_mixing_dtypes_or_not_matching_channels(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 5, 5), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((3, 5, 5), np.uint16))
    with pytest.raises(ConfigError) as err:
        folder_format([tmp_path / "a.npy", tmp_path / "b.npy"])
    assert "uint16" in one_line_error(err, tmp_path / "b.npy")
    with pytest.raises(ConfigError) as err:
        folder_format([tmp_path / "a.npy"], channels=1)
    assert "data.channels" in one_line_error(err, tmp_path / "a.npy")
    with pytest.raises(ConfigError):
        folder_format([])
