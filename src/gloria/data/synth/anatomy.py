"""SynthCXR anatomy: a per-patient frontal chest geometry (lungs, zones, heart, mediastinum, bones).

Coordinates are normalised: u (left to right of the image) and v (top to bottom) in [-1, 1], after the
patient's rotation and shift. Side 0 is the patient's right (image left), side 1 the patient's left.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
Coordinate = TypeVar("Coordinate", float, npt.NDArray[np.float64])

SIDES: tuple[str, str] = ("right", "left")
LEVELS: tuple[str, str, str] = ("upper", "middle", "lower")


@dataclass(frozen=True)
class Anatomy:
    """Per-patient geometry (normalised units) and exposure. Tuples indexed by side (0 right, 1 left)."""

    angle_deg: float
    shift: tuple[float, float]
    body_half_width: float
    lung_offset: float  # |u| of each lung's centre
    lung_half_width: float
    lung_top: tuple[float, float]
    lung_bottom: tuple[float, float]  # costophrenic angle level
    dome_height: tuple[float, float]
    ctr: float  # requested cardiothoracic ratio
    heart_center_u: float
    heart_half_height: float
    mediastinum_half_width: float
    rib_spacing: float
    rib_curve: float
    rib_phase: float
    contrast: float
    brightness: float
    gamma: float

    @property
    def thoracic_half_width(self) -> float:
        return self.lung_offset + self.lung_half_width

    @property
    def heart_half_width(self) -> float:
        return self.ctr * self.thoracic_half_width

    @property
    def heart_center_v(self) -> float:
        return self.lung_bottom[1] - 0.55 * self.heart_half_height


def sample_anatomy(rng: np.random.Generator, ctr: float | None = None) -> Anatomy:
    """Draw a patient's anatomy. ``ctr`` overrides the (normal, 0.38-0.51) cardiothoracic ratio."""
    normal_ctr = float(rng.uniform(0.38, 0.51))  # always drawn, so an override leaves other draws unchanged
    top_r = float(rng.uniform(-0.80, -0.66))
    bottom_r = float(rng.uniform(0.42, 0.58))
    return Anatomy(
        angle_deg=float(rng.normal(0.0, 2.5)),
        shift=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
        body_half_width=float(rng.uniform(0.80, 0.97)),
        lung_offset=float(rng.uniform(0.34, 0.42)),
        lung_half_width=float(rng.uniform(0.25, 0.31)),
        lung_top=(top_r, top_r + float(rng.uniform(-0.03, 0.03))),
        lung_bottom=(bottom_r, bottom_r + float(rng.uniform(0.01, 0.06))),
        dome_height=(float(rng.uniform(0.10, 0.18)), float(rng.uniform(0.08, 0.15))),
        ctr=float(ctr) if ctr is not None else normal_ctr,
        heart_center_u=float(rng.uniform(0.06, 0.12)),
        heart_half_height=float(rng.uniform(0.30, 0.36)),
        mediastinum_half_width=float(rng.uniform(0.08, 0.11)),
        rib_spacing=float(rng.uniform(0.12, 0.15)),
        rib_curve=float(rng.uniform(0.25, 0.45)),
        rib_phase=float(rng.uniform(0.0, 1.0)),
        contrast=float(rng.uniform(0.85, 1.15)),
        brightness=float(rng.uniform(-0.05, 0.05)),
        gamma=float(rng.uniform(0.85, 1.15)),
    )


@functools.lru_cache(maxsize=8)
def _base_grid(size: int) -> tuple[FloatArray, FloatArray]:
    """Pixel-centre coordinates in [-1, 1]: (u [H, W], v [H, W])."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    u: FloatArray = np.repeat(axis[None, :], size, axis=0)
    v: FloatArray = np.repeat(axis[:, None], size, axis=1)
    u.setflags(write=False)
    v.setflags(write=False)
    return u, v


@dataclass
class Frame:
    """Anatomy evaluated on a pixel grid: rotated coordinates and the structure masks, all [H, W]."""

    anatomy: Anatomy
    size: int
    u: FloatArray
    v: FloatArray
    lungs: tuple[BoolArray, BoolArray]
    heart: BoolArray
    mediastinum: BoolArray
    body: FloatArray  # soft body outline in [0, 1]

    def side_sign(self, side: int) -> float:
        return -1.0 if side == 0 else 1.0

    def lateral_fraction(self, side: int) -> FloatArray:
        """-1 at a lung's medial wall, +1 at its lateral wall (beyond outside)."""
        a = self.anatomy
        cx = self.side_sign(side) * a.lung_offset
        out: FloatArray = (self.side_sign(side) * (self.u - cx) / a.lung_half_width).astype(np.float32)
        return out

    def level_bounds(self, side: int, level: str) -> tuple[float, float]:
        """v range [lo, hi) of a lung level (thirds between apex and costophrenic angle)."""
        a = self.anatomy
        top, bottom = a.lung_top[side], a.lung_bottom[side]
        k = LEVELS.index(level)
        third = (bottom - top) / 3.0
        lo = -10.0 if k == 0 else top + k * third
        hi = 10.0 if k == 2 else top + (k + 1) * third
        return lo, hi

    def to_pixel(self, u: Coordinate, v: Coordinate) -> tuple[Coordinate, Coordinate]:
        """Anatomy coordinates (floats or arrays) -> pixel (x, y), inverting the rotation and shift."""
        theta = math.radians(self.anatomy.angle_deg)
        c, s = math.cos(theta), math.sin(theta)
        uu, vv = u + self.anatomy.shift[0], v + self.anatomy.shift[1]
        bu, bv = c * uu - s * vv, s * uu + c * vv
        return (bu + 1.0) / 2.0 * self.size - 0.5, (bv + 1.0) / 2.0 * self.size - 0.5

    def zone(self, side: int, levels: tuple[str, ...]) -> BoolArray:
        """Mask of the lung ``side`` restricted to the union of ``levels``."""
        band = np.zeros_like(self.lungs[side])
        for level in levels:
            lo, hi = self.level_bounds(side, level)
            band |= (self.v >= lo) & (self.v < hi)
        return band & self.lungs[side]


def lung_mask(u: FloatArray, v: FloatArray, anatomy: Anatomy, side: int, dome_lift: float = 0.0) -> BoolArray:
    """One lung [H, W]: rounded apex, straight walls, diaphragm dome meeting the lateral wall at a sharp
    costophrenic angle. ``dome_lift`` raises the dome (volume loss)."""
    s = -1.0 if side == 0 else 1.0
    a = anatomy
    cx = s * a.lung_offset
    top, bottom = a.lung_top[side], a.lung_bottom[side] - dome_lift
    mid = top + 0.45 * (bottom - top)
    t = np.clip((mid - v) / (mid - top), 0.0, 1.0)
    half_width = a.lung_half_width * np.sqrt(1.0 - t * t)
    q = s * (u - cx) / a.lung_half_width
    dome = bottom - a.dome_height[side] * np.clip(1.0 - ((q + 0.3) / 1.3) ** 2, 0.0, 1.0)
    mask: BoolArray = (v > top) & (v < dome) & (np.abs(u - cx) < half_width)
    return mask


def build_frame(anatomy: Anatomy, size: int, dome_lift: tuple[float, float] = (0.0, 0.0)) -> Frame:
    """Evaluate ``anatomy`` on a ``size`` x ``size`` grid (rotation and shift applied to coordinates)."""
    base_u, base_v = _base_grid(size)
    theta = math.radians(anatomy.angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    u = (c * base_u + s * base_v - anatomy.shift[0]).astype(np.float32)
    v = (-s * base_u + c * base_v - anatomy.shift[1]).astype(np.float32)
    lungs = (
        lung_mask(u, v, anatomy, 0, dome_lift[0]),
        lung_mask(u, v, anatomy, 1, dome_lift[1]),
    )
    heart = (((u - anatomy.heart_center_u) / anatomy.heart_half_width) ** 2) + (
        ((v - anatomy.heart_center_v) / anatomy.heart_half_height) ** 2
    ) < 1.0
    top = min(anatomy.lung_top) - 0.25
    widen = np.clip((v - top) / (anatomy.heart_center_v - top), 0.0, 1.0)
    mediastinum = (np.abs(u - 0.015) < anatomy.mediastinum_half_width * (0.8 + 0.5 * widen)) & (v > -1.5)
    body = np.clip((1.0 - np.abs(u) / anatomy.body_half_width) * 12.0, 0.0, 1.0).astype(np.float32)
    return Frame(anatomy, size, u, v, lungs, heart, mediastinum, body)


def measured_ctr(frame: Frame) -> float:
    """Cardiothoracic ratio measured on the grid: heart width over the outer lung-to-lung width."""
    cols_heart = np.flatnonzero(frame.heart.any(axis=0))
    cols_lung = np.flatnonzero((frame.lungs[0] | frame.lungs[1]).any(axis=0))
    if cols_heart.size == 0 or cols_lung.size == 0:
        return 0.0
    return float((cols_heart[-1] - cols_heart[0] + 1) / (cols_lung[-1] - cols_lung[0] + 1))
