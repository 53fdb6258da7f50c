"""``gloria synth`` command: parses the knobs, writes the set, reports bad values."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gloria.cli import synth as synth_cli


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    synth_cli.register(sub)
    return parser.parse_args(argv)


def test_synth_command_writes_a_set(tmp_path: Path) -> None:
    args = _parse(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--n",
            "5",
            "--seed",
            "3",
            "--size",
            "96",
            "--subtlety",
            "0.8",
            "--prevalence",
            "effusion=0.5,edema=0.2",
            "--no-progress",
            "--preview",
            str(tmp_path / "grid.png"),
        ]
    )
    assert args.func(args) == 0
    manifest = json.loads((tmp_path / "synthcxr.json").read_text())
    assert manifest["n"] == 5 and manifest["seed"] == 3
    assert manifest["config"]["size"] == 96 and manifest["config"]["subtlety"] == 0.8
    assert manifest["config"]["prevalence"]["effusion"] == 0.5
    assert manifest["config"]["prevalence"]["cardiomegaly"] == 0.2  # untouched default
    assert len(list((tmp_path / "CheXpert-v1.0").rglob("*.jpg"))) == 5
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_prevalence_is_rejected() -> None:
    with pytest.raises(SystemExit):
        _parse(["synth", "--out", "x", "--prevalence", "effusion"])
    args = _parse(["synth", "--out", "x", "--prevalence", "effusion=2"])
    with pytest.raises(ValueError, match="effusion"):
        args.func(args)
