"""Encoder memory and speed options for training (issue 16 item 4): activation checkpointing of the image
trunk's stages and of the BERT layers, channels-last images, ``torch.compile``, and the precision default
(bf16-mixed on a GPU that has it, else 32-true).

Checkpointing recomputes each stage's forward in the backward pass instead of storing its activations; the
recomputation restores the BatchNorm running statistics it would otherwise update a second time, and
replays the dropout masks, so losses, gradients and buffers equal the run without it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.densenet import _DenseBlock

from gloria.encoders.image import RESNETS
from gloria.model import GLoRIA

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _keep_buffers(module: nn.Module) -> Iterator[None]:
    """Put every buffer of ``module`` (BatchNorm running statistics, counters) back as it was on exit."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _checkpointed(stage: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``forward(x)`` under non-reentrant checkpointing when ``stage`` trains with gradients; the
    recomputation in backward keeps the buffers (BatchNorm statistics) the forward left."""
    if not (stage.training and torch.is_grad_enabled()):
        return forward(x)

    def contexts() -> tuple[Any, Any]:
        return contextlib.nullcontext(), _keep_buffers(stage)

    out: Tensor = checkpoint(forward, x, use_reentrant=False, context_fn=contexts)
    return out


class CheckpointedSequential(nn.Sequential):
    """A ResNet stage (``nn.Sequential``) whose forward is checkpointed; same modules, same keys."""

    def forward(self, x: Tensor) -> Tensor:
        return _checkpointed(self, super().forward, x)


class CheckpointedDenseBlock(_DenseBlock):
    """A DenseNet dense block whose forward is checkpointed; same modules, same keys."""

    def forward(self, init_features: Tensor) -> Tensor:
        return _checkpointed(self, super().forward, init_features)


def checkpoint_image_trunk(model: GLoRIA) -> int:
    """Checkpoint each ResNet stage (layer1..layer4) or DenseNet dense block of the image trunk, in place:
    the stage's class becomes its checkpointed subclass (modules, weights and state-dict keys stay).
    Returns the number of stages."""
    trunk: Any = model.img_encoder.model
    if model.img_encoder.backbone in RESNETS:
        for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
            stage.__class__ = CheckpointedSequential
        return 4
    blocks = [m for name, m in trunk.features.named_children() if name.startswith("denseblock")]
    for block in blocks:
        block.__class__ = CheckpointedDenseBlock
    return len(blocks)


def checkpoint_text_encoder(model: GLoRIA) -> None:
    """Hugging Face's gradient checkpointing of every BERT layer (non-reentrant, dropout replayed)."""
    bert: Any = model.text_encoder.model
    kwargs = {"use_reentrant": False}
    if hasattr(bert, "activation_checkpointing_enable"):  # transformers >= 5 (the old name is deprecated)
        bert.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_encoder_options(
    model: GLoRIA,
    *,
    activation_checkpointing: bool = False,
    channels_last: bool = False,
    compile: bool = False,
) -> GLoRIA:
    """The training options of ``model.*`` applied in place (weights and state-dict keys unchanged)."""
    if activation_checkpointing:
        stages = checkpoint_image_trunk(model)
        checkpoint_text_encoder(model)
        log.info("activation checkpointing: %d image stages and every BERT layer", stages)
    if channels_last:
        model.img_encoder.channels_last = True
        model.img_encoder.to(memory_format=torch.channels_last)
    if compile:
        model.img_encoder.model.compile()
        model.text_encoder.model.compile()
        log.info("torch.compile: image trunk and BERT (compiled on the first step)")
    return model


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16-mixed where the run gets a CUDA GPU with bfloat16, else 32-true; others unchanged."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"
