"""DICOM reading: modality LUT, VOI window/LUT, MONOCHROME1, bit depths, the release's 255/max, decoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless

from gloria.data.dicom import DicomDecoderMissingError, display_intensities, read_dicom, voi_pixels
from support.dicom_files import write_compressed_stub, write_dicom


def _linear_window(x: float, center: float, width: float, y_min: float, y_max: float) -> float:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window for one value (plain formula, one pixel at a time)."""
    if x <= center - 0.5 - (width - 1) / 2:
        return y_min
    if x > center - 0.5 + (width - 1) / 2:
        return y_max
    return ((x - (center - 0.5)) / (width - 1) + 0.5) * (y_max - y_min) + y_min


def _expected_window_uint8(
    stored: np.ndarray,
    slope: float,
    intercept: float,
    center: float,
    width: float,
    y_min: float,
    y_max: float,
    monochrome1: bool,
) -> np.ndarray:
    out = np.zeros(stored.shape, dtype=np.uint8)
    for index, value in np.ndenumerate(stored):
        y = _linear_window(float(value) * slope + intercept, center, width, y_min, y_max)
        unit = (y - y_min) / (y_max - y_min)
        out[index] = round((1.0 - unit if monochrome1 else unit) * 255.0)
    return out


@pytest.fixture()
def ramp12() -> np.ndarray:
    return np.arange(0, 4096, 64, dtype=np.uint16).reshape(8, 8)


def test_12_bit_without_window_uses_full_range(tmp_path: Path, ramp12: np.ndarray) -> None:
    ramp = ramp12.copy()
    ramp[-1, -1] = 4095
    path = write_dicom(tmp_path / "a.dcm", ramp, bits_stored=12)
    out = read_dicom(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rint(ramp / 4095.0 * 255.0).astype(np.uint8))


def test_monochrome1_is_inverted(tmp_path: Path, ramp12: np.ndarray) -> None:
    mono2 = read_dicom(write_dicom(tmp_path / "m2.dcm", ramp12, bits_stored=12))
    mono1 = read_dicom(write_dicom(tmp_path / "m1.dcm", ramp12, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(mono1.astype(int), 255 - mono2.astype(int))
    assert mono1[0, 0] == 255 and mono2[0, 0] == 0


def test_16_bit_and_float_output(tmp_path: Path) -> None:
    data = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    path = write_dicom(tmp_path / "b.dcm", data)
    as_float = read_dicom(path, out_dtype=np.float32)
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float, data / 65535.0, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="out_dtype"):
        read_dicom(path, out_dtype=np.int32)


def test_window_with_slope_intercept_matches_plain_formula(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(
        tmp_path / "w.dcm", ramp12, bits_stored=12, rescale=(2.0, -1024.0), window=(1000.0, 3000.0)
    )
    # pydicom's output range: stored 12-bit range 0..4095 through the rescale
    y_min, y_max = 0 * 2.0 - 1024.0, 4095 * 2.0 - 1024.0
    expected = _expected_window_uint8(ramp12, 2.0, -1024.0, 1000.0, 3000.0, y_min, y_max, False)
    out = read_dicom(path)
    np.testing.assert_array_equal(out, expected)
    assert (out == 0).sum() > 0 and (out == 255).sum() > 0  # both ends saturate outside the window


def test_signed_window_monochrome1(tmp_path: Path) -> None:
    stored = np.array([[-1000, -50, 0], [200, 700, 1000]], dtype=np.int16)
    path = write_dicom(
        tmp_path / "s.dcm", stored, rescale=(1.5, 10.0), window=(0.0, 1200.0), photometric="MONOCHROME1"
    )
    y_min, y_max = -(2**15) * 1.5 + 10.0, (2**15 - 1) * 1.5 + 10.0
    expected = _expected_window_uint8(stored, 1.5, 10.0, 0.0, 1200.0, y_min, y_max, True)
    np.testing.assert_array_equal(read_dicom(path), expected)


def test_voi_lut_8_bit_with_more_than_256_entries(tmp_path: Path, ramp12: np.ndarray) -> None:
    lut = [min(255, i // 8) for i in range(4096)]  # 12-bit input, 8-bit output, saturating at 2040
    path = write_dicom(tmp_path / "l.dcm", ramp12, bits_stored=12, voi_lut=(0, lut, 8))
    expected = np.array([lut[v] for v in ramp12.ravel()], dtype=np.uint8).reshape(ramp12.shape)
    np.testing.assert_array_equal(read_dicom(path), expected)


def test_release_mode_scales_by_max_and_inverts(tmp_path: Path, ramp12: np.ndarray) -> None:
    data = ramp12 + 100  # max 4132: not a power of two
    path2 = write_dicom(tmp_path / "r2.dcm", data, bits_stored=13, window=(50.0, 10.0))
    expected = np.rint(data.astype(np.float64) * (255.0 / float(data.max()))).astype(np.uint8)
    out = read_dicom(path2, mode="release")  # the window is ignored in release mode
    np.testing.assert_array_equal(out, expected)
    path1 = write_dicom(tmp_path / "r1.dcm", data, bits_stored=13, photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_dicom(path1, mode="release"), 255 - expected)
    np.testing.assert_allclose(
        read_dicom(path1, mode="release", out_dtype=np.float64), (255 - expected) / 255.0
    )
    with pytest.raises(ValueError, match="mode"):
        read_dicom(path1, mode="fancy")  # type: ignore[arg-type]


def _real_file(name: str) -> str:
    """A real test DICOM from the installed pydicom-data package, read in place (never downloaded)."""
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed locally (pip install pydicom-data)")
    return str(path)


def test_real_rg1_uncr_in_place() -> None:
    path = _real_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    assert (ds.PhotometricInterpretation, ds.BitsStored) == ("MONOCHROME1", 15)
    stored = ds.pixel_array
    out = read_dicom(path)
    assert out.shape == (1955, 1841) and out.dtype == np.uint8
    # window 15000/30000 over the unsigned 15-bit range, then inverted (MONOCHROME1)
    lin = np.clip((stored - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_array_equal(out, np.rint((1.0 - lin) * 255.0).astype(np.uint8))
    release = read_dicom(path, mode="release")
    expected = 255 - np.rint(stored * (255.0 / stored.max())).astype(np.uint8)
    assert np.abs(release.astype(int) - expected.astype(int)).max() <= 1
    assert np.mean(release == expected) > 0.999


def test_real_j2k_decodes_or_fails_clearly() -> None:
    path = _real_file("RG1_J2KR.dcm")
    if get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available:
        reference = read_dicom(_real_file("RG1_UNCR.dcm"))
        np.testing.assert_array_equal(read_dicom(path), reference)  # lossless
    else:
        with pytest.raises(DicomDecoderMissingError, match=r"RG1_J2KR.dcm.*JPEG 2000.*pylibjpeg"):
            read_dicom(path)


def test_compressed_without_decoder_names_file_syntax_and_package(tmp_path: Path) -> None:
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed")
    path = write_compressed_stub(tmp_path / "ls.dcm")
    with pytest.raises(DicomDecoderMissingError) as info:
        read_dicom(path)
    message = str(info.value)
    assert "ls.dcm" in message and "1.2.840.10008.1.2.4.80" in message and "JPEG-LS" in message
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in message
    assert isinstance(info.value, RuntimeError)


def test_missing_corrupt_and_pixelless_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere.dcm"):
        read_dicom(tmp_path / "nothere.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file" * 20)
    with pytest.raises(ValueError, match=r"junk.dcm"):
        read_dicom(junk)
    path = write_dicom(tmp_path / "nopix.dcm", np.zeros((2, 2), dtype=np.uint8))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ValueError, match=r"nopix.dcm.*no pixel data"):
        read_dicom(path)


def test_file_without_preamble(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "old.dcm", ramp12, bits_stored=12, preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(
        read_dicom(path), read_dicom(write_dicom(tmp_path / "new.dcm", ramp12, bits_stored=12))
    )


@pytest.mark.parametrize(
    "options",
    [
        {"bits_stored": 12},
        {
            "bits_stored": 12,
            "rescale": (2.0, -1024.0),
            "window": (1000.0, 3000.0),
            "photometric": "MONOCHROME1",
        },
        {"bits_stored": 12, "window": (2000.0, 1500.0), "voi_function": "SIGMOID"},
        {"bits_stored": 12, "voi_lut": (0, [min(255, i // 8) for i in range(4096)], 8)},
    ],
)
def test_lookup_table_path_equals_per_pixel_pipeline(tmp_path: Path, options: dict) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(100, 4000, size=(16, 16)).astype(np.uint16)
    ds = pydicom.dcmread(write_dicom(tmp_path / "t.dcm", stored, **options))
    table = voi_pixels(ds, ds.pixel_array)
    per_pixel = display_intensities(ds, ds.pixel_array)
    np.testing.assert_allclose(table, per_pixel, rtol=0, atol=1e-12)
    signed = np.array([[-30000, -5], [7, 32000]], dtype=np.int16)
    ds = pydicom.dcmread(write_dicom(tmp_path / "s.dcm", signed, rescale=(0.5, 3.0), window=(0.0, 4000.0)))
    np.testing.assert_allclose(voi_pixels(ds, ds.pixel_array), display_intensities(ds, ds.pixel_array))


def test_multi_frame_uses_first_frame_and_colour_is_refused(tmp_path: Path) -> None:
    first = np.arange(16, dtype=np.uint16).reshape(4, 4) * 100
    path = write_dicom(tmp_path / "mf.dcm", first, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = first.tobytes() + (4095 - first).tobytes()
    ds.save_as(path)
    np.testing.assert_array_equal(read_dicom(path), read_dicom(write_dicom(tmp_path / "one.dcm", first)))
    rgb = write_dicom(tmp_path / "rgb.dcm", np.zeros((2, 6), dtype=np.uint8))
    ds = pydicom.dcmread(rgb)
    ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 2, 3, "RGB", 0
    ds.save_as(rgb)
    with pytest.raises(ValueError, match=r"rgb\.dcm.*colour"):
        read_dicom(rgb)
