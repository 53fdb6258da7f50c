"""The linear-probe evaluation (method.md section 9) at a few label fractions, on frozen encoder features.

The probe's encoder is frozen and kept in eval mode, so its pooled trunk feature of each image is fixed:
it is computed once per model, and one logistic regression per class (L-BFGS, L2) is fitted on the seeded
``train_pct`` subsample (``gloria.training.sources.subsample``, the training runner's draw).
``run_linear_probe`` is the runner. (``gloria.training.classify_module`` is the other idea: the paper's
Lightning training of a linear head -- or a full fine-tune -- by gradient descent with augmentation, behind
``gloria train`` with ``task: classification``.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from gloria.data import chexpert
from gloria.data.images import read_image
from gloria.data.transforms import ImagePreprocessor
from gloria.model import GLoRIA
from gloria.tasks import metrics as M
from gloria.training.sources import subsample

log = logging.getLogger(__name__)


@dataclass
class LabelledSet:
    """Frontal CheXpert-style rows: image files and targets [N, C] (release uncertain policy)."""

    paths: list[Path]
    targets: NDArray[np.float64]
    classes: list[str]


def read_labelled(synth_root: Path, csv_name: str) -> LabelledSet:
    """``CheXpert-v1.0/<csv_name>`` of a CheXpert-style tree (e.g. SynthCXR) with the 5 competition tasks
    as targets."""
    root = synth_root / "CheXpert-v1.0"
    frame = chexpert.frontal_only(chexpert.read_chexpert_csv(root / csv_name))
    classes = list(chexpert.COMPETITION_TASKS)
    targets = chexpert.apply_uncertain_policy(frame, "release", classes).to_numpy(dtype=np.float64)
    paths = [chexpert.image_path(root, str(p)) for p in frame["Path"]]
    return LabelledSet(paths, targets, classes)


@torch.no_grad()
def pooled_features(model: GLoRIA, paths: Sequence[Path], *, batch_size: int = 64) -> NDArray[np.float64]:
    """The probe's input: the pooled trunk feature [N, C4] of each image (eval preprocessing)."""
    pre = ImagePreprocessor(model.config.transforms)
    encoder = model.img_encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([pre(read_image(p)) for p in paths[start : start + batch_size]]).to(device)
        out.append(encoder.forward_trunk(batch)[1].double().cpu().numpy())
    return np.concatenate(out)


def _fit_predict(
    x_train: NDArray[np.float64], y_train: NDArray[np.float64], x_test: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Positive-class scores of a logistic regression; a constant (the train rate) when one class only."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:
        return np.full(x_test.shape[0], float(y_train.mean()) if len(y_train) else 0.0)
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit(x_train, y_train.astype(np.int64))
    return np.asarray(clf.predict_proba(x_test)[:, 1], dtype=np.float64)


def linear_probe(
    train_features: NDArray[np.float64],
    train: LabelledSet,
    test_features: NDArray[np.float64],
    test: LabelledSet,
    fractions: Sequence[float],
    *,
    seed: int,
) -> dict[str, dict[str, object]]:
    """Per label fraction: images used, per-class and mean test AUROC (NaN-free classes only)."""
    out: dict[str, dict[str, object]] = {}
    for pct in fractions:
        _, kept = subsample(list(range(len(train.paths))), pct, seed)
        x = train_features[kept]
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        x_std, t_std = (x - mean) / std, (test_features - mean) / std
        aurocs: dict[str, float] = {}
        for c, name in enumerate(train.classes):
            scores = _fit_predict(x_std, train.targets[kept, c], t_std)
            aurocs[name] = M.auroc(test.targets[:, c], scores)
        finite = [v for v in aurocs.values() if np.isfinite(v)]
        out[f"{pct:g}"] = {
            "fraction": pct,
            "train_images": len(kept),
            "test_images": len(test.paths),
            "mean_auroc": float(np.mean(finite)) if finite else float("nan"),
            "auroc": aurocs,
        }
        log.info(
            "linear probe at %g of the labels (%d images): mean AUROC %.3f",
            pct,
            len(kept),
            out[f"{pct:g}"]["mean_auroc"],
        )
    return out


def run_linear_probe(
    model: GLoRIA,
    train: LabelledSet,
    test: LabelledSet,
    fractions: Sequence[float],
    *,
    seed: int,
    batch_size: int = 64,
) -> dict[str, dict[str, object]]:
    """The runner: pooled features of both sets once, then ``linear_probe`` at every label fraction."""
    return linear_probe(
        pooled_features(model, train.paths, batch_size=batch_size),
        train,
        pooled_features(model, test.paths, batch_size=batch_size),
        test,
        fractions,
        seed=seed,
    )
