"""Helpers for the evaluation command tests: run one command module, write a converted tiny model folder."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file


def run_command(module: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` with only ``gloria.cli.<module>`` registered and run it (as ``gloria`` would)."""
    parser = argparse.ArgumentParser(prog="gloria")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(f"gloria.cli.{module}").register(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def write_model_dir(model: torch.nn.Module, folder: Path) -> Path:
    """A converted-model folder (``model.safetensors`` + ``config.yaml``) that ``load_gloria`` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(model.config.to_dict()))  # type: ignore[operator]
    return folder
