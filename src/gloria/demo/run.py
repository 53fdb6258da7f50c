"""The state of one demo run shared by its stages: settings, folders, results, report sections, models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gloria.data.eval_set import EvalSet
from gloria.demo.settings import DemoSettings
from gloria.model import GLoRIA
from gloria.tasks import embed as E
from gloria.tasks.report import Report

TITLE = "GLoRIA demo on SynthCXR"
MODEL_TITLES = {"pretrained": "GLoRIA pretrained", "random_init": "random init"}


@dataclass
class DemoRun:
    """State shared by the stages: settings, folders, results so far, report sections, models."""

    settings: DemoSettings
    seed: int
    out: Path
    command: str = "gloria demo"
    results: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Report] = field(default_factory=dict)
    models: dict[str, GLoRIA] = field(default_factory=dict)  # evaluated in this order
    checkpoints: dict[str, str | None] = field(default_factory=dict)  # pretraining checkpoint per model
    eval_set: EvalSet | None = None
    embeddings: dict[str, E.ImageEmbeddings] = field(default_factory=dict)
    train_reports: list[str] = field(default_factory=list)

    @property
    def synth_root(self) -> Path:
        return self.out / "synthcxr"

    def section(self, stage: str) -> Report:
        """A fresh report section for ``stage`` (its figures go to ``<out>/figures``)."""
        self.sections[stage] = Report(TITLE, self.out)
        return self.sections[stage]

    def title(self, name: str) -> str:
        return MODEL_TITLES.get(name, name)

    def model(self, name: str) -> GLoRIA:
        device = torch.device(self.settings.device)
        return self.models[name].to(device).eval()
