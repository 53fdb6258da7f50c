"""SynthCXR determinism: same seed -> same bytes; image i independent of n; resume refills identically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gloria.data.synth import generate, make_case
from gloria.data.synth.generate import MANIFEST_FILE
from support.synth import file_bytes, small_config


def test_two_runs_same_bytes_and_parallel_equals_serial(tmp_path: Path) -> None:
    cfg = small_config()
    generate(tmp_path / "a", 20, seed=11, config=cfg, progress=False)
    generate(tmp_path / "b", 20, seed=11, config=cfg, workers=2, progress=False)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert len(a) > 60  # 3 image files per case plus tables
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]


def test_other_seed_differs() -> None:
    cfg = small_config()
    assert not np.array_equal(make_case(1, 0, cfg).image, make_case(2, 0, cfg).image)
    assert make_case(1, 0, cfg).report.text != make_case(2, 0, cfg).report.text


def test_image_i_does_not_depend_on_n(tmp_path: Path) -> None:
    cfg = small_config()
    generate(tmp_path / "small", 9, seed=5, config=cfg, progress=False)
    generate(tmp_path / "large", 21, seed=5, config=cfg, progress=False)
    small, large = file_bytes(tmp_path / "small"), file_bytes(tmp_path / "large")
    per_image = [k for k in small if k.endswith((".jpg", ".dcm"))]
    assert len(per_image) == 27
    assert all(small[k] == large[k] for k in per_image)
    gt_small = (tmp_path / "small" / "synthcxr_ground_truth.jsonl").read_text().splitlines()
    gt_large = (tmp_path / "large" / "synthcxr_ground_truth.jsonl").read_text().splitlines()
    assert gt_small == gt_large[:9]


def test_resume_fills_deleted_files_identically(tmp_path: Path) -> None:
    cfg = small_config()
    out = tmp_path / "set"
    first = generate(out, 16, seed=3, config=cfg, progress=False)
    assert first.chunks_generated == 2
    before = file_bytes(out)
    victims = [k for k in before if k.endswith(".jpg")][3:4] + [k for k in before if k.endswith(".dcm")][5:6]
    victims.append("CheXpert-v1.0/train.csv")
    for rel in victims:
        (out / rel).unlink()
    again = generate(out, 16, seed=3, config=cfg, progress=False)
    assert again.files_written == 2  # only the deleted image files
    assert again.chunks_generated >= 1
    after = file_bytes(out)
    assert after == before
    untouched = generate(out, 16, seed=3, config=cfg, progress=False)
    assert untouched.chunks_generated == 0 and untouched.files_written == 0


def test_resume_refuses_another_seed(tmp_path: Path) -> None:
    cfg = small_config()
    generate(tmp_path, 4, seed=1, config=cfg, progress=False)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["seed"] == 1 and manifest["n"] == 4
    with pytest.raises(ValueError, match="another seed or config"):
        generate(tmp_path, 4, seed=2, config=cfg, progress=False)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must be"):
        generate("/nonexistent-never-created", 0)
    with pytest.raises(ValueError, match="prevalence"):
        small_config(prevalence={"unicorn": 0.5})
    with pytest.raises(ValueError, match="subtlety"):
        small_config(subtlety=0.0)
