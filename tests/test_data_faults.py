"""Bad data files (issues 14 and 18): validate-data on every CSV the project writes and on broken ones,
truncated JPEGs, images over the pixel limit, 12-bit values in 16-bit PNGs, DICOMs with RescaleSlope 0."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from gloria.cli.main import main
from gloria.data.images import MAX_PIXELS, read_image
from support.dataset_fixtures import write_jpeg
from support.dicom_files import write_dicom
from support.training_runs import synth_root

__all__ = ["synth_root"]


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def _validate(*args: str) -> int:
    return main(["validate-data", "--workers", "1", *args])


# ------------------------------------------------------------------------------------------ project files


def test_every_csv_synth_writes_passes_with_no_flags(
    synth_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csvs = sorted(synth_root.rglob("*.csv"))
    names = {p.name for p in csvs}
    assert {"master_updated.csv", "train.csv", "valid.csv", "chexpert_5x200.csv"} <= names
    assert {"stage_2_train_labels.csv", "train-rle.csv"} <= names
    for csv in csvs:
        caplog.clear()
        assert _validate(str(csv)) == 0, (csv, caplog.text)
        assert "0 error kinds" in caplog.text


def test_master_csv_resolves_images_like_training(synth_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    master = synth_root / "CheXpert-v1.0" / "master_updated.csv"
    assert _validate(str(master), "--decode") == 0
    assert "read as the chexpert layout" in caplog.text


def test_config_gives_the_csvs_and_columns(synth_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    shipped = (Path(__file__).resolve().parents[1] / "configs" / "synth_pretrain_tiny.yaml").read_text()
    config.write_text(shipped.replace("data/synthcxr/CheXpert-v1.0", f"{synth_root}/CheXpert-v1.0"))
    assert _validate("-c", str(config)) == 0
    config.write_text(config.read_text().replace("report_column: Report Impression", "report_column: Text"))
    assert _validate("-c", str(config)) == 1  # the config names a report column the CSV lacks


# ------------------------------------------------------------------------------------------ broken CSVs


def _csv(tmp_path: Path, text: str, name: str = "train.csv") -> Path:
    write_jpeg(tmp_path / "a.jpg", 0)
    write_jpeg(tmp_path / "b.jpg", 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_named_report_column_missing_is_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = _csv(tmp_path, "path,patient_id\na.jpg,p1\nb.jpg,p2\n")
    assert _validate(str(csv)) == 0  # a label-style CSV: reports are not checked (a warning says so)
    assert "no report column" in caplog.text
    assert _validate(str(csv), "--report-col", "report") == 1
    assert f"{csv}: report column 'report'" in caplog.text


def test_header_only_csv_is_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = _csv(tmp_path, "path,report,patient_id\n")
    assert _validate(str(csv)) == 1
    assert "no data rows (header only)" in caplog.text and str(csv) in caplog.text


def test_empty_csv_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = _csv(tmp_path, "")
    assert _validate(str(csv)) == 1
    assert f"{csv}: empty file (no header line)" in caplog.text
    assert "No columns to parse" not in caplog.text


def test_unknown_split_values_are_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = _csv(tmp_path, "path,report,split\na.jpg,Small effusion.,train\nb.jpg,No effusion.,tset\n")
    assert _validate(str(csv)) == 1
    assert "unknown split value" in caplog.text and f"{csv} line 3: 'tset'" in caplog.text


# ------------------------------------------------------------------------------------------ images


def _truncated_jpeg(tmp_path: Path) -> Path:
    good = write_jpeg(tmp_path / "good.jpg", 3, height=64, width=64)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    decoded = cv2.imread(str(cut), cv2.IMREAD_GRAYSCALE)
    assert decoded is not None  # OpenCV decodes it without an error (the lower part grey): the fault
    return cut


def test_truncated_jpeg_is_refused_by_the_reader(tmp_path: Path) -> None:
    cut = _truncated_jpeg(tmp_path)
    with pytest.raises(ValueError, match=f"truncated JPEG {cut}"):
        read_image(cut)
    assert read_image(tmp_path / "good.jpg").shape == (64, 64)


def test_training_does_not_read_a_truncated_jpeg_silently(tmp_path: Path) -> None:
    from gloria.config import tiny_config
    from gloria.data.records import ImageReportRecord
    from gloria.training.datasets import ImageReportDataset

    cut = _truncated_jpeg(tmp_path)
    record = ImageReportRecord(path=cut, report="Small left pleural effusion.", split="train", patient_id="p")
    dataset = ImageReportDataset([record], tiny_config().transforms, train=True)
    with pytest.raises(ValueError, match=f"truncated JPEG {cut}"):
        dataset[0]


@pytest.mark.parametrize("decode", [False, True])
def test_validate_reports_truncated_jpeg(
    decode: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cut = _truncated_jpeg(tmp_path)
    csv = tmp_path / "x.csv"
    csv.write_text(f"path,report\n{cut.name},Small effusion.\ngood.jpg,No effusion.\n")
    assert _validate(str(csv), *(["--decode"] if decode else [])) == 1
    assert "corrupt image: 1" in caplog.text and "truncated JPEG" in caplog.text


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small valid PNG whose header claims ``width`` x ``height`` (the CRC fixed)."""
    ok, data = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    assert ok
    raw = bytearray(data.tobytes())
    raw[16:20], raw[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(raw))
    return path


def test_image_over_the_pixel_limit_is_reported_and_the_check_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = _png_claiming(tmp_path / "huge.png", 40_000, 40_000)
    assert MAX_PIXELS < 40_000**2
    with pytest.raises(ValueError, match="40000 x 40000 = 1,600,000,000 pixels, over the limit"):
        read_image(huge)
    write_jpeg(tmp_path / "ok.jpg", 0)
    csv = tmp_path / "x.csv"
    csv.write_text("path,report\nhuge.png,Effusion.\nok.jpg,Clear.\ngone.jpg,Clear.\n")
    for flags in ([], ["--decode"]):
        caplog.clear()
        assert _validate(str(csv), *flags) == 1
        assert "corrupt image: 1" in caplog.text and "huge.png is 40000 x 40000" in caplog.text
        assert "missing image: 1" in caplog.text  # the rows after it were checked too


def test_12_bit_values_in_a_16_bit_png_use_the_full_range(tmp_path: Path) -> None:
    values = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "12bit.png"), values)
    gray = read_image(tmp_path / "12bit.png")
    expected = np.rint(values.astype(np.float64) * 255 / 4095).astype(np.uint8)
    assert np.abs(gray.astype(int) - expected.astype(int)).max() <= 1
    assert gray.max() == 255  # OpenCV's 8-bit read gives at most 15 here (near black)
    assert int(cv2.imread(str(tmp_path / "12bit.png"), cv2.IMREAD_GRAYSCALE).max()) <= 16


def test_dicom_with_rescale_slope_zero_is_not_black(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = np.arange(0, 4096, 64, dtype=np.uint16).reshape(8, 8)
    zero = write_dicom(tmp_path / "zero.dcm", data, bits_stored=12, rescale=(0.0, 100.0))
    identity = write_dicom(tmp_path / "one.dcm", data, bits_stored=12, rescale=(1.0, 100.0))
    image = read_image(zero)
    assert image.max() == 255 and image.min() == 0
    np.testing.assert_array_equal(image, read_image(identity))
    assert "RescaleSlope" in caplog.text and "zero.dcm" in caplog.text


# ------------------------------------------------------------------------------------------ attend

ATTEND_PEAK = """
import resource, sys
from gloria.cli.main import main
code = main(sys.argv[1:])
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "CODE", code)
"""
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _attend_peak_mb(image: Path, out: Path) -> float:
    import os
    import subprocess
    import sys

    args = [
        "attend",
        str(image),
        "--model",
        "preset:tiny",
        "--text",
        "left pleural effusion",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", ATTEND_PEAK, *args], capture_output=True, text=True, env=env, timeout=600
    )
    words = proc.stdout.split()
    assert "PEAK_MB" in words and words[-1] == "0", proc.stderr[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG"
    return float(words[words.index("PEAK_MB") + 1])


@pytest.mark.slow
def test_attend_on_a_huge_image_stays_in_bounded_memory(tmp_path: Path) -> None:
    """12000 x 12000 (144 MB as 8-bit) took over 9 GB; the maps are now drawn at most 1024 px."""
    side = 12_000
    ramp = np.linspace(0, 255, side, dtype=np.float32).astype(np.uint8)
    huge = np.broadcast_to(ramp, (side, side))
    assert cv2.imwrite(str(tmp_path / "huge.jpg"), np.ascontiguousarray(huge))
    del huge
    write_jpeg(tmp_path / "small.jpg", 0, height=256, width=256)
    small = _attend_peak_mb(tmp_path / "small.jpg", tmp_path / "small.png")
    big = _attend_peak_mb(tmp_path / "huge.jpg", tmp_path / "huge.png")
    # the image itself (144 MB) plus its decoder and one resize; nothing per pixel per word
    assert big - small < 700, (small, big)


def test_attend_out_naming_a_folder_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_jpeg(tmp_path / "x.jpg", 0)
    args = ["attend", str(tmp_path / "x.jpg"), "--model", "preset:tiny", "--text", "effusion"]
    assert main([*args, "--out", str(tmp_path)]) == 1
    assert f"--out {tmp_path} is a folder" in caplog.text
