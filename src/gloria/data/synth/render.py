"""SynthCXR rendering: anatomy + findings -> an 8-bit frontal radiograph look-alike [H, W].

Brightness is attenuation: air black, soft tissue grey, bone and devices bright. Vectorised numpy/OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from gloria.data.synth.anatomy import FloatArray, Frame
from gloria.data.synth.findings import Finding

LUNG_DARKENING = 0.36


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> FloatArray:
    """Smooth random field in about [-1, 1]: ``cells`` x ``cells`` normal noise upsampled bicubically."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    out = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.asarray(out, dtype=np.float32)


def _bones(frame: Frame) -> FloatArray:
    """Ribs (curved bands across each hemithorax), clavicles and spine drawn with OpenCV, as brightness."""
    a = frame.anatomy
    size = frame.size
    shift = 4  # sub-pixel precision of cv2 drawing (coordinates in 1/16 px)
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, bottom = min(a.lung_top), max(a.lung_bottom)
    rib_px = max(1, round(0.2 * a.rib_spacing * size / 2))
    xs = np.linspace(0.04, a.thoracic_half_width + 0.05, 16)
    arch = -a.rib_curve * xs + 1.4 * a.rib_curve * xs * xs
    levels = np.arange(top - 0.12 + a.rib_phase * a.rib_spacing, bottom - 0.05, a.rib_spacing)
    curves = []
    for s in (-1.0, 1.0):
        for v0 in levels:
            px, py = frame.to_pixel(s * xs, v0 + arch)
            curves.append((np.stack([px, py], axis=1) * (1 << shift)).round().astype(np.int32))
    cv2.polylines(canvas, curves, False, 50, thickness=rib_px, lineType=cv2.LINE_AA, shift=shift)
    clav_px = max(1, round(0.03 * size))
    for s in (-1.0, 1.0):
        p0, p1 = frame.to_pixel(s * 0.08, top - 0.04), frame.to_pixel(s * 0.72, top - 0.16)
        pts = (np.asarray([p0, p1]) * (1 << shift)).round().astype(np.int32)
        cv2.polylines(canvas, [pts], False, 120, thickness=clav_px, lineType=cv2.LINE_AA, shift=shift)
    spine = (
        (np.asarray([frame.to_pixel(0.015, -1.2), frame.to_pixel(0.015, 1.2)]) * (1 << shift))
        .round()
        .astype(np.int32)
    )
    cv2.polylines(
        canvas,
        [spine],
        False,
        60,
        thickness=max(1, round(0.12 * size / 2)),
        lineType=cv2.LINE_AA,
        shift=shift,
    )
    out: FloatArray = canvas.astype(np.float32) * np.float32(1.0 / 1000.0)
    return out


def render(
    frame: Frame, findings: list[Finding], rng: np.random.Generator, noise: float
) -> npt.NDArray[np.uint8]:
    """Compose the image [H, W] uint8 from the frame's structures and the findings' intensity changes."""
    a = frame.anatomy
    size = frame.size
    lungs = frame.lungs[0] | frame.lungs[1]
    hard = (lungs & ~frame.heart & ~frame.mediastinum).astype(np.float32)
    visible = np.asarray(cv2.GaussianBlur(hard, (0, 0), sigmaX=max(0.6, size / 220)), dtype=np.float32)
    img = 0.06 + 0.52 * frame.body
    img = img - LUNG_DARKENING * visible
    # lung markings: vessels fanning from the hila, fading to the periphery, absent in a pneumothorax
    markings = _smooth_noise(rng, size, max(8, size // 6))
    hilum_dist = np.sqrt((np.abs(frame.u) - 0.2) ** 2 + (frame.v + 0.05) ** 2)
    weight = np.exp(-hilum_dist / 0.35) * visible
    for finding in findings:
        if finding.lucent is not None:
            weight = weight * ~finding.lucent
    img = img + 0.045 * markings * weight + 0.03 * weight
    img = img + _bones(frame)
    for finding in findings:
        if finding.delta is not None:
            img = img + finding.delta
    img = np.clip(img * a.contrast + a.brightness, 0.0, 1.0) ** a.gamma
    img = img + rng.normal(0.0, noise, size=(size, size)).astype(np.float32)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=max(0.5, size / 400))
    out: npt.NDArray[np.uint8] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out
