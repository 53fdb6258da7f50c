"""validate_frame finds every kind of issue and names it; MONOCHROME1 and 12/16-bit DICOM fixtures decode."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gloria.data.images import read_image
from gloria.data.validate import validate_frame
from support.dataset_fixtures import write_jpeg
from support.dicom_files import write_dicom


def test_all_issue_kinds(tmp_path):
    good = write_jpeg(tmp_path / "a.jpg", seed=0)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    frame = pd.DataFrame(
        {
            "path": [str(good), str(tmp_path / "gone.jpg"), str(tmp_path / "corrupt.jpg"), str(good)],
            "report": ["Small effusion.", "", "...", "No pneumothorax."],
            "patient_id": ["p1", "p2", "p1", "p3"],
            "split": ["train", "train", "valid", "test"],
            "view": ["PA", "Lateral", "Frontal", "AP"],
        }
    )
    report = validate_frame(frame, decode=True, workers=2)
    issues = {i.kind: i.items for i in report.issues}
    corrupt = issues.pop("corrupt image")
    assert len(corrupt) == 1 and str(tmp_path / "corrupt.jpg") in corrupt[0]  # with the reason
    assert issues == {
        "empty report": ("row 3",),
        "unparseable report": ("row 4",),
        "missing image": (str(tmp_path / "gone.jpg"),),
        "duplicate path": (str(good),),
        "patient in several splits": ("p1",),
        "non-frontal view": ("row 3",),
    }
    assert not report.ok
    warnings_only = validate_frame(frame.iloc[[0]].assign(view="Lateral"))
    assert warnings_only.ok and [i.kind for i in warnings_only.issues] == ["non-frontal view"]
    without_decode = {i.kind: i.items for i in validate_frame(frame).issues}
    # without decode the header and tail are read: this JPEG has no end-of-image marker (truncated)
    assert "truncated JPEG" in without_decode["corrupt image"][0]


def test_monochrome1_and_high_bit_depth_fixtures_read_as_monochrome2(tmp_path):
    stored = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 64).astype(np.uint16)  # 12-bit values
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", stored, bits_stored=12))
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=12))
    assert mono2[0, 0] < mono2[-1, -1]  # brighter where stored values are higher
    assert np.array_equal(mono1.astype(int), 255 - mono2.astype(int))
    sixteen = read_image(write_dicom(tmp_path / "s16.dcm", (stored.astype(np.uint32) * 16).astype(np.uint16)))
    assert sixteen.dtype == np.uint8 and sixteen.max() == 255 and sixteen.min() == 0
