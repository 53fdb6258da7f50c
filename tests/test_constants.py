"""CheXpert constants, the lazily read prompt vocabulary and the env-driven 5x200 path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import gloria.constants as constants


def test_task_lists_and_uncertain_policy() -> None:
    assert len(constants.CHEXPERT_TASKS) == 14
    assert constants.CHEXPERT_TASKS[0] == "No Finding"
    assert constants.CHEXPERT_TASKS[-1] == "Support Devices"
    assert constants.CHEXPERT_TASKS.index("Pneumonia") == 7
    assert set(constants.CHEXPERT_COMPETITION_TASKS) <= set(constants.CHEXPERT_TASKS)
    assert constants.CHEXPERT_COMPETITION_TASKS == [
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Pleural Effusion",
    ]
    frame = pd.DataFrame([[0.0] * 14], columns=constants.CHEXPERT_TASKS)
    assert list(frame[constants.CHEXPERT_COMPETITION_TASKS].columns) == constants.CHEXPERT_COMPETITION_TASKS
    ones = [t for t, v in constants.CHEXPERT_UNCERTAIN_MAPPINGS.items() if v == 1]
    zeros = [t for t, v in constants.CHEXPERT_UNCERTAIN_MAPPINGS.items() if v == 0]
    assert ones == ["Atelectasis", "Edema", "Pleural Effusion"]
    assert zeros == ["Cardiomegaly", "Consolidation"]


def test_class_prompts_keep_file_order_and_duplicates() -> None:
    prompts = constants.CHEXPERT_CLASS_PROMPTS
    assert list(prompts) == list(constants.CHEXPERT_COMPETITION_TASKS)
    assert list(prompts["Pleural Effusion"]) == ["severity", "location", "subtype"]
    assert list(prompts["Atelectasis"]) == ["severity", "subtype", "location"]
    assert prompts["Pleural Effusion"]["subtype"].count("bilateral pleural effusion") == 2
    prompts["Edema"]["severity"].clear()  # callers get a copy
    assert len(constants.CHEXPERT_CLASS_PROMPTS["Edema"]["severity"]) == 6


def test_5x200_path_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GLORIA_DATA_ROOT", raising=False)
    assert Path(constants.CHEXPERT_5x200) == Path("data/CheXpert-v1.0/chexpert_5x200.csv")
    monkeypatch.setenv("GLORIA_DATA_ROOT", str(tmp_path))
    assert Path(constants.CHEXPERT_5x200) == tmp_path / "CheXpert-v1.0" / "chexpert_5x200.csv"
    assert Path(constants.CHEXPERT_DATA_DIR) == tmp_path / "CheXpert-v1.0"


def test_read_5x200_missing_says_how_to_create(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLORIA_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gloria prepare chexpert5x200") as info:
        constants.read_chexpert_5x200()
    assert str(tmp_path) in str(info.value)
    target = tmp_path / "CheXpert-v1.0" / "chexpert_5x200.csv"
    target.parent.mkdir()
    pd.DataFrame({"Path": ["a.jpg"], "Atelectasis": [1.0]}).to_csv(target, index=False)
    frame = constants.read_chexpert_5x200()
    assert frame["Path"].tolist() == ["a.jpg"]


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="NOPE"):
        _ = constants.NOPE  # type: ignore[attr-defined]
