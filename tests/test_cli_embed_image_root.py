"""``gloria embed`` resolves a CSV's relative image paths as zero-shot does (one resolver): ``--image-root``,
else the CSV's folder or the one above it, whichever holds the first image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gloria.config import tiny_config
from gloria.model import GLoRIA
from gloria.tasks.embed import list_images
from support.eval_cli import run_command, write_model_dir


def _images(root: Path, names: list[str]) -> list[Path]:
    out = []
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((40, 50), 20 * i, np.uint8))
        out.append(path)
    return out


def test_csv_paths_resolved_like_the_evaluation_set(tmp_path: Path) -> None:
    files = _images(tmp_path / "data", ["CheXpert-v1.0/a.png", "CheXpert-v1.0/b.png"])
    csv = tmp_path / "data" / "CheXpert-v1.0" / "list.csv"
    csv.write_text("Path\nCheXpert-v1.0/a.png\nCheXpert-v1.0/b.png\n")  # relative to the folder above
    assert list_images(csv) == [p.resolve() for p in files]
    elsewhere = tmp_path / "lists" / "list.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text("Path\na.png\nb.png\n")
    with pytest.raises(FileNotFoundError, match=r"list\.csv: 2 image\(s\) not found.*row 2"):
        list_images(elsewhere)
    assert list_images(elsewhere, tmp_path / "data" / "CheXpert-v1.0") == files


def test_embed_command_takes_image_root(tmp_path: Path) -> None:
    files = _images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    csv = tmp_path / "list.csv"
    csv.write_text("Path\n" + "\n".join(p.name for p in files) + "\n")
    torch.manual_seed(0)
    model = write_model_dir(GLoRIA(tiny_config()).eval(), tmp_path / "model")
    argv = ["embed", "--model", str(model), "--device", "cpu", "--images", str(csv), "--no-cache",
            "--no-progress", "--out", str(tmp_path / "e.npz")]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="not found"):
        run_command("embed", argv)
    assert run_command("embed", [*argv, "--image-root", str(tmp_path / "imgs")]) == 0
    with np.load(tmp_path / "e.npz") as data:
        assert [Path(p).name for p in data["paths"]] == ["a.png", "b.png", "c.png"]
        assert data["embeddings"].shape[0] == 3
