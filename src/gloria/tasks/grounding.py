"""Word-to-region grounding (method.md section 3, read out at inference) and image-blind baselines.

Readouts turn one image's regions and one text's words into a distribution over the h x w regions per word;
``LocationPrior`` is the best fixed location learned per class (optionally per class + side/level words).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from tqdm.auto import tqdm

from gloria.alignment.attention import check_regions_words, scaled_local_features, two_stage_attention

log = logging.getLogger(__name__)

Readout = Literal["two_stage", "two_stage_no_cls", "first_stage", "cosine"]
READOUTS: tuple[Readout, ...] = ("two_stage", "two_stage_no_cls", "first_stage", "cosine")

SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "bibasilar": "bilateral"}
LEVEL_WORDS = {
    "upper": "upper",
    "apical": "upper",
    "apex": "upper",
    "middle": "middle",
    "mid": "middle",
    "lingula": "middle",
    "lower": "lower",
    "base": "lower",
    "bases": "lower",
    "basal": "lower",
    "basilar": "lower",
    "bibasilar": "lower",
}


def word_maps(
    regions: Tensor,
    words: Tensor,
    word_mask: Tensor,
    *,
    readout: Readout = "two_stage",
    attention_temperature: float = 4.0,
    cosine_temperature: float = 10.0,
    local_feature_scale: float | None = None,
) -> Tensor:
    """Per-word maps over regions of matched pairs: regions [K,D,h,w], words [K,D,T], mask [K,T] -> [K,T,h,w].

    Every masked slot's map is non-negative and sums to 1 over the h*w regions; unmasked slots are zero.
    - ``two_stage``: the trained attention alpha (softmax over words, then ``attention_temperature`` and a
      softmax over regions), CLS included in the word softmax as in training;
    - ``two_stage_no_cls``: the same with slot 0 ([CLS]) left out of the word softmax (its map is zero);
    - ``first_stage``: the word softmax p[m, j] itself, renormalised over regions for each word j;
    - ``cosine``: softmax over regions of ``cosine_temperature * cos(region m, word j)``.
    """
    check_regions_words(regions, words, word_mask)
    if regions.shape[0] != words.shape[0]:
        raise ValueError(
            f"matched pairs need K images and K texts, got {regions.shape[0]} and {words.shape[0]}"
        )
    regions = scaled_local_features(regions, local_feature_scale)  # the model's alignment.local_feature_scale
    words = scaled_local_features(words, local_feature_scale)
    K, D, h, w = regions.shape
    if readout == "two_stage":
        return two_stage_attention(words, regions, word_mask, attention_temperature)[1]
    if readout == "two_stage_no_cls":
        mask = word_mask.clone()
        mask[:, 0] = False
        return two_stage_attention(words, regions, mask, attention_temperature)[1]
    values = regions.reshape(K, D, h * w)  # [K, D, R]
    keep = word_mask.unsqueeze(1)  # [K, 1, T]
    if readout == "first_stage":
        scores = torch.bmm(values.transpose(1, 2), words)  # [K, R, T]
        probs = scores.masked_fill(~keep, float("-inf")).softmax(dim=2)
        maps = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-30)
    elif readout == "cosine":
        v = torch.nn.functional.normalize(values, dim=1, eps=1e-8)
        t = torch.nn.functional.normalize(words, dim=1, eps=1e-8)
        cos = torch.bmm(v.transpose(1, 2), t)  # [K, R, T]
        maps = (cosine_temperature * cos).softmax(dim=1)
    else:
        raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}")
    maps = maps * keep
    return maps.transpose(1, 2).reshape(K, -1, h, w)


def word_slots(word_strings: Sequence[str], phrase_words: Iterable[str]) -> list[int]:
    """Slots whose aggregated word equals one of ``phrase_words`` (case-insensitive), in slot order."""
    wanted = {p.lower() for p in phrase_words}
    return [i for i, s in enumerate(word_strings) if s.lower() in wanted]


def phrase_map(maps: Tensor, slots: Sequence[int]) -> Tensor:
    """Mean of the word maps [T, h, w] at ``slots`` -> [h, w] (still sums to 1 over regions)."""
    if not slots:
        raise ValueError("phrase_map needs at least one word slot")
    return maps[list(slots)].mean(dim=0)


def random_map(height: int, width: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """A uniform random map over a ``height`` x ``width`` grid, normalised to sum 1 (the chance baseline)."""
    m = rng.random((height, width))
    return m / m.sum()


def side_level(words: Iterable[str]) -> tuple[str | None, str | None]:
    """The first side word (left/right/bilateral) and level word (upper/middle/lower) among ``words``."""
    side = level = None
    for word in words:
        token = word.lower()
        side = side or SIDE_WORDS.get(token)
        level = level or LEVEL_WORDS.get(token)
    return side, level


def tokens(text: str) -> list[str]:
    """Lower-case word tokens of ``text`` (``\\w+``)."""
    return re.findall(r"\w+", text.lower())


@dataclass
class LocationPrior:
    """Best fixed location: the mean ground-truth mask per key, on a ``grid`` x ``grid`` normalised canvas.

    Keys are ``(class,)`` or ``(class, side, level)``; prediction falls back from the full key to the class
    and then to all classes, so an unseen combination still gets a map. Never looks at the image.
    """

    grid: int = 32
    use_words: bool = False

    def __post_init__(self) -> None:
        self._sums: dict[tuple[str | None, ...], NDArray[np.float64]] = defaultdict(
            lambda: np.zeros((self.grid, self.grid))
        )
        self._counts: dict[tuple[str | None, ...], int] = defaultdict(int)

    def _keys(self, cls: str, words: Iterable[str]) -> list[tuple[str | None, ...]]:
        keys: list[tuple[str | None, ...]] = []
        if self.use_words:
            keys.append((cls, *side_level(words)))
        keys += [(cls,), ()]
        return keys

    def fit(self, cases: Iterable[tuple[str, Sequence[str], NDArray[np.bool_]]]) -> LocationPrior:
        """Learn from ``(class, report words, mask [H, W])`` triples (masks of any size)."""
        for cls, words, mask in cases:
            small = cv2.resize(mask.astype(np.float32), (self.grid, self.grid), interpolation=cv2.INTER_AREA)
            for key in self._keys(cls, words):
                self._sums[key] += small
                self._counts[key] += 1
        if not self._counts:
            raise ValueError("LocationPrior.fit got no cases")
        return self

    def predict(self, cls: str, words: Sequence[str], height: int, width: int) -> NDArray[np.float32]:
        """The prior map for a case, resized to the image's ``height`` x ``width`` pixels."""
        for key in self._keys(cls, words):
            if self._counts.get(key):
                prior = (self._sums[key] / self._counts[key]).astype(np.float32)
                resized = cv2.resize(prior, (width, height), interpolation=cv2.INTER_LINEAR)
                return np.asarray(resized, dtype=np.float32)
        raise ValueError("LocationPrior.predict called before fit")


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class GroundingCase:
    """One finding to localise: the image, a phrase naming it, its class and ground-truth mask [H, W]."""

    image_path: Path
    text: str
    label: str
    mask: NDArray[np.bool_]
    finding_words: list[str]
    location_words: list[str]


def synth_grounding_cases(root: str | Path, *, min_area: int = 4) -> list[GroundingCase]:
    """Cases from SynthCXR's ``synthcxr_ground_truth.jsonl``: per finding, the impression sentence naming
    it, the words of its ``finding`` spans, the words of its ``location`` spans, and its mask."""
    from gloria.data.rle import rle_decode

    base = Path(root)
    gt = base / "synthcxr_ground_truth.jsonl"
    if not gt.is_file():
        raise FileNotFoundError(f"SynthCXR ground truth not found: {gt} (generate with `gloria synth`)")
    cases = []
    for line_no, line in enumerate(gt.read_text().splitlines(), start=1):
        rec = json.loads(line)
        try:
            size, report, spans = int(rec["size"]), str(rec["report"]), rec["spans"]
            start = int(rec["impression_start"])
            for f in rec["findings"]:
                if int(f["area"]) < min_area:
                    continue
                own = [spans[k] for k in f["spans"] if spans[k]["section"] == "impression"]
                if not own:
                    continue
                s0 = min(int(s["start"]) for s in own)
                begin = report.rfind(".", start, s0) + 1 or start
                end = report.find(".", s0)
                sentence = report[max(begin, start) : end if end >= 0 else len(report)].strip()
                cases.append(
                    GroundingCase(
                        image_path=base / rec["chexpert_path"],
                        text=sentence,
                        label=str(f["label"]),
                        mask=rle_decode(f["mask_rle"], size, size).astype(bool),
                        finding_words=[w for s in own if s["role"] == "finding" for w in tokens(s["text"])],
                        location_words=[w for s in own if s["role"] == "location" for w in tokens(s["text"])],
                    )
                )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{gt}: line {line_no} is not a valid ground-truth record: {err}") from err
    return cases


RSNA_PHRASE = "lung opacity concerning for pneumonia"


def rsna_grounding_cases(
    root: str | Path, *, text: str = RSNA_PHRASE, limit: int | None = None
) -> list[GroundingCase]:
    """Cases from an RSNA-style folder (``stage_2_train_labels.csv`` + ``stage_2_train_images/*.dcm``):
    every patient with boxes, the union of its boxes as the mask, ``text`` as the phrase (RSNA has no
    reports, so the location words are empty and the side/level prior falls back to the class prior)."""
    from gloria.data.images import read_image
    from gloria.data.records import boxes_from_json
    from gloria.data.rsna import group_by_patient, image_path, read_rsna_labels
    from gloria.tasks.metrics import box_to_mask

    base = Path(root)
    grouped = group_by_patient(read_rsna_labels(base / "stage_2_train_labels.csv"))
    cases = []
    for pid, target, boxes in grouped[["patientId", "Target", "boxes"]].itertuples(index=False):
        if int(target) != 1:
            continue
        path = image_path(base, str(pid))
        H, W = read_image(path).shape
        mask = np.zeros((H, W), dtype=bool)
        for box in boxes_from_json(str(boxes), where=f"patientId {pid}"):
            mask |= box_to_mask(box, H, W)
        finding = [w for w in tokens(text) if w in {"opacity", "pneumonia", "consolidation"}]
        cases.append(GroundingCase(path, text, "Lung Opacity", mask, finding or tokens(text), []))
        if limit is not None and len(cases) >= limit:
            break
    if not cases:
        raise ValueError(f"{base}: no RSNA patient with a box (Target 1)")
    return cases


def score_map(heatmap: NDArray[np.floating], mask: NDArray[np.bool_], tolerance: int) -> dict[str, float]:
    """Pointing game (exact and dilated by ``tolerance`` px), IoU / Dice at half range, CNR."""
    from gloria.tasks import metrics as M

    iou, dice = M.iou_dice(M.threshold_map(heatmap, 0.5), mask)
    return {
        "pointing": float(M.pointing_game(heatmap, mask)),
        "pointing_tol": float(M.pointing_game(heatmap, mask, tolerance=tolerance)),
        "iou": iou,
        "dice": dice,
        "cnr": M.contrast_to_noise(heatmap, mask),
    }


@dataclass
class GroundingOutput:
    """Mean metrics per method (readouts and baselines), per-case maps of the first few evaluated cases,
    and every evaluated case's metrics per method (``per_case``, for bootstrap intervals, in the order of
    ``test_cases``)."""

    summary: dict[str, dict[str, float]]
    examples: list[tuple[GroundingCase, dict[str, NDArray[np.float32]]]]
    per_case: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    test_cases: list[GroundingCase] = field(default_factory=list)


@torch.no_grad()
def evaluate_grounding(
    model: Any,
    cases: Sequence[GroundingCase],
    *,
    readouts: Sequence[Readout] = READOUTS,
    fit_fraction: float = 0.5,
    seed: int = 0,
    n_examples: int = 4,
    batch_size: int = 32,
    progress: bool = True,
    fit_cases: Sequence[GroundingCase] | None = None,
    scorer: Callable[[NDArray[np.floating], NDArray[np.bool_], int], dict[str, float]] = score_map,
) -> GroundingOutput:
    """Compare model readouts with image-blind baselines on held-out cases.

    A seeded ``fit_fraction`` of the cases fits the location priors; all methods are scored on the rest.
    With ``fit_cases`` (e.g. the training boxes) those fit the priors and every case of ``cases`` is scored.
    ``scorer(map, mask, tolerance)`` gives a case's metrics (default :func:`score_map`).
    The phrase map averages the maps of the words naming the finding (all real words when none match).
    ``pointing_tol`` dilates the truth by one region's size in original pixels.
    """
    from gloria.tasks.embed import embed_images, embed_texts
    from gloria.viz.maps import geometry_for, to_original

    rng = np.random.default_rng(seed)
    if fit_cases is not None:
        if not fit_cases or not cases:
            raise ValueError(f"grounding needs fit and test cases, got {len(fit_cases)} and {len(cases)}")
        fit, test = list(fit_cases), list(cases)
    else:
        if len(cases) < 2:
            raise ValueError(f"grounding evaluation needs at least 2 cases, got {len(cases)}")
        order = rng.permutation(len(cases))
        n_fit = min(max(1, round(fit_fraction * len(cases))), len(cases) - 1)
        fit = [cases[i] for i in order[:n_fit]]
        test = [cases[i] for i in sorted(order[n_fit:])]
    prior = LocationPrior().fit((c.label, [], c.mask) for c in fit)
    prior_words = LocationPrior(use_words=True).fit((c.label, c.location_words, c.mask) for c in fit)
    images = embed_images(
        model, [c.image_path for c in test], batch_size=batch_size, with_regions=True, progress=progress
    )
    texts = embed_texts(model, [c.text for c in test], batch_size=batch_size).features
    cfg = model.config
    per_method: dict[str, list[dict[str, float]]] = defaultdict(list)
    examples: list[tuple[GroundingCase, dict[str, NDArray[np.float32]]]] = []
    regions_all = images.features().regions
    h, w = regions_all.shape[2:]
    for i, case in enumerate(tqdm(test, desc="grounding", unit="case", disable=not progress)):
        H, W = case.mask.shape
        geom = geometry_for(H, W, cfg.transforms)
        tol = int(np.ceil(cfg.transforms.crop_size / h / geom.scale))
        regions = regions_all[i : i + 1].to(texts.words.device, texts.words.dtype)
        slots = word_slots(texts.word_strings[i], case.finding_words)
        if not slots:
            slots = list(range(1, int(texts.word_mask[i].sum())))
        maps: dict[str, NDArray[np.float32]] = {}
        for readout in readouts:
            wm = word_maps(
                regions,
                texts.words[i : i + 1],
                texts.word_mask[i : i + 1],
                readout=readout,
                attention_temperature=cfg.alignment.attention_temperature,
                cosine_temperature=cfg.alignment.logit_temperature,
                local_feature_scale=cfg.alignment.local_feature_scale,
            )[0]
            maps[readout] = to_original(phrase_map(wm, slots), geom)
        maps["random"] = to_original(torch.from_numpy(random_map(h, w, rng)), geom)
        maps["prior_class"] = prior.predict(case.label, [], H, W)
        maps["prior_class_side_level"] = prior_words.predict(case.label, case.location_words, H, W)
        for method, heat in maps.items():
            per_method[method].append(scorer(heat, case.mask, tol))
        if len(examples) < n_examples:
            examples.append((case, maps))
    summary = {
        m: {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} | {"n": len(rows)}
        for m, rows in per_method.items()
    }
    log.info("grounding on %d held-out cases (%d fit the priors)", len(test), len(fit))
    return GroundingOutput(summary, examples, dict(per_method), test)
