"""Inputs of the method: image reading, preprocessing, report cleaning and the data sets.

``rle_decode`` / ``rle_encode`` (SIIM run-length masks) are re-exported lazily from ``gloria.data.rle``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"rle_decode": "gloria.data.rle", "rle_encode": "gloria.data.rle"}

__all__ = ["rle_decode", "rle_encode"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gloria.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
