"""Attention maps on the region grid [.., h, w] -> maps over the original image pixels [.., H, W].

The network saw a resized, zero-padded, centre-cropped copy of the image; ``to_original`` undoes that with
the preprocessing geometry (``gloria.data.transforms.PreprocessGeometry``): NaN where the crop cut pixels off.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from torch import Tensor

from gloria.config import ImageTransformConfig
from gloria.data.transforms import ImagePreprocessor, PreprocessGeometry


def geometry_for(height: int, width: int, transforms: ImageTransformConfig) -> PreprocessGeometry:
    """The eval geometry an image of ``height`` x ``width`` pixels goes through with ``transforms``."""
    return ImagePreprocessor(transforms).geometry(height, width)


def to_original(
    maps: Tensor | NDArray[np.floating],
    geometry: PreprocessGeometry,
    *,
    mode: str = "bilinear",
) -> NDArray[np.float32]:
    """Region-grid maps [..., h, w] -> original-pixel maps [..., H, W] (NaN outside the crop).

    The region grid covers the crop uniformly (region centres at (i + 0.5) * crop / h), so values are
    sampled at each original pixel centre mapped into the crop.
    """
    arr = maps.detach().cpu() if isinstance(maps, Tensor) else np.asarray(maps)
    if arr.ndim < 2:
        raise ValueError(f"maps must have shape [..., h, w], got {tuple(arr.shape)}")
    return np.asarray(geometry.crop_to_original(arr, mode=mode), dtype=np.float32)


def normalise_for_display(heatmap: NDArray[np.floating]) -> NDArray[np.float32]:
    """Min-max scale a map to [0, 1] over its finite values (NaN kept; a constant map becomes zeros)."""
    m = np.asarray(heatmap, dtype=np.float32)
    finite = np.isfinite(m)
    if not finite.any():
        return m
    lo, hi = float(m[finite].min()), float(m[finite].max())
    if hi == lo:
        return np.where(finite, 0.0, np.nan).astype(np.float32)
    return ((m - lo) / (hi - lo)).astype(np.float32)
