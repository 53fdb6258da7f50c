"""The release checkpoint's key map (release key -> ours, in one table) and exact shape checking.

Also infers our ``GloriaConfig`` from a release file: the image trunk from the weight shapes actually present,
everything else from the run's ``hyper_parameters``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from gloria.config import (
    AlignmentConfig,
    Backbone,
    GloriaConfig,
    ImageEncoderConfig,
    ImageTransformConfig,
    TextEncoderConfig,
)

log = logging.getLogger(__name__)

RELEASE_PREFIX = "gloria."

# The whole key map: (release key pattern, our key template or None = dropped). First match wins.
KEY_MAP: tuple[tuple[str, str | None], ...] = (
    # a persistent buffer in the transformers of 2021, recomputed (and not saved) by today's BertModel
    (r"^gloria\.text_encoder\.model\.embeddings\.position_ids$", None),
    # everything else: the LightningModule attribute prefix goes, the rest is already our name
    (r"^gloria\.(.+)$", r"\1"),
)
_COMPILED = tuple((re.compile(pattern), target) for pattern, target in KEY_MAP)


def release_key_to_ours(key: str) -> str | None:
    """Our name for a release state-dict key; ``None`` when the key is dropped; unchanged when no rule
    matches (it is then reported as unexpected by ``check_keys``)."""
    for pattern, target in _COMPILED:
        match = pattern.match(key)
        if match:
            return None if target is None else match.expand(target)
    return key


def release_to_ours(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Apply ``KEY_MAP`` to a whole release state dict (same tensors, no copies)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        ours = release_key_to_ours(key)
        if ours is not None:
            out[ours] = value
    return out


@dataclass
class KeyReport:
    """Differences between the tensors a model expects and those a file holds."""

    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # key, model shape
    unexpected: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # key, file shape
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )  # file, model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self, limit: int = 50) -> str:
        """Every problem on its own line: key and both shapes (the first ``limit`` of each kind)."""
        lines: list[str] = []
        for title, rows in (
            ("missing from the file", [f"{k} (model {list(s)})" for k, s in self.missing]),
            ("unexpected in the file", [f"{k} (file {list(s)})" for k, s in self.unexpected]),
            ("shape mismatch", [f"{k}: file {list(f)} vs model {list(m)}" for k, f, m in self.mismatched]),
        ):
            if rows:
                lines.append(f"{len(rows)} key(s) {title}:")
                lines.extend(f"  {row}" for row in rows[:limit])
                if len(rows) > limit:
                    lines.append(f"  ... and {len(rows) - limit} more")
        return "\n".join(lines)


def check_keys(expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> KeyReport:
    """Compare keys and exact shapes of ``given`` (the file, our keys) with ``expected`` (the model)."""
    report = KeyReport()
    for key, tensor in expected.items():
        if key not in given:
            report.missing.append((key, tuple(tensor.shape)))
        elif tuple(given[key].shape) != tuple(tensor.shape):
            report.mismatched.append((key, tuple(given[key].shape), tuple(tensor.shape)))
    for key, tensor in given.items():
        if key not in expected:
            report.unexpected.append((key, tuple(tensor.shape)))
    return report


def non_finite_keys(state_dict: Mapping[str, Tensor]) -> list[str]:
    """Keys of floating-point tensors holding NaN or infinity (weights no training run should keep)."""
    import torch

    return [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_state_strict(module: nn.Module, state_dict: Mapping[str, Tensor], source: object, what: str) -> None:
    """The one strict load: exact keys and shapes (the error lists every missing, unexpected and mis-shaped
    key with both shapes), finite values, then ``load_state_dict(strict=True)``."""
    report = check_keys(module.state_dict(), state_dict)
    if not report.ok:
        raise ValueError(f"{source} does not fit the {what}:\n{report.format()}")
    bad = non_finite_keys(state_dict)
    if bad:
        raise ValueError(f"{source} holds NaN or infinite weights in {len(bad)} tensor(s), first {bad[:5]}")
    module.load_state_dict(dict(state_dict), strict=True)


# ------------------------------------------------------------------------------------ config inference

_TRUNK_PREFIX = "img_encoder.model."
# (bottleneck blocks?, blocks per stage) -> torchvision ResNet
_RESNET_LAYOUTS: dict[tuple[bool, tuple[int, ...]], Backbone] = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
}
_RELEASE_MODEL_NAMES: dict[str, Backbone] = {
    "resnet_18": "resnet18",
    "resnet_34": "resnet34",
    "resnet_50": "resnet50",
    "densenet_121": "densenet121",
}


def infer_backbone(state_dict: Mapping[str, Tensor]) -> Backbone:
    """The image trunk whose torchvision layout the ``img_encoder.model.*`` weights (our keys) have."""
    trunk = [k[len(_TRUNK_PREFIX) :] for k in state_dict if k.startswith(_TRUNK_PREFIX)]
    if not trunk:
        prefixes = sorted({k.split(".")[0] for k in state_dict})
        raise ValueError(
            f"no image-encoder weights ({_TRUNK_PREFIX}*) in the file; "
            f"its top-level key prefixes are {prefixes}"
        )
    if any(k.startswith("features.denseblock") for k in trunk):
        return "densenet121"
    blocks: list[int] = []
    for stage in range(1, 5):
        ids = {int(m.group(1)) for k in trunk if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        blocks.append(len(ids))
    bottleneck = "layer1.0.conv3.weight" in trunk
    layout = (bottleneck, tuple(blocks))
    if layout not in _RESNET_LAYOUTS:
        raise ValueError(
            f"unsupported image trunk in the file: {'bottleneck' if bottleneck else 'basic'} ResNet blocks "
            f"per stage {blocks}; supported: {sorted(set(_RESNET_LAYOUTS.values()))} and densenet121"
        )
    return _RESNET_LAYOUTS[layout]


class _Lookup:
    """Dotted-path reads of the release's hyper-parameters that remember which paths were absent."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.absent: list[str] = []

    def get(self, path: str, default: Any) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                self.absent.append(path)
                return default
            node = node[part]
        return default if node is None else node


def release_text_model(hyper_parameters: Mapping[str, Any]) -> str | None:
    """The hub id the release re-created its tokenizer and BERT from (``model.text.bert_type``)."""
    value = _Lookup(hyper_parameters).get("model.text.bert_type", None)
    return str(value) if value is not None else None


def config_from_release(
    hyper_parameters: Mapping[str, Any],
    state_dict: Mapping[str, Tensor],
    text: TextEncoderConfig,
) -> GloriaConfig:
    """Our configuration for a release file (``state_dict`` with our keys, ``text`` the resolved text model).

    The trunk comes from the weight shapes (the release's ResNet-18 entry declared ResNet-50 dims); the
    temperatures, loss weights, word count, image sizes and normalisation from ``hyper_parameters``.
    """
    hp = _Lookup(hyper_parameters)
    backbone = infer_backbone(state_dict)
    declared = hp.get("model.vision.model_name", None)
    if declared is not None and _RELEASE_MODEL_NAMES.get(str(declared)) != backbone:
        log.warning(
            "the file declares model.vision.model_name=%r but its weights are a %s", declared, backbone
        )
    defaults = GloriaConfig()
    aggregate = str(hp.get("model.text.aggregate_method", text.aggregate_method))
    if aggregate not in ("sum", "mean"):
        raise ValueError(f"hyper_parameters model.text.aggregate_method={aggregate!r} is not 'sum' or 'mean'")
    text = dataclasses.replace(
        text,
        last_n_layers=int(hp.get("model.text.last_n_layers", text.last_n_layers)),
        aggregate_method=aggregate,  # type: ignore[arg-type]  # checked just above
        agg_tokens=bool(hp.get("model.text.agg_tokens", text.agg_tokens)),
        max_length=int(hp.get("data.text.word_num", text.max_length)),
    )
    alignment = AlignmentConfig(
        attention_temperature=float(hp.get("model.gloria.temp1", defaults.alignment.attention_temperature)),
        word_temperature=float(hp.get("model.gloria.temp2", defaults.alignment.word_temperature)),
        logit_temperature=float(hp.get("model.gloria.temp3", defaults.alignment.logit_temperature)),
        local_weight=float(hp.get("model.gloria.local_loss_weight", defaults.alignment.local_weight)),
        global_weight=float(hp.get("model.gloria.global_loss_weight", defaults.alignment.global_weight)),
    )
    norm = str(hp.get("transforms.norm", defaults.transforms.norm))
    if norm not in ("half", "imagenet"):
        raise ValueError(f"hyper_parameters transforms.norm={norm!r} is not one of 'half', 'imagenet'")
    transforms = ImageTransformConfig(
        imsize=int(hp.get("data.image.imsize", defaults.transforms.imsize)),
        crop_size=int(hp.get("transforms.random_crop.crop_size", defaults.transforms.crop_size)),
        norm=norm,  # type: ignore[arg-type]
    )
    if hp.absent:
        log.warning("hyper_parameters lack %s; using the release's defaults for them", sorted(set(hp.absent)))
    return GloriaConfig(
        image=ImageEncoderConfig(backbone=backbone, input_resize=defaults.image.input_resize),
        text=text,
        alignment=alignment,
        transforms=transforms,
    )
