"""Export of GLoRIA's two towers to ONNX or TorchScript for serving outside Python/PyTorch.

image.onnx: images [B, 3, S, S] -> regions [B, D, h, w], embedding [B, D].
text.onnx:  caption_ids, attention_mask, token_type_ids [K, T] -> words [K, D, T], embedding [K, D],
word_mask [K, T] (word-piece aggregation is inside the graph; word strings and tokenisation are not).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "torchscript"]
IMAGE_INPUTS = ["images"]
IMAGE_OUTPUTS = ["regions", "embedding"]
TEXT_INPUTS = ["caption_ids", "attention_mask", "token_type_ids"]
TEXT_OUTPUTS = ["words", "embedding", "word_mask"]
MIN_OPSET = 16


class ImageTower(nn.Module):
    """images [B, 3, S, S] -> (regions [B, D, h, w], embedding [B, D]) as plain tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = model.get_submodule("img_encoder")

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.encoder(images)
        return features.regions, features.embedding


class TextTower(nn.Module):
    """(caption_ids, attention_mask, token_type_ids) [K, T] -> (words [K, D, T], embedding [K, D],
    word_mask [K, T] as int64 0/1). The per-slot word strings are Python data and stay outside."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = model.get_submodule("text_encoder")

    def forward(
        self, caption_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor
    ) -> tuple[Tensor, ...]:
        features = self.encoder(caption_ids, attention_mask, token_type_ids)
        return features.words, features.embedding, features.word_mask.long()


def example_inputs(model: Any, batch: int = 2) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """An image batch [B, 3, S, S] at the preset's crop size and tokenised example texts [B, T]."""
    size = int(model.config.transforms.crop_size)
    images = torch.zeros(batch, 3, size, size)
    texts = ["no acute cardiopulmonary process", "small left pleural effusion"] * batch
    tokens = model.process_text(texts[:batch], "cpu")
    return images, (tokens["caption_ids"], tokens["attention_mask"], tokens["token_type_ids"])


def export_model(
    model: nn.Module,
    out_dir: str | Path,
    fmt: ExportFormat = "onnx",
    *,
    opset: int = 17,
) -> dict[str, Path]:
    """Write ``image.{onnx,pt}`` and ``text.{onnx,pt}`` plus ``export.json`` (names, shapes, preprocessing).

    The caller's model is not modified (a CPU copy is exported). The batch axis is dynamic; the token axis
    T is fixed to the model's ``text.max_length`` (``process_text`` always pads to it). Returns the written
    paths by role.
    """
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"export format must be 'onnx' or 'torchscript', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # export from a CPU copy in eval mode; the caller's model keeps its device and mode
    model = copy.deepcopy(model).cpu().eval()
    cfg: Any = model.config
    images, text_inputs = example_inputs(model)
    towers = {"image": (ImageTower(model).eval(), (images,)), "text": (TextTower(model).eval(), text_inputs)}
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    paths: dict[str, Path] = {}
    for role, (tower, inputs) in towers.items():
        path = out / f"{role}{suffix}"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            if fmt == "onnx":
                _export_onnx(tower, inputs, path, role, opset)
            else:
                traced = torch.jit.trace(tower, inputs, check_trace=False, strict=False)
                torch.jit.save(traced, str(path))
        paths[role] = path
        log.info("exported the %s tower to %s", role, path)
    manifest = {
        "format": fmt,
        "image": {
            "file": paths["image"].name,
            "inputs": {"images": ["B", 3, cfg.transforms.crop_size, cfg.transforms.crop_size]},
            "outputs": {"regions": ["B", "D", "h", "w"], "embedding": ["B", "D"]},
            "preprocessing": {
                "imsize": cfg.transforms.imsize,
                "crop_size": cfg.transforms.crop_size,
                "norm": cfg.transforms.norm,
                "input_resize_in_graph": cfg.image.input_resize,
            },
        },
        "text": {
            "file": paths["text"].name,
            "inputs": {name: ["K", cfg.text.max_length] for name in TEXT_INPUTS},
            "outputs": {
                "words": ["K", "D", cfg.text.max_length],
                "embedding": ["K", "D"],
                "word_mask": ["K", "T"],
            },
            "outside_graph": "tokenisation (vocab.txt, lower case as configured) and the word strings",
        },
        "config": cfg.to_dict(),
    }
    paths["manifest"] = out / "export.json"
    paths["manifest"].write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return paths


def _index_add_symbolic(g: Any, self: Any, dim: Any, index: Any, source: Any, alpha: Any = None) -> Any:
    """``aten::index_add`` as ONNX ``ScatterElements(reduction="add")``: word pieces of one word share a
    target slot, and torch's default translation (a plain scatter) keeps only one of the duplicates."""
    from torch.onnx import symbolic_helper

    if alpha is not None and symbolic_helper._maybe_get_const(alpha, "f") not in (1, 1.0, None):
        raise ValueError("ONNX export of index_add supports alpha=1 only")
    axis = int(symbolic_helper._maybe_get_const(dim, "i"))
    rank = source.type().dim()
    if rank is None:
        raise ValueError("ONNX export of index_add needs the rank of its source tensor")
    axis = axis % rank
    other_axes = torch.tensor([i for i in range(rank) if i != axis], dtype=torch.long)
    expanded = g.op(
        "Expand", g.op("Unsqueeze", index, g.op("Constant", value_t=other_axes)), g.op("Shape", source)
    )
    return g.op("ScatterElements", self, expanded, source, axis_i=axis, reduction_s="add")


def _export_onnx(tower: nn.Module, inputs: tuple[Tensor, ...], path: Path, role: str, opset: int) -> None:
    """The TorchScript-based exporter (``dynamo=False``): it traces through the text tower's Python-side
    word-string decoding, which does not reach the outputs. ``index_add`` gets a summing translation."""
    if opset < MIN_OPSET:
        raise ValueError(f"ONNX opset must be >= {MIN_OPSET} (ScatterElements with reduction), got {opset}")
    names_in, names_out = (IMAGE_INPUTS, IMAGE_OUTPUTS) if role == "image" else (TEXT_INPUTS, TEXT_OUTPUTS)
    dynamic = {name: {0: "batch"} for name in (*names_in, *names_out)}
    torch.onnx.register_custom_op_symbolic("aten::index_add", _index_add_symbolic, opset)
    try:
        torch.onnx.export(
            tower,
            inputs,
            str(path),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::index_add", opset)
