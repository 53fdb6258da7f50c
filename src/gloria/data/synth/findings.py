"""SynthCXR findings: which findings an image has (plan) and their geometry on the anatomy (mask, contrast).

Focal findings are small relative to their lung zone and centred anywhere inside it; every mask is clipped
to the zone the finding is named after, so masks and boxes are exact ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from gloria.data.synth.anatomy import LEVELS, SIDES, BoolArray, FloatArray, Frame, lung_mask
from gloria.data.synth.config import FINDING_KINDS, SynthConfig

GRADE_GAIN = {1: 0.65, 2: 0.85, 3: 1.0}


@dataclass(frozen=True)
class FindingPlan:
    """What an image has, before geometry: kind, side ("right", "left", "bilateral", "none"), levels,
    grade (1 mild/small .. 3 severe/large), whether the report hedges it, and kind-specific attributes."""

    kind: str
    side: str
    levels: tuple[str, ...]
    grade: int
    hedged: bool
    attrs: dict[str, str | float] = field(default_factory=dict)


@dataclass
class Finding:
    """A drawn finding: its plan, mask [H, W] (bool), intensity change [H, W] and box (x, y, w, h) pixels."""

    plan: FindingPlan
    mask: BoolArray
    delta: FloatArray | None
    box: tuple[int, int, int, int]
    lucent: BoolArray | None = None  # pixels where lung markings vanish (pneumothorax)

    @property
    def kind(self) -> str:
        return self.plan.kind


def _choice(rng: np.random.Generator, options: tuple[str, ...], p: tuple[float, ...]) -> str:
    return options[int(rng.choice(len(options), p=np.asarray(p) / sum(p)))]


def _grade(rng: np.random.Generator) -> int:
    return int(rng.choice(3, p=[0.5, 0.33, 0.17])) + 1


def plan_findings(rng: np.random.Generator, cfg: SynthConfig) -> list[FindingPlan]:
    """Draw the findings of one image (independent Bernoulli per kind with ``cfg`` prevalence)."""
    plans: list[FindingPlan] = []
    present = {kind: bool(rng.random() < cfg.prevalence_of(kind)) for kind in FINDING_KINDS}
    hedge = {kind: bool(rng.random() < cfg.uncertain_rate) for kind in FINDING_KINDS}
    side2 = ("right", "left")
    if present["cardiomegaly"]:
        plans.append(FindingPlan("cardiomegaly", "none", (), _grade(rng), hedge["cardiomegaly"]))
    if present["effusion"]:
        side = _choice(rng, ("right", "left", "bilateral"), (0.4, 0.35, 0.25))
        plans.append(FindingPlan("effusion", side, ("lower",), _grade(rng), hedge["effusion"]))
    if present["consolidation"]:
        level = _choice(rng, LEVELS, (0.25, 0.25, 0.5))
        side = _choice(rng, side2, (0.55, 0.45))
        plans.append(FindingPlan("consolidation", side, (level,), _grade(rng), hedge["consolidation"]))
    if present["atelectasis"]:
        side = _choice(rng, ("right", "left", "bilateral"), (0.35, 0.35, 0.3))
        level = "lower" if side == "bilateral" else _choice(rng, ("middle", "lower"), (0.3, 0.7))
        plans.append(FindingPlan("atelectasis", side, (level,), _grade(rng), hedge["atelectasis"]))
    if present["edema"]:
        plans.append(FindingPlan("edema", "bilateral", ("middle", "lower"), _grade(rng), hedge["edema"]))
    if present["pneumothorax"]:
        where = _choice(rng, ("apical", "lateral"), (0.6, 0.4))
        levels = ("upper",) if where == "apical" else ("upper", "middle")
        side = _choice(rng, ("right", "left", "bilateral"), (0.45, 0.45, 0.1))
        plans.append(
            FindingPlan("pneumothorax", side, levels, _grade(rng), hedge["pneumothorax"], {"where": where})
        )
    if present["opacity"]:
        level = _choice(rng, LEVELS, (0.2, 0.3, 0.5))
        side = _choice(rng, side2, (0.5, 0.5))
        pneumonia = _choice(rng, ("yes", "possible", "none"), (0.4, 0.3, 0.3))
        attrs: dict[str, str | float] = {"pneumonia": pneumonia}
        plans.append(FindingPlan("opacity", side, (level,), _grade(rng), hedge["opacity"], attrs))
    if present["nodule"]:
        level = _choice(rng, LEVELS, (0.4, 0.35, 0.25))
        side = _choice(rng, side2, (0.5, 0.5))
        mm = float(rng.integers(6, 19))
        plans.append(FindingPlan("nodule", side, (level,), 1, hedge["nodule"], {"mm": mm}))
    if present["device"]:
        device = _choice(rng, ("ett", "central_line", "pacemaker"), (0.4, 0.4, 0.2))
        plans.append(FindingPlan("device", "none", (), 1, False, {"device": device}))
    return plans


def cardiomegaly_ctr(plans: list[FindingPlan], rng: np.random.Generator, cfg: SynthConfig) -> float | None:
    """Cardiothoracic ratio for an enlarged heart (graded, scaled toward normal by ``cfg.subtlety``)."""
    for plan in plans:
        if plan.kind == "cardiomegaly":
            lo, hi = {1: (0.49, 0.54), 2: (0.54, 0.60), 3: (0.60, 0.68)}[plan.grade]
            if plan.hedged:
                lo, hi = 0.49, 0.53
            ctr = float(rng.uniform(lo, hi))
            return 0.47 + (ctr - 0.47) * min(cfg.subtlety, 1.5)
    return None


def dome_lift(plans: list[FindingPlan]) -> tuple[float, float]:
    """Volume loss: basal atelectasis raises the dome on its side (normalised units)."""
    lift = [0.0, 0.0]
    for plan in plans:
        if plan.kind == "atelectasis" and "lower" in plan.levels:
            for k, name in enumerate(SIDES):
                if plan.side in (name, "bilateral"):
                    lift[k] = 0.02 + 0.01 * plan.grade
    return lift[0], lift[1]


def mask_box(mask: BoolArray) -> tuple[int, int, int, int]:
    """Tight box (x, y, width, height) in pixels of a non-empty mask; (0, 0, 0, 0) when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def _side_indices(side: str) -> list[int]:
    return [0, 1] if side == "bilateral" else [SIDES.index(side)]


def plan_zone(frame: Frame, plan: FindingPlan) -> BoolArray:
    """The named zone of a lung finding: its side(s) and levels."""
    zone = np.zeros((frame.size, frame.size), dtype=bool)
    for k in _side_indices(plan.side):
        zone |= frame.zone(k, plan.levels)
    return zone


def _pick_centre(
    frame: Frame, zone: BoolArray, radius_px: float, rng: np.random.Generator
) -> tuple[int, int]:
    """A pixel (row, col) uniformly inside ``zone`` eroded by half the radius (the zone if that is empty)."""
    k = max(1, int(radius_px * 0.5))
    eroded = cv2.erode(
        zone.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    )
    candidates = np.flatnonzero(eroded) if eroded.any() else np.flatnonzero(zone)
    if candidates.size == 0:
        candidates = np.flatnonzero(frame.lungs[0] | frame.lungs[1])
    flat = int(candidates[int(rng.integers(candidates.size))])
    return divmod(flat, frame.size)


def _zone_height(frame: Frame, plan: FindingPlan) -> float:
    side = _side_indices(plan.side)[0]
    a = frame.anatomy
    return (a.lung_bottom[side] - a.lung_top[side]) / 3.0


def _blob_ratio(frame: Frame, centre: tuple[int, int], radius: float, rng: np.random.Generator) -> FloatArray:
    """Distance from centre over an irregular radius (angular harmonics 2..4); < 1 inside. [H, W]."""
    u0, v0 = frame.u[centre], frame.v[centre]
    du, dv = frame.u - u0, frame.v - v0
    theta = np.arctan2(dv, du)
    wobble = np.ones_like(theta)
    for k in (2, 3, 4):
        wobble += float(rng.uniform(0.0, 0.18)) * np.cos(k * theta + float(rng.uniform(0, 2 * np.pi)))
    ratio: FloatArray = (np.sqrt(du * du + dv * dv) / (radius * wobble)).astype(np.float32)
    return ratio


def _focal(
    frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig, scale: float
) -> tuple[BoolArray, FloatArray]:
    zone = plan_zone(frame, plan)
    radius = scale * cfg.finding_scale * _zone_height(frame, plan) / 2.0 * float(rng.uniform(0.7, 1.3))
    centre = _pick_centre(frame, zone, radius * frame.size / 2.0, rng)
    ratio = _blob_ratio(frame, centre, radius, rng)
    mask = (ratio < 1.0) & zone
    return mask, ratio


def _draw_consolidation(
    frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig
) -> Finding:
    mask, ratio = _focal(frame, plan, rng, cfg, 1.2)
    amp = 0.22 * GRADE_GAIN[plan.grade] * cfg.subtlety
    delta = np.where(mask, amp * (0.75 + 0.25 * np.clip((1.0 - ratio) * 3.0, 0, 1)), 0.0).astype(np.float32)
    # air bronchograms: a few dark branching lines from the centre of the blob
    canvas = np.zeros_like(mask, dtype=np.uint8)
    rows, cols = np.nonzero(mask)
    if rows.size:
        r0, c0 = int(rows.mean()), int(cols.mean())
        half = max(2.0, 0.5 * max(np.ptp(rows), np.ptp(cols)))
        for _ in range(int(rng.integers(2, 5))):
            ang = float(rng.uniform(0, 2 * np.pi))
            length = half * float(rng.uniform(0.5, 0.9))
            end = (int(c0 + length * np.cos(ang)), int(r0 + length * np.sin(ang)))
            cv2.line(canvas, (c0, r0), end, 1, thickness=max(1, frame.size // 256))
    delta -= np.where((canvas > 0) & mask, 0.6 * amp, 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def _draw_opacity(frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig) -> Finding:
    mask, ratio = _focal(frame, plan, rng, cfg, 1.1)
    amp = 0.15 * GRADE_GAIN[plan.grade] * cfg.subtlety
    delta = np.where(mask, amp * (0.45 + 0.55 * np.clip((1.0 - ratio) * 2.0, 0, 1)), 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def _draw_nodule(frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig) -> Finding:
    mm = float(plan.attrs.get("mm", 10.0))
    zone = plan_zone(frame, plan)
    radius = max(mm / 350.0, 3.0 / frame.size)  # a 350 mm chest spans 2 units; at least 1.5 px
    centre = _pick_centre(frame, zone, radius * frame.size / 2.0, rng)
    du, dv = frame.u - frame.u[centre], frame.v - frame.v[centre]
    mask = (du * du + dv * dv < radius * radius) & zone
    delta = np.where(mask, 0.22 * cfg.subtlety, 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def _draw_atelectasis(frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig) -> Finding:
    mask = np.zeros((frame.size, frame.size), dtype=bool)
    zone_h = _zone_height(frame, plan)
    for k in _side_indices(plan.side):
        zone = frame.zone(k, plan.levels)
        length = cfg.finding_scale * zone_h * float(rng.uniform(0.6, 1.1))
        thick = float(rng.uniform(0.012, 0.02)) * (0.8 + 0.2 * plan.grade)
        centre = _pick_centre(frame, zone, length * frame.size / 4.0, rng)
        ang = np.deg2rad(float(rng.uniform(-20, 20)))
        du, dv = frame.u - frame.u[centre], frame.v - frame.v[centre]
        along = du * np.cos(ang) + dv * np.sin(ang)
        across = -du * np.sin(ang) + dv * np.cos(ang)
        mask |= ((along / length) ** 2 + (across / thick) ** 2 < 1.0) & zone
    amp = 0.20 * GRADE_GAIN[plan.grade] * cfg.subtlety
    delta = np.where(mask, amp, 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def _draw_effusion(frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig) -> Finding:
    mask = np.zeros((frame.size, frame.size), dtype=bool)
    delta = np.zeros((frame.size, frame.size), dtype=np.float32)
    amp = 0.16 * GRADE_GAIN[plan.grade] * cfg.subtlety
    for k in _side_indices(plan.side):
        a = frame.anatomy
        top, bottom = a.lung_top[k], a.lung_bottom[k]
        height = bottom - top
        lo, hi = {1: (0.04, 0.08), 2: (0.09, 0.15), 3: (0.16, 0.26)}[plan.grade]
        depth = float(rng.uniform(lo, hi)) * height
        lateral = np.clip((frame.lateral_fraction(k) + 1.0) / 2.0, 0.0, 1.0)
        meniscus = bottom - depth - 0.45 * depth * lateral**2
        side_mask = frame.zone(k, ("lower",)) & (frame.v > meniscus)
        mask |= side_mask
        ramp = np.clip((frame.v - meniscus) / (0.3 * depth) + 0.35, 0.0, 1.0)
        delta += np.where(side_mask, amp * ramp, 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def _draw_edema(frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig) -> Finding:
    a = frame.anatomy
    amp = 0.05 * GRADE_GAIN[plan.grade] * cfg.subtlety
    sigma = 0.16 + 0.04 * plan.grade
    mask = np.zeros((frame.size, frame.size), dtype=bool)
    delta = np.zeros((frame.size, frame.size), dtype=np.float32)
    phase = float(rng.uniform(0, 1))
    for k in (0, 1):
        s = -1.0 if k == 0 else 1.0
        hu = s * (a.lung_offset - 0.45 * a.lung_half_width)
        hv = a.lung_top[k] + 0.55 * (a.lung_bottom[k] - a.lung_top[k])
        haze = np.exp(-((frame.u - hu) ** 2 + (frame.v - hv) ** 2) / (2 * sigma * sigma))
        zone = frame.zone(k, plan.levels)
        lines = (np.mod(frame.v / 0.045 + phase, 1.0) < 0.2) & (frame.lateral_fraction(k) > 0.55)
        lines &= frame.zone(k, ("lower",)) & (plan.grade >= 2)  # interstitial lines: moderate/severe
        side_mask = zone & ((haze > 0.35) | lines)
        mask |= side_mask
        delta += np.where(side_mask, amp * haze + 0.15 * amp * lines, 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def _draw_pneumothorax(
    frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig
) -> Finding:
    a = frame.anatomy
    mask = np.zeros((frame.size, frame.size), dtype=bool)
    line = np.zeros_like(mask)
    for k in _side_indices(plan.side):
        s = -1.0 if k == 0 else 1.0
        top, bottom = a.lung_top[k], a.lung_bottom[k]
        shrink = {1: 0.93, 2: 0.88, 3: 0.82}[plan.grade] + float(rng.uniform(-0.015, 0.015))
        cu, cv = s * a.lung_offset, top + 0.6 * (bottom - top)
        shrunk = lung_mask(cu + (frame.u - cu) / shrink, cv + (frame.v - cv) / shrink, a, k)
        if plan.attrs.get("where") == "apical":
            region = frame.v < top + 0.3 * (bottom - top)
        else:
            region = frame.lateral_fraction(k) > 0.1
        side_mask = frame.lungs[k] & ~shrunk & region & frame.zone(k, plan.levels)
        edge = shrunk & ~cv2.erode(shrunk.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        near = cv2.dilate(side_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        mask |= side_mask
        line |= edge & near
    amp = 0.06 * cfg.subtlety
    delta = (np.where(mask, -amp, 0.0) + np.where(line, 2.0 * amp, 0.0)).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask), lucent=mask)


def _to_pixel(frame: Frame, u: float, v: float) -> tuple[int, int]:
    x, y = frame.to_pixel(u, v)
    return round(x), round(y)


def _draw_device(frame: Frame, plan: FindingPlan, rng: np.random.Generator, cfg: SynthConfig) -> Finding:
    a = frame.anatomy
    canvas = np.zeros((frame.size, frame.size), dtype=np.uint8)
    width = max(1, frame.size // 128)
    top = min(a.lung_top)
    device = plan.attrs.get("device")
    if device == "ett":
        tip = top + float(rng.uniform(0.2, 0.35))
        pts = [_to_pixel(frame, 0.015, -1.05), _to_pixel(frame, 0.015, tip)]
    elif device == "central_line":
        s = -1.0 if rng.random() < 0.7 else 1.0  # u < 0 is image left, the patient's right
        plan = replace(plan, attrs={**plan.attrs, "side": "right" if s < 0 else "left"})
        pts = [
            _to_pixel(frame, s * 0.45, -1.0),
            _to_pixel(frame, s * 0.2, top + 0.02),
            _to_pixel(frame, -0.04, top + float(rng.uniform(0.3, 0.45))),
        ]
    else:
        plan = replace(plan, attrs={**plan.attrs, "side": "left"})  # u > 0: the patient's left
        gen = _to_pixel(frame, 0.55, top - 0.05)
        half = max(2, frame.size // 40)
        cv2.rectangle(canvas, (gen[0] - half, gen[1] - half // 2), (gen[0] + half, gen[1] + half // 2), 1, -1)
        pts = [gen, _to_pixel(frame, 0.1, top + 0.3), _to_pixel(frame, a.heart_center_u, a.heart_center_v)]
    cv2.polylines(canvas, [np.asarray(pts, dtype=np.int32)], False, 1, thickness=width)
    mask = canvas.astype(bool)
    delta = np.where(mask, 0.45, 0.0).astype(np.float32)
    return Finding(plan, mask, delta, mask_box(mask))


def draw_findings(
    frame: Frame, plans: list[FindingPlan], rng: np.random.Generator, cfg: SynthConfig
) -> list[Finding]:
    """Geometry of every planned finding on ``frame``; cardiomegaly's mask is the heart shadow. A drawn
    finding's plan records what drawing decided (a central line's side, ``attrs["side"]``), so a report
    written from ``[f.plan for f in findings]`` agrees with the picture."""
    out: list[Finding] = []
    for plan in plans:
        if plan.kind == "cardiomegaly":
            out.append(Finding(plan, frame.heart.copy(), None, mask_box(frame.heart)))
            continue
        draw = _DRAWERS[plan.kind]
        out.append(draw(frame, plan, rng, cfg))
    return out


_DRAWERS = {
    "consolidation": _draw_consolidation,
    "opacity": _draw_opacity,
    "nodule": _draw_nodule,
    "atelectasis": _draw_atelectasis,
    "effusion": _draw_effusion,
    "edema": _draw_edema,
    "pneumothorax": _draw_pneumothorax,
    "device": _draw_device,
}
