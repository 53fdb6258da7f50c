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
    out: FloatArray = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return out


def _bones(frame: Frame) -> FloatArray:
    """Ribs (curved stripes inside the chest wall), clavicles and spine, as added brightness."""
    a = frame.anatomy
    u, v = frame.u, frame.v
    top = min(a.lung_top)
    bottom = max(a.lung_bottom)
    phase = np.mod((v + a.rib_curve * u * u) / a.rib_spacing + a.rib_phase, 1.0)
    stripe = np.clip(1.0 - np.abs(phase - 0.5) / 0.16, 0.0, 1.0)
    in_chest = (np.abs(u) < a.thoracic_half_width + 0.06) & (v > top - 0.12) & (v < bottom)
    bones = 0.07 * stripe * in_chest
    for s in (-1.0, 1.0):
        p0 = np.array([s * 0.08, top - 0.04], dtype=np.float32)
        p1 = np.array([s * 0.72, top - 0.16], dtype=np.float32)
        d = p1 - p0
        t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1]) / float(d @ d), 0.0, 1.0)
        dist2 = (u - p0[0] - t * d[0]) ** 2 + (v - p0[1] - t * d[1]) ** 2
        bones += 0.12 * (dist2 < 0.03**2)
    vertebra = 0.5 + 0.5 * np.cos(2 * np.pi * v / 0.11)
    bones += (0.05 + 0.03 * vertebra) * (np.abs(u - 0.015) < 0.06)
    out: FloatArray = bones.astype(np.float32)
    return out


def render(frame: Frame, findings: list[Finding], rng: np.random.Generator, noise: float) -> npt.NDArray[np.uint8]:
    """Compose the image [H, W] uint8 from the frame's structures and the findings' intensity changes."""
    a = frame.anatomy
    size = frame.size
    lungs = frame.lungs[0] | frame.lungs[1]
    visible = (lungs & ~frame.heart & ~frame.mediastinum).astype(np.float32)
    visible = cv2.GaussianBlur(visible, (0, 0), sigmaX=max(0.6, size / 220))
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
    img = img + 0.03 * frame.heart
    img = img + _bones(frame)
    for finding in findings:
        if finding.delta is not None:
            img = img + finding.delta
    img = np.clip(img * a.contrast + a.brightness, 0.0, 1.0) ** a.gamma
    img = img + rng.normal(0.0, noise, size=(size, size)).astype(np.float32)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=max(0.5, size / 400))
    out: npt.NDArray[np.uint8] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out
