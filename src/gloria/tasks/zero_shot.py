"""Zero-shot classification from precomputed features (method.md section 5, "zero-shot").

Prompt ensembles: ``max`` over a class's prompts (the release), ``mean`` of prompt embeddings, or ``pairs``
(positive vs negative prompt softmax, CheXzero-style). Default scores of an image never depend on the other
images; ``legacy=True`` is the release's formula (z-scored across the images scored together).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from gloria.alignment.similarity import (
    combine_default,
    combine_legacy,
    cosine_matrix,
    default_local_similarity,
    legacy_local_similarity,
    zscore,
)
from gloria.config import AlignmentConfig
from gloria.data.eval_set import EvalSet
from gloria.safe_yaml import load_yaml_file
from gloria.tasks import metrics as M
from gloria.tasks.embed import EmbeddingCache, EncodedTexts, ImageEmbeddings, TextModel, embed_texts
from gloria.types import ImageFeatures

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Ensemble = Literal["max", "mean", "pairs"]
ENSEMBLES: tuple[Ensemble, ...] = ("max", "mean", "pairs")
NEGATIVE_TEMPLATE = "no {finding}"


def default_negatives(class_names: Sequence[str], template: str = NEGATIVE_TEMPLATE) -> dict[str, list[str]]:
    """One negative prompt per class, e.g. "no pleural effusion" (``template`` uses ``{finding}``)."""
    return {name: [template.format(finding=name.lower())] for name in class_names}


def load_prompt_file(path: str | Path) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    """Prompts from YAML/JSON: ``{class: [prompts]}`` or ``{positive: {...}, negative: {...}}``.

    Returns (positive, negative or None). Errors name the file and the offending class.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompt file not found: {p}")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{p}: not valid JSON: {err}") from err
    else:
        data = load_yaml_file(p)
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{p}: expected a mapping of class -> list of prompts")
    if "positive" in data:
        positive = _prompt_map(data["positive"], p, "positive")
        negative = _prompt_map(data["negative"], p, "negative") if "negative" in data else None
        return positive, negative
    return _prompt_map(data, p, "classes"), None


def _prompt_map(data: object, path: Path, where: str) -> dict[str, list[str]]:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{path}: {where!r} must map class names to lists of prompts")
    out: dict[str, list[str]] = {}
    for name, prompts in data.items():
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(s, str) for s in prompts):
            raise ValueError(f"{path}: class {name!r} in {where!r} needs a non-empty list of prompt strings")
        out[str(name)] = list(prompts)
    return out


def fit_legacy_prompts(
    prompts: Mapping[str, Sequence[str]],
    num_slots: int,
    *,
    spare: Mapping[str, Sequence[str]] | None = None,
    seed: int | None = 0,
) -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    """The prompts the release's local similarity (``legacy=True``) can score with ``num_slots`` word slots:
    its ``cap_len`` (characters other than "[", :func:`gloria.model.release_cap_lens`) must be in
    1..num_slots - 1, else the release crashed. A prompt that does not fit is skipped; with ``spare``
    (per class, candidates such as the generator's), it is replaced by a fitting candidate not yet used,
    drawn with ``random.Random(seed)``. Returns (prompts, per changed class ``{"skipped", "added"}``); a class
    left without a prompt raises ValueError naming it, its shortest prompt and the limit."""
    import random

    from gloria.model import release_cap_lens

    def fits(text: str) -> bool:
        return 1 <= release_cap_lens([text])[0] <= num_slots - 1

    rng = random.Random(seed)
    kept: dict[str, list[str]] = {}
    changes: dict[str, dict[str, list[str]]] = {}
    for name, texts in prompts.items():
        good = [t for t in texts if fits(t)]
        skipped = [t for t in texts if not fits(t)]
        pool = [t for t in (spare or {}).get(name, ()) if fits(t) and t not in texts]
        added = rng.sample(pool, min(len(skipped), len(pool))) if skipped else []
        if not good and not added:
            shortest = min(texts, key=lambda t: release_cap_lens([t])[0])
            raise ValueError(
                f"legacy zero-shot: no prompt of class {name!r} fits the release's {num_slots - 1} word "
                f"slots (its shortest, {shortest!r}, has cap_len {release_cap_lens([shortest])[0]}); "
                "give shorter prompts or score without --legacy"
            )
        kept[name] = good + added
        if skipped:
            changes[name] = {"skipped": skipped, "added": added}
    return kept, changes


@dataclass
class ClassPrompts:
    """Encoded prompts of C classes: P texts, ``owner`` [P] class index, ``negative`` [P] bool."""

    class_names: list[str]
    texts: list[str]
    encoded: EncodedTexts
    owner: Tensor
    negative: Tensor


def encode_class_prompts(
    model: TextModel,
    positive: Mapping[str, Sequence[str]],
    negative: Mapping[str, Sequence[str]] | None = None,
    *,
    batch_size: int = 64,
) -> ClassPrompts:
    """Encode every class's prompts once (positive first, then negatives for ``pairs``)."""
    names = list(positive)
    if not names:
        raise ValueError("no classes given for zero-shot classification")
    texts: list[str] = []
    owner: list[int] = []
    neg: list[bool] = []
    for is_negative, table in ((False, positive), (True, negative or {})):
        for name, prompts in table.items():
            if name not in positive:
                raise ValueError(f"negative prompts for unknown class {name!r}; classes are {names}")
            if not prompts:
                raise ValueError(f"class {name!r} has no prompts")
            texts += list(prompts)
            owner += [names.index(name)] * len(prompts)
            neg += [is_negative] * len(prompts)
    blank = [(names[o], t) for o, t in zip(owner, texts) if not t.strip()]
    if blank:
        classes = sorted({n for n, _ in blank})
        raise ValueError(f"blank prompt(s) for class(es) {classes}: every prompt needs words")
    encoded = embed_texts(model, texts, batch_size=batch_size)
    words = encoded.features.word_mask.sum(dim=1) - 1  # slot 0 is the sentence token
    empty = [(names[o], t) for o, t, n in zip(owner, texts, words.tolist()) if n < 1]
    if empty:
        raise ValueError(
            f"prompt(s) with no words after cleaning (punctuation or unknown characters only): {empty[:5]}; "
            "every class would score the same"
        )
    return ClassPrompts(names, texts, encoded, torch.tensor(owner), torch.tensor(neg))


def _per_class(scores: Tensor, owner: Tensor, n_classes: int, reduce: Literal["max", "mean"]) -> Tensor:
    """[N, P] -> [N, C] by max or mean over each class's columns."""
    cols = []
    for c in range(n_classes):
        part = scores[:, owner == c]
        if part.shape[1] == 0:
            raise ValueError(f"class index {c} has no prompts of this kind")
        cols.append(part.amax(dim=1) if reduce == "max" else part.mean(dim=1))
    return torch.stack(cols, dim=1)


@torch.no_grad()
def zero_shot_scores(
    images: ImageFeatures,
    prompts: ClassPrompts,
    alignment: AlignmentConfig,
    *,
    ensemble: Ensemble = "max",
    legacy: bool = False,
    chunk_size: int = 256,
) -> Tensor:
    """Class scores [N, C] (on the CPU) of N images (regions [N,D,h,w], embedding [N,D]); argmax = prediction.

    - ``max`` / ``mean`` with ``legacy=False``: global cosine and the default local similarity per prompt;
      ``max``: each z-scored over one image's positive prompts, averaged, max per class (``gloria.api``'s
      default). ``mean``: global cosine to the mean of a class's unit prompt embeddings and the mean local
      score of its prompts, each z-scored over the C classes, averaged.
    - ``pairs``: both kinds of prompts scored together (z-scored over all of one image's prompts), then per
      class sigmoid(max positive - max negative): the two-way softmax of CheXzero; scores are in (0, 1).
    - ``legacy=True`` (``max`` only): the release -- (local + global) / 2 with its local formula, max per
      class, then every class column z-scored across the N images scored together.
    """
    scores = class_scores(images, prompts, alignment, ensemble=ensemble, legacy=legacy, chunk_size=chunk_size)
    if legacy and scores.shape[0] > 1:
        scores = zscore(scores, dim=0)
    return scores


def check_ensemble(prompts: ClassPrompts, ensemble: str, legacy: bool) -> None:
    """The ensemble is known and the prompts fit it (``pairs``: positives and negatives for every class)."""
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {list(ENSEMBLES)}, got {ensemble!r}")
    if legacy and ensemble != "max":
        raise ValueError(f"legacy zero-shot is the release's max ensemble; got ensemble={ensemble!r}")
    if ensemble == "pairs":
        if not bool(prompts.negative.any()):
            raise ValueError("ensemble 'pairs' needs negative prompts")
        for c, name in enumerate(prompts.class_names):
            kinds = prompts.negative[prompts.owner == c]
            if bool(kinds.all()) or not bool(kinds.any()):
                raise ValueError(f"ensemble 'pairs': class {name!r} needs positive and negative prompts")


@torch.no_grad()
def class_scores(
    images: ImageFeatures,
    prompts: ClassPrompts,
    alignment: AlignmentConfig,
    *,
    ensemble: Ensemble = "max",
    legacy: bool = False,
    chunk_size: int = 256,
) -> Tensor:
    """``zero_shot_scores`` before the legacy standardisation across images: every row depends on its own
    image only (the API scores image chunks with it and standardises once at the end)."""
    check_ensemble(prompts, ensemble, legacy)
    C = len(prompts.class_names)
    text = prompts.encoded.features
    use = ~prompts.negative if ensemble != "pairs" else torch.ones_like(prompts.negative)
    idx = use.nonzero().flatten()
    words, mask, emb = text.words[idx], text.word_mask[idx], text.embedding[idx]
    owner, negative = prompts.owner[idx].to(words.device), prompts.negative[idx].to(words.device)
    out = []
    for start in range(0, images.embedding.shape[0], chunk_size):
        regions = images.regions[start : start + chunk_size].to(words.device, words.dtype)
        img_emb = images.embedding[start : start + chunk_size].to(emb.device, emb.dtype)
        if legacy:
            cap_lens = [prompts.encoded.cap_lens[int(i)] for i in idx]
            texts = [prompts.texts[int(i)] for i in idx]
            glob = cosine_matrix(img_emb, emb)
            scale = alignment.local_feature_scale
            local = legacy_local_similarity(regions, words, cap_lens, texts, local_feature_scale=scale)
            out.append(_per_class(combine_legacy(glob, local), owner, C, "max"))
            continue
        local = default_local_similarity(regions, words, mask, alignment)
        if ensemble == "mean":
            unit = torch.nn.functional.normalize(emb, dim=1, eps=1e-8)
            centroids = torch.stack([unit[owner == c].mean(dim=0) for c in range(C)])
            glob_c = cosine_matrix(img_emb, centroids)
            out.append(combine_default(glob_c, _per_class(local, owner, C, "mean")))
            continue
        both = combine_default(cosine_matrix(img_emb, emb), local)  # [n, P]
        if ensemble == "max":
            out.append(_per_class(both, owner, C, "max"))
        else:
            pos = _per_class(both.masked_fill(negative, float("-inf")), owner, C, "max")
            neg = _per_class(both.masked_fill(~negative, float("-inf")), owner, C, "max")
            out.append(torch.sigmoid(pos - neg))
    return torch.cat(out).cpu()


def evaluate_scores(
    scores: ArrayLike,
    labels: ArrayLike,
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """Accuracy, macro F1, per-class AUROC (one vs rest), confusion matrix, with bootstrap 95% intervals."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    C = len(class_names)
    if s.ndim != 2 or s.shape != (y.shape[0], C):
        raise ValueError(f"scores must be [N, C] = [{y.shape[0]}, {C}], got {s.shape}")
    pred = s.argmax(axis=1)

    def acc(i: NDArray[np.int64]) -> float:
        return M.accuracy(y[i], pred[i])

    def f1(i: NDArray[np.int64]) -> float:
        return M.macro_f1(y[i], pred[i], C)

    def mean_auc(i: NDArray[np.int64]) -> float:
        return float(np.nanmean(M.per_class_auroc(y[i], s[i]))) if len(np.unique(y[i])) > 1 else float("nan")

    aurocs = M.per_class_auroc(y, s)
    return {
        "n": int(y.shape[0]),
        "classes": list(class_names),
        "accuracy": M.bootstrap_ci(acc, len(y), n_boot=n_boot, seed=seed).as_dict(),
        "macro_f1": M.bootstrap_ci(f1, len(y), n_boot=n_boot, seed=seed).as_dict(),
        "mean_auroc": M.bootstrap_ci(mean_auc, len(y), n_boot=n_boot, seed=seed).as_dict(),
        "auroc": {name: float(a) for name, a in zip(class_names, aurocs, strict=True)},
        "confusion_matrix": M.confusion_matrix(y, pred, C).tolist(),
    }


Calibration = Literal["temperature", "platt"]


@dataclass
class Calibrator:
    """Maps class scores [N, C] to probabilities, fitted on a validation split.

    ``temperature``: softmax(scores / t) with one t > 0 (argmax unchanged); ``platt``: per class
    sigmoid(a_c * s + b_c) fitted one-vs-rest, renormalised over classes (argmax may change).
    """

    method: Calibration
    params: Tensor

    @classmethod
    def fit(cls, scores: ArrayLike, labels: ArrayLike, method: Calibration, steps: int = 200) -> Calibrator:
        s = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if s.ndim != 2 or s.shape[0] != y.shape[0] or s.shape[0] == 0:
            raise ValueError(f"calibration needs scores [N, C] and N labels, got {tuple(s.shape)}, {len(y)}")
        if method == "temperature":
            raw = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # t = exp(raw)
        elif method == "platt":
            raw = torch.zeros(2, s.shape[1], dtype=torch.float64)
            raw[0] = 1.0
            raw.requires_grad_(True)
        else:
            raise ValueError(f"calibration must be 'temperature' or 'platt', got {method!r}")
        opt = torch.optim.LBFGS([raw], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
        onehot = torch.nn.functional.one_hot(y, s.shape[1]).to(s.dtype)

        def closure() -> Tensor:
            opt.zero_grad()
            if method == "temperature":
                loss = torch.nn.functional.cross_entropy(s / raw.exp(), y)
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(raw[0] * s + raw[1], onehot)
            loss.backward()
            return loss

        opt.step(closure)
        return cls(method, raw.detach())

    def __call__(self, scores: ArrayLike) -> NDArray[np.float64]:
        s = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
        if self.method == "temperature":
            return (s / self.params.exp()).softmax(dim=1).numpy()
        p = torch.sigmoid(self.params[0] * s + self.params[1])
        return (p / p.sum(dim=1, keepdim=True)).numpy()


# ---------------------------------------------------------------------------------------------- the runner


@dataclass
class ZeroShotResult:
    """What ``run_zero_shot`` measured.

    scores [N, C] of every row; ``evaluation`` on ``test_rows`` (all rows unless calibrated);
    ``calibration`` (method, parameters, ECE before and after) and ``calibrated`` [len(test_rows), C] with
    its ``calibrated_evaluation`` when a calibration was asked for.
    """

    class_names: list[str]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]
    evaluation: dict[str, object]
    test_rows: NDArray[np.int64]
    calibration: dict[str, object] | None = None
    calibrated: NDArray[np.float64] | None = None
    calibrated_evaluation: dict[str, object] | None = None

    def scores_table(self, data: EvalSet) -> pd.DataFrame:
        """One row per image: ``Path``, ``task`` and the score of every class."""
        import pandas as pd

        table = pd.DataFrame(self.scores, columns=self.class_names)
        table.insert(0, "task", data.tasks)
        table.insert(0, "Path", [str(p) for p in data.paths])
        return table


def run_zero_shot(
    model: Any,
    data: EvalSet,
    positive: Mapping[str, Sequence[str]],
    negative: Mapping[str, Sequence[str]] | None = None,
    *,
    images: ImageEmbeddings | None = None,
    ensemble: Ensemble = "max",
    legacy: bool = False,
    negative_template: str = NEGATIVE_TEMPLATE,
    calibrate: Calibration | None = None,
    val_fraction: float = 0.2,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
) -> ZeroShotResult:
    """Zero-shot classification of an evaluation set: encode (or take) the images, encode the prompts once,
    score (``zero_shot_scores``), evaluate with bootstrap intervals; optionally calibrate on a seeded
    ``val_fraction`` of the rows and evaluate on the others. Scores are computed on the CPU."""
    from gloria.tasks.embed import EncodedTexts, embed_eval_images, on_cpu
    from gloria.tasks.metrics import expected_calibration_error

    unknown = sorted(set(data.tasks) - set(positive))
    if unknown:
        raise ValueError(f"tasks {unknown} have no prompts; prompt classes are {list(positive)}")
    if ensemble == "pairs" and negative is None:
        negative = default_negatives(list(positive), negative_template)
    embedded = embed_eval_images(model, data.paths, images, batch_size=batch_size, cache=cache)
    prompts = encode_class_prompts(model, positive, negative if ensemble == "pairs" else None)
    prompts.encoded = EncodedTexts(on_cpu(prompts.encoded.features), prompts.encoded.cap_lens)
    scores = zero_shot_scores(
        embedded.features(), prompts, model.config.alignment, ensemble=ensemble, legacy=legacy
    )
    s = scores.double().numpy()
    labels = np.array([prompts.class_names.index(t) for t in data.tasks], dtype=np.int64)
    test = np.arange(len(labels))
    result = ZeroShotResult(prompts.class_names, s, labels, {}, test)
    if calibrate:
        order = np.random.default_rng(seed).permutation(len(labels))
        n_val = max(1, int(val_fraction * len(labels)))
        val, test = np.sort(order[:n_val]), np.sort(order[n_val:])
        cal = Calibrator.fit(s[val], labels[val], calibrate)
        calibrated = cal(s[test])
        raw_probs = np.exp(s[test] - s[test].max(1, keepdims=True))
        raw_probs /= raw_probs.sum(1, keepdims=True)
        result.test_rows, result.calibrated = test, calibrated
        result.calibration = {
            "method": calibrate,
            "params": cal.params.tolist(),
            "fit_rows": len(val),
            "ece_softmax_of_scores": expected_calibration_error(raw_probs, labels[test]),
            "ece_calibrated": expected_calibration_error(calibrated, labels[test]),
        }
        result.calibrated_evaluation = evaluate_scores(
            calibrated, labels[test], prompts.class_names, n_boot=n_boot, seed=seed
        )
    result.evaluation = evaluate_scores(s[test], labels[test], prompts.class_names, n_boot=n_boot, seed=seed)
    return result
