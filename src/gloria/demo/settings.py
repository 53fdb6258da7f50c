"""Sizes of a demo run: how many SynthCXR images, which model preset, how long each stage trains.

``SIZES`` holds the named settings (``smoke`` for tests, ``quick``, ``default``); the command line picks one
and may replace the preset and the device. Every number that decides the results is recorded in
``results.json`` (``DemoSettings.to_dict``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gloria.data.synth import SynthConfig

Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class DemoSettings:
    """One demo size. Steps are optimiser steps; fractions are of the labelled training images."""

    name: str
    n_images: int  # SynthCXR images generated (every tree: CheXpert JPEGs, RSNA and SIIM DICOMs)
    image_size: int  # SynthCXR side in pixels (the model's preset resizes further)
    preset: str  # GLoRIA model preset (gloria.config.PRESETS)
    pretrain_epochs: int
    pretrain_batch_size: int
    pretrain_lr: float
    pretrain_text_lr: float | None = None  # the text tower's own rate (None: pretrain_lr)
    full_report: bool = False  # whole impression per step (False: one sentence per step, the release)
    local_feature_scale: float | None = None  # alignment.local_feature_scale (None: the release's maths)
    probe_fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seg_steps: int = 20  # U-Net fine-tune steps per encoder (pretrained, random) and label fraction
    seg_fractions: tuple[float, ...] = (1.0,)  # shares of the segmentation training images
    seg_batch_size: int = 8
    seg_lr: float = 5e-4
    n_prompts: int = 5  # prompts per class for zero-shot
    retrieval_ks: tuple[int, ...] = (1, 5, 10)
    grounding_examples: int = 3  # attention figures in the report
    n_boot: int = 200  # bootstrap resamples of the zero-shot intervals
    device: Device = "cpu"
    # SynthCXR's data knobs (gloria.data.synth.SynthConfig; the defaults are SynthConfig's): every finding's
    # contrast multiplier, the focal findings' radius as a share of their lung zone, the quantum noise's sd
    synth_subtlety: float = 1.0
    synth_finding_scale: float = 0.45
    synth_noise: float = 0.02

    def replace(self, **changes: Any) -> DemoSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def synth_config(self) -> SynthConfig:
        """The SynthCXR generator's settings for this size."""
        from gloria.data.synth import SynthConfig

        return SynthConfig(size=self.image_size, subtlety=self.synth_subtlety,
                           finding_scale=self.synth_finding_scale, noise=self.synth_noise)  # fmt: skip


SIZES: dict[str, DemoSettings] = {
    # the test suite's size: every stage runs, numbers mean little (seconds on 2 CPU cores)
    "smoke": DemoSettings(
        name="smoke",
        n_images=64,
        image_size=64,
        preset="tiny",
        pretrain_epochs=1,
        pretrain_batch_size=8,
        pretrain_lr=1e-3,
        seg_steps=2,
        seg_batch_size=4,
        n_prompts=2,
        retrieval_ks=(1, 5),
        grounding_examples=2,
        n_boot=20,
    ),
    # ``gloria demo --quick``: about two minutes on 2 CPU cores
    "quick": DemoSettings(
        name="quick",
        n_images=400,
        image_size=128,
        preset="tiny",
        pretrain_epochs=6,
        pretrain_batch_size=16,
        pretrain_lr=1e-3,
        seg_steps=60,
    ),
    # ``gloria demo``: about ten minutes on 2 CPU cores. The recipe is the one of docs/ablations.md whose
    # loss leaves its chance level fastest: pretrained MiniLM text tower, whole impression per step, local
    # features as scaled cosines (alignment.local_feature_scale).
    "default": DemoSettings(
        name="default",
        n_images=1500,
        image_size=128,
        preset="minilm",
        pretrain_epochs=8,
        pretrain_batch_size=32,
        pretrain_lr=5e-4,
        full_report=True,
        local_feature_scale=10.0,
        seg_steps=150,  # ~4 epochs of the balanced training split: fewer leave masks on empty images
    ),
}


def demo_settings(size: str, *, preset: str | None = None, device: Device | None = None) -> DemoSettings:
    """The named size with the preset and device replaced when given; unknown names raise ValueError."""
    try:
        settings = SIZES[size]
    except KeyError:
        raise ValueError(f"unknown demo size {size!r}; known sizes: {sorted(SIZES)}") from None
    changes: dict[str, Any] = {}
    if preset is not None:
        changes["preset"] = preset
    if device is not None:
        changes["device"] = device
    return settings.replace(**changes) if changes else settings
