"""ONNX and TorchScript export of the two towers: parity with PyTorch on the tiny preset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gloria.pretrained.export import export_model

# multi-piece words (one word, many ## pieces summed into one slot), different batch size than the export
TEXTS = [
    "pneumomediastinum with hyperinflation",
    "mild cardiomegaly",
    "right lower lobe pneumonia with small effusion",
]
TOL = 1e-4


def _reference(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> list[np.ndarray]:
    with torch.no_grad():
        image = model.img_encoder(images)
        text = model.text_encoder(batch["caption_ids"], batch["attention_mask"], batch["token_type_ids"])
    tensors = [image.regions, image.embedding, text.words, text.embedding, text.word_mask.long()]
    return [t.numpy() for t in tensors]


@pytest.fixture(scope="module")
def model_and_inputs() -> tuple[torch.nn.Module, torch.Tensor, dict]:
    from gloria.config import tiny_config
    from gloria.model import GLoRIA

    torch.manual_seed(11)
    model = GLoRIA(tiny_config()).eval()
    batch = model.process_text(TEXTS, "cpu")
    pieces = model.text_encoder.tokenizer.convert_ids_to_tokens(batch["caption_ids"][0].tolist())
    assert sum(p.startswith("##") for p in pieces) >= 3  # the test really sums word pieces
    images = torch.randn(len(TEXTS), 3, 64, 64)
    return model, images, batch


def test_onnx_parity(model_and_inputs: tuple, tmp_path: Path) -> None:
    import onnxruntime as ort

    model, images, batch = model_and_inputs
    model.train()
    paths = export_model(model, tmp_path, "onnx")
    assert model.training  # the caller's model is left as it was
    model.eval()
    expected = _reference(model, images, batch)
    image = ort.InferenceSession(str(paths["image"]), providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(str(paths["text"]), providers=["CPUExecutionProvider"])
    got = image.run(None, {"images": images.numpy()})
    got += text.run(None, {k: batch[k].numpy() for k in ("caption_ids", "attention_mask", "token_type_ids")})
    names = ["regions", "embedding", "words", "text embedding", "word_mask"]
    for name, a, b in zip(names, got, expected, strict=True):
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= TOL * max(1.0, float(np.abs(b).max())), name
    assert np.array_equal(got[4], expected[4])
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["text"]["inputs"]["caption_ids"] == ["K", 32]
    assert manifest["image"]["preprocessing"] == {
        "imsize": 72,
        "crop_size": 64,
        "norm": "half",
        "input_resize_in_graph": None,
    }


@pytest.mark.slow  # tracing BERT for TorchScript takes ~10 s on a shared CPU
def test_torchscript_parity(model_and_inputs: tuple, tmp_path: Path) -> None:
    model, images, batch = model_and_inputs
    paths = export_model(model, tmp_path, "torchscript")
    image = torch.jit.load(str(paths["image"]))
    text = torch.jit.load(str(paths["text"]))
    with torch.no_grad():
        got = [*image(images), *text(batch["caption_ids"], batch["attention_mask"], batch["token_type_ids"])]
    for a, b in zip(got, _reference(model, images, batch), strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=TOL)


def test_bad_format_and_opset(model_and_inputs: tuple, tmp_path: Path) -> None:
    model, _, _ = model_and_inputs
    with pytest.raises(ValueError, match="'onnx' or 'torchscript'"):
        export_model(model, tmp_path, "tflite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opset must be >= 16"):
        export_model(model, tmp_path, "onnx", opset=13)


@pytest.mark.slow
def test_cli_export_preset(tmp_path: Path) -> None:
    from gloria.cli import export as export_cli

    parser = argparse.ArgumentParser(prog="gloria")
    export_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--model", "tiny", "--out", str(tmp_path), "--format", "torchscript"])
    assert args.func(args) == 0
    assert (tmp_path / "image.pt").is_file() and (tmp_path / "text.pt").is_file()
    assert json.loads((tmp_path / "export.json").read_text())["format"] == "torchscript"
