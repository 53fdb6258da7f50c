"""The one model loader: ``load_model(spec)`` for every kind of model the package makes or reads -- a
registered name, a release ``.ckpt``, a directory written by ``gloria convert`` (safetensors + YAML, no
pickle), a checkpoint written by ``gloria train`` (pretraining: the GLoRIA model; classification or
segmentation: that model with its head) and ``preset:NAME`` (random weights). ``load_gloria`` and the
release's image-only models are built on it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from gloria.config import GloriaConfig, TextEncoderConfig, preset
from gloria.pretrained import registry
from gloria.pretrained.converted import (
    check_converted_sha256,
    check_shapes_before_building,
    converted_config,
    file_shapes,
    read_metadata,
)
from gloria.pretrained.keymap import config_from_release, load_state_strict, release_text_model
from gloria.pretrained.release import release_from_raw, resolve_text_model
from gloria.pretrained.safe_pickle import safe_torch_load
from gloria.pretrained.trained import is_training_checkpoint, read_training_checkpoint

if TYPE_CHECKING:
    from gloria.encoders.image import ImageEncoder
    from gloria.model import GLoRIA
    from gloria.tasks.classifier import ImageClassifier

log = logging.getLogger(__name__)

IMAGE_PREFIX = "img_encoder."
PRESET_PREFIX = "preset:"


@dataclass
class Weights:
    """Tensors (our keys, CPU) and what is known about them before the text model is resolved.

    config: the full config for a converted directory or a training checkpoint; ``None`` for a release
            file (needs the text model)
    task:   the model the tensors belong to: ``pretrain`` (a GLoRIA), ``classification`` (an
            ``ImageClassifier``: keys ``img_encoder.*`` and ``classifier.*``) or ``segmentation`` (a U-Net)
    """

    source: Path
    state_dict: dict[str, Tensor]
    config: GloriaConfig | None
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    task: str = "pretrain"
    classes: list[str] = field(default_factory=list)
    freeze_encoder: bool = True


def available_models() -> list[str]:
    """Registered model names (the release's ``gloria.available_models()``)."""
    return registry.available_models()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def locate(name: str | Path) -> Path:
    """A registered name, a checkpoint file or a converted directory -> its path."""
    if isinstance(name, str) and name in registry.MODELS:
        return registry.resolve(name)
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{str(name)!r} is neither a registered model ({registry.available_models()}), an existing "
            "checkpoint (.ckpt: a release file or one written by `gloria train`), a converted directory, "
            f"nor {PRESET_PREFIX}NAME"
        )
    if path.is_dir() and not registry.is_converted_dir(path):
        raise FileNotFoundError(
            f"directory {path} is not a converted model: it has no {registry.CONVERTED_WEIGHTS}"
        )
    return path


# ------------------------------------------------------------------------------------ any source


def read_converted(directory: Path, *, sha256: str | None = None) -> Weights:
    """Read a directory written by ``convert`` (``model.safetensors``, ``config.yaml``, ``metadata.json``).

    ``sha256`` is checked against the bytes of ``model.safetensors`` itself (never against a hash the
    directory records about itself). The config is compared with the file's shapes before anything is built.
    """
    config = converted_config(directory)
    metadata = read_metadata(directory)
    weights_path = directory / registry.CONVERTED_WEIGHTS
    if sha256 is not None:
        check_converted_sha256(directory, metadata, sha256)
    check_shapes_before_building(config, file_shapes(weights_path), directory)
    try:
        state_dict = load_file(str(weights_path), device="cpu")
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err
    return Weights(source=directory, state_dict=state_dict, config=config, metadata=metadata)


def read_weights(name: str | Path, *, trust: bool = False, sha256: str | None = None) -> Weights:
    """Tensors and settings of a registered name, a checkpoint file (release or ``gloria train``) or a
    converted directory. A file is read once, by the safe reader (``trust`` allows full unpickling)."""
    path = locate(name)
    if path.is_dir():
        return read_converted(path, sha256=sha256)
    if sha256 is not None:
        registry.check_sha256(path, sha256)
    raw = safe_torch_load(path, trust=trust)
    if is_training_checkpoint(raw):
        trained = read_training_checkpoint(path, raw)
        return Weights(
            source=path,
            state_dict=trained.state_dict,
            config=trained.config,
            metadata={"lightning": trained.info},
            task=trained.task,
            classes=trained.classes,
            freeze_encoder=trained.freeze_encoder,
        )
    ckpt = release_from_raw(path, raw)
    return Weights(
        source=path,
        state_dict=ckpt.state_dict,
        config=None,
        hyper_parameters=ckpt.hyper_parameters,
        metadata={"lightning": ckpt.info},
    )


def full_config(weights: Weights, text_model: str | Path | TextEncoderConfig | None) -> GloriaConfig:
    """The config: stored in a converted directory or training checkpoint, inferred (with the text model)
    for a release file."""
    if weights.config is not None:
        if text_model is not None:
            log.warning("text_model is ignored for %s: the file carries its text model", weights.source)
        return weights.config
    text = resolve_text_model(text_model, release_text_model(weights.hyper_parameters), source=weights.source)
    return config_from_release(weights.hyper_parameters, weights.state_dict, text)


def build_gloria_from(weights: Weights, text_model: str | Path | TextEncoderConfig | None = None) -> GLoRIA:
    """The GLoRIA model holding ``weights`` (train mode, CPU), after the one strict key check."""
    from gloria.model import GLoRIA

    if weights.task != "pretrain":
        raise ValueError(
            f"{weights.source} holds a {weights.task} model (a GLoRIA image encoder with a task head), not a "
            "GLoRIA model; load it with gloria.load_model"
        )
    config = full_config(weights, text_model)
    model = GLoRIA(config)
    load_state_strict(model, weights.state_dict, weights.source, f"{config.image.backbone} GLoRIA model")
    return model


def _image_state(weights: Weights) -> dict[str, Tensor]:
    return {k[len(IMAGE_PREFIX) :]: v for k, v in weights.state_dict.items() if k.startswith(IMAGE_PREFIX)}


def _image_encoder(weights: Weights, *, load: bool = True) -> ImageEncoder:
    """The image tower of ``weights`` (no text model needed); its tensors loaded unless ``load=False``."""
    from gloria.encoders.image import ImageEncoder

    if weights.config is not None:
        image_cfg = weights.config.image
    else:
        placeholder = TextEncoderConfig()  # image settings do not depend on the text model
        image_cfg = config_from_release(weights.hyper_parameters, weights.state_dict, placeholder).image
    image_state = _image_state(weights)
    embedder = image_state.get("global_embedder.weight")
    if embedder is None:
        raise ValueError(f"{weights.source} has no img_encoder.global_embedder.weight")
    encoder = ImageEncoder(dataclasses.replace(image_cfg, imagenet_init=False), int(embedder.shape[0]))
    if load:
        load_state_strict(encoder, image_state, weights.source, f"{image_cfg.backbone} image encoder")
    return encoder


def _trained_head_model(weights: Weights) -> nn.Module:
    """The classifier or U-Net of a classification / segmentation run, every tensor checked and loaded."""
    assert weights.config is not None  # training checkpoints carry their config
    if weights.task == "classification":
        from gloria.tasks.classifier import ImageClassifier

        head = weights.state_dict.get("classifier.weight")
        if head is None:
            raise ValueError(f"{weights.source} has no classifier.weight (the classification head)")
        classifier = ImageClassifier(
            _image_encoder(weights, load=False), int(head.shape[0]), freeze_encoder=weights.freeze_encoder
        )
        classifier.classes = list(weights.classes)
        classifier.config = weights.config
        what = f"{weights.config.image.backbone} classifier"
        load_state_strict(classifier, weights.state_dict, weights.source, what)
        return classifier
    from gloria.tasks.segmentation_model import build_unet

    unet: nn.Module = build_unet(None, weights.config.image.backbone)
    load_state_strict(unet, weights.state_dict, weights.source, f"{weights.config.image.backbone} U-Net")
    return unet


def preset_model(name: str) -> GLoRIA:
    """``preset:NAME``: the preset with seeded random weights (smoke tests only)."""
    from gloria.model import GLoRIA

    log.warning("using preset %s with RANDOM weights: numbers are not meaningful", name)
    torch.manual_seed(0)
    return GLoRIA(preset(name))


def load_model(
    spec: str | Path,
    device: str | torch.device | None = None,
    *,
    text_model: str | Path | TextEncoderConfig | None = None,
    trust: bool = False,
    sha256: str | None = None,
) -> nn.Module:
    """Any model the package makes or reads, in eval mode on ``device``:

    - a registered name, a release ``.ckpt``, a converted directory, a ``gloria train`` pretraining
      checkpoint (``last.ckpt`` / ``best-*.ckpt``), ``preset:NAME`` -> ``GLoRIA``;
    - a classification run's checkpoint -> ``ImageClassifier`` (``.classes``, ``.config``);
    - a segmentation run's checkpoint -> the smp U-Net.

    ``text_model``: a local directory (or config) of the text model for release files, whose tokenizer and
    BERT config are not inside the checkpoint; default: the file's ``bert_type`` (a local directory or the
    local HF cache). ``trust``: allow full unpickling (runs code from the file). ``sha256``: the hash the
    user expects of the file (a directory: of its ``model.safetensors``).
    """
    if isinstance(spec, str) and spec.startswith(PRESET_PREFIX):
        model: nn.Module = preset_model(spec[len(PRESET_PREFIX) :])
    else:
        weights = read_weights(spec, trust=trust, sha256=sha256)
        model = (
            build_gloria_from(weights, text_model)
            if weights.task == "pretrain"
            else _trained_head_model(weights)
        )
        log.info("loaded %s (%s model)", weights.source, weights.task)
    return model.to(resolve_device(device)).eval()


def load_gloria(
    name: str | Path = "gloria_resnet50",
    device: str | torch.device | None = None,
    *,
    text_model: str | Path | TextEncoderConfig | None = None,
    trust: bool = False,
    sha256: str | None = None,
) -> GLoRIA:
    """A GLoRIA model in eval mode from a registered name, a release ``.ckpt``, a converted directory, a
    ``gloria train`` pretraining checkpoint or ``preset:NAME`` (``load_model`` restricted to GLoRIA models).

    ``text_model``: a local directory (or config) of the text model for release files, whose tokenizer and
    BERT config are not inside the checkpoint; default: the file's ``bert_type`` from the local HF cache.
    ``trust``: allow full unpickling of a release file (runs code from it). ``sha256``: the hash the user
    expects of the release file (checked; for a converted directory compared with the recorded one).
    """
    from gloria.model import GLoRIA

    model = load_model(name, device, text_model=text_model, trust=trust, sha256=sha256)
    if not isinstance(model, GLoRIA):
        raise ValueError(
            f"{name} holds a {type(model).__name__}, not a GLoRIA model (a classification or segmentation "
            "run's checkpoint); load it with gloria.load_model"
        )
    return model


def load_image_encoder(
    name: str | Path = "gloria_resnet50",
    device: str | torch.device | None = None,
    *,
    trust: bool = False,
    sha256: str | None = None,
) -> ImageEncoder:
    """Only the image tower (no text model needed), eval mode: trunk + global and local embedders."""
    if isinstance(name, str) and name.startswith(PRESET_PREFIX):
        return preset_model(name[len(PRESET_PREFIX) :]).img_encoder.to(resolve_device(device)).eval()
    weights = read_weights(name, trust=trust, sha256=sha256)
    if weights.task == "segmentation":
        raise ValueError(f"{weights.source} holds a U-Net; its encoder is not a GLoRIA image encoder")
    return _image_encoder(weights).to(resolve_device(device)).eval()


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
