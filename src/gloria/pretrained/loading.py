"""The release's loading API: ``load_gloria`` and the image-only models, from a registered name, a release
``.ckpt`` or a directory written by ``gloria convert`` (safetensors + YAML, no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors.torch import load_file
from torch import Tensor, nn

from gloria.config import GloriaConfig, TextEncoderConfig, config_from_dict
from gloria.pretrained import registry
from gloria.pretrained.keymap import check_keys, config_from_release, release_text_model
from gloria.pretrained.release import read_release_checkpoint, resolve_text_model

if TYPE_CHECKING:
    from gloria.encoders.image import ImageEncoder
    from gloria.model import GLoRIA
    from gloria.tasks.classifier import ImageClassifier

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METADATA_FILE = "metadata.json"
IMAGE_PREFIX = "img_encoder."


@dataclass
class Weights:
    """Tensors (our keys, CPU) and what is known about them before the text model is resolved.

    config: the full config for a converted directory; ``None`` for a release file (needs the text model)
    """

    source: Path
    state_dict: dict[str, Tensor]
    config: GloriaConfig | None
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def available_models() -> list[str]:
    """Registered model names (the release's ``gloria.available_models()``)."""
    return registry.available_models()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def locate(name: str | Path) -> Path:
    """A registered name, a release checkpoint or a converted directory -> its path."""
    if isinstance(name, str) and name in registry.MODELS:
        return registry.resolve(name)
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{str(name)!r} is neither a registered model ({registry.available_models()}) nor an existing "
            "release checkpoint (.ckpt) or converted directory"
        )
    if path.is_dir() and not registry.is_converted_dir(path):
        raise FileNotFoundError(
            f"directory {path} is not a converted model: it has no {registry.CONVERTED_WEIGHTS}"
        )
    return path


def read_converted(directory: Path, *, sha256: str | None = None) -> Weights:
    """Read a directory written by ``convert`` (``model.safetensors``, ``config.yaml``, ``metadata.json``)."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"converted directory {directory} lacks {CONFIG_FILE}")
    try:
        raw_config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{config_path} is not valid YAML: {err}") from err
    config = config_from_dict(raw_config)
    vocab = config.text.vocab_file
    if vocab is not None and (directory / vocab).is_file():  # vocabularies are stored relative to the dir
        config = config.replace(text__vocab_file=str((directory / vocab).resolve()))
    metadata: dict[str, Any] = {}
    if (directory / METADATA_FILE).is_file():
        metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    weights_path = directory / registry.CONVERTED_WEIGHTS
    if sha256 is not None:
        _check_converted_sha256(directory, metadata, sha256)
    try:
        state_dict = load_file(str(weights_path), device="cpu")
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err
    return Weights(source=directory, state_dict=state_dict, config=config, metadata=metadata)


def _check_converted_sha256(directory: Path, metadata: dict[str, Any], expected: str) -> None:
    """A user hash for a directory is the release file's: it must match the recorded one, and the weights
    file must still have the hash recorded at conversion."""
    want = expected.strip().lower()
    recorded = str(metadata.get("source_sha256", ""))
    if recorded != want:
        raise ValueError(
            f"sha256 mismatch for {directory}: expected {want}, "
            f"it was converted from a file with {recorded or '?'}"
        )
    weights_hash = metadata.get("weights_sha256")
    if weights_hash:
        registry.check_sha256(directory / registry.CONVERTED_WEIGHTS, str(weights_hash))


def read_weights(name: str | Path, *, trust: bool = False, sha256: str | None = None) -> Weights:
    """Tensors and settings of a registered name, a release ``.ckpt`` or a converted directory."""
    path = locate(name)
    if path.is_dir():
        return read_converted(path, sha256=sha256)
    if sha256 is not None:
        registry.check_sha256(path, sha256)
    ckpt = read_release_checkpoint(path, trust=trust)
    return Weights(
        source=path,
        state_dict=ckpt.state_dict,
        config=None,
        hyper_parameters=ckpt.hyper_parameters,
        metadata={"lightning": ckpt.info},
    )


def full_config(weights: Weights, text_model: str | Path | TextEncoderConfig | None) -> GloriaConfig:
    """The config: stored in a converted directory, inferred (with the text model) for a release file."""
    if weights.config is not None:
        if text_model is not None:
            log.warning(
                "text_model is ignored for %s: a converted directory carries its text model", weights.source
            )
        return weights.config
    text = resolve_text_model(text_model, release_text_model(weights.hyper_parameters), source=weights.source)
    return config_from_release(weights.hyper_parameters, weights.state_dict, text)


def load_state_strict(module: nn.Module, state_dict: dict[str, Tensor], source: Path, what: str) -> None:
    """Load with exact key and shape checks; the error lists every missing, unexpected, mis-shaped key."""
    report = check_keys(module.state_dict(), state_dict)
    if not report.ok:
        raise ValueError(f"{source} does not fit the {what}:\n{report.format()}")
    module.load_state_dict(state_dict, strict=True)


def load_gloria(
    name: str | Path = "gloria_resnet50",
    device: str | torch.device | None = None,
    *,
    text_model: str | Path | TextEncoderConfig | None = None,
    trust: bool = False,
    sha256: str | None = None,
) -> GLoRIA:
    """A GLoRIA model in eval mode from a registered name, a release ``.ckpt`` or a converted directory.

    ``text_model``: a local directory (or config) of the text model for release files, whose tokenizer and
    BERT config are not inside the checkpoint; default: the file's ``bert_type`` from the local HF cache.
    ``trust``: allow full unpickling of a release file (runs code from it). ``sha256``: the hash the user
    expects of the release file (checked; for a converted directory compared with the recorded one).
    """
    from gloria.model import GLoRIA

    weights = read_weights(name, trust=trust, sha256=sha256)
    config = full_config(weights, text_model)
    model = GLoRIA(config)
    load_state_strict(model, weights.state_dict, weights.source, f"{config.image.backbone} GLoRIA model")
    log.info("loaded %s (%s, text %s)", weights.source, config.image.backbone, config.text.model)
    return model.to(resolve_device(device)).eval()


def load_image_encoder(
    name: str | Path = "gloria_resnet50",
    device: str | torch.device | None = None,
    *,
    trust: bool = False,
    sha256: str | None = None,
) -> ImageEncoder:
    """Only the image tower (no text model needed), eval mode: trunk + global and local embedders."""
    from gloria.encoders.image import ImageEncoder

    weights = read_weights(name, trust=trust, sha256=sha256)
    if weights.config is not None:
        image_cfg = weights.config.image
    else:
        placeholder = TextEncoderConfig()  # image settings do not depend on the text model
        image_cfg = config_from_release(weights.hyper_parameters, weights.state_dict, placeholder).image
    image_state = {
        k[len(IMAGE_PREFIX) :]: v for k, v in weights.state_dict.items() if k.startswith(IMAGE_PREFIX)
    }
    embedder = image_state.get("global_embedder.weight")
    if embedder is None:
        raise ValueError(f"{weights.source} has no img_encoder.global_embedder.weight")
    encoder = ImageEncoder(dataclasses.replace(image_cfg, imagenet_init=False), int(embedder.shape[0]))
    load_state_strict(encoder, image_state, weights.source, f"{image_cfg.backbone} image encoder")
    return encoder.to(resolve_device(device)).eval()


def load_img_classification_model(
    name: str | Path = "gloria_resnet50",
    device: str | torch.device | None = None,
    num_cls: int = 1,
    freeze_encoder: bool = True,
    *,
    trust: bool = False,
    sha256: str | None = None,
) -> ImageClassifier:
    """The release's linear-probe model: GLoRIA's image trunk + a new ``Linear(C4 -> num_cls)``.

    Returned in training mode for fitting (a frozen encoder stays in eval mode); no text model needed.
    """
    from gloria.tasks.classifier import ImageClassifier

    encoder = load_image_encoder(name, "cpu", trust=trust, sha256=sha256)
    model = ImageClassifier(encoder, num_cls, freeze_encoder=freeze_encoder)
    return model.to(resolve_device(device)).train()


def load_img_segmentation_model(
    name: str | Path = "gloria_resnet50",
    device: str | torch.device | None = None,
    *,
    trust: bool = False,
    sha256: str | None = None,
) -> nn.Module:
    """The release's segmentation model: an smp U-Net whose encoder holds GLoRIA's trunk weights."""
    from gloria.tasks.segmentation_model import build_unet

    encoder = load_image_encoder(name, "cpu", trust=trust, sha256=sha256)
    unet: nn.Module = build_unet(encoder)  # checks every trunk key and shape against smp's encoder
    return unet.to(resolve_device(device)).train()
