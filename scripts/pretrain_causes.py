"""Why GLoRIA pretraining on SynthCXR stays near chance: the data-side causes, measured without training.

    python scripts/pretrain_causes.py                         # the demo's default set (1500 images, seed 0)
    python scripts/pretrain_causes.py --seeds 0 1 2 --out runs/causes

For each seed, the demo's own SynthCXR set and pretraining CSV (``gloria.demo.stages``: the 5x200 studies
removed, the ``Split`` column's train rows) are read, and three things are measured on the training pairs:

1. **False negatives in a batch.** The contrastive losses treat every other pair of a batch as a negative.
   Batches of the demo's size are drawn as the loader does (a seeded shuffle per epoch, consecutive chunks);
   for each batch, the share of its off-diagonal pairs (i != j) that are in fact the same text -- the cleaned
   whole impression (``data.full_report: true``, the demo) or one sentence drawn per pair (the release) --
   or the same labels (the 14 CheXpert label values as written, or the same set of present findings), and
   the share of rows that have at least one such pair in their batch, and for identical texts the floor they
   put under the image->text loss (log(1 + m) for a row with m copies of its text), over its chance level.
2. **One sentence vs the whole impression.** Over the training reports with at least one finding: how often
   a drawn sentence names none of the image's findings (it says only what is absent, or nothing), and how
   often it names all of them.
3. **Finding size against the region grid.** Each finding's box (SynthCXR pixels) in units of one region of
   the image tower's grid after the preset's resize and crop: ResNet layer 3 (stride 16: 8x8 at a 128-px
   crop, the demo) and layer 4 (stride 32: 4x4); the share of findings smaller than one region and the share
   whose box lies inside a single region.

Writes ``docs/data/pretrain_causes.json`` (``--json``) with the provenance record; docs/learning.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gloria import provenance
from gloria.data.reports import clean_text, report_sentences

log = logging.getLogger("pretrain_causes")
LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)  # fmt: skip


def training_cases(synth_root: Path, pretrain_csv: Path) -> list[dict[str, Any]]:
    """Ground-truth records of the pretraining CSV's train rows, in the CSV's order."""
    frame = pd.read_csv(pretrain_csv)
    train = frame[frame["Split"] == "train"]
    by_path: dict[str, dict[str, Any]] = {}
    with (synth_root / "synthcxr_ground_truth.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            case = json.loads(line)
            by_path[case["chexpert_path"]] = case
    cases = []
    for path, impression in zip(train["Path"], train["Report Impression"]):
        case = by_path.get(str(path))
        if case is None:
            raise ValueError(
                f"{pretrain_csv}: path {path!r} is not in {synth_root}/synthcxr_ground_truth.jsonl"
            )
        cases.append({**case, "text": str(impression)})
    return cases


def label_key(case: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(case["labels"].get(name) for name in LABELS)


def findings_key(case: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(f["kind"] for f in case["findings"]))


def in_batch_false_negatives(
    keys: Sequence[Any], batch: int, epochs: int, rng: np.random.Generator
) -> dict[str, float]:
    """Share of off-diagonal in-batch pairs with equal keys, and of rows with at least one, over
    ``epochs`` seeded shuffles cut into consecutive batches (the last partial batch dropped).

    ``loss_floor_over_chance``: where the keys are the texts, a row whose text appears m more times in its
    batch has m negatives with exactly its positive's text embedding, so its image->text cross-entropy cannot
    go below log(1 + m); the mean of that floor over rows, over the chance level log(batch)."""
    codes = pd.factorize(pd.Series([repr(k) for k in keys]))[0]
    pairs = rows = pair_total = row_total = 0
    floor = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(codes))
        for start in range(0, len(order) - batch + 1, batch):
            c = codes[order[start : start + batch]]
            same = c[:, None] == c[None, :]
            np.fill_diagonal(same, False)
            pairs += int(same.sum())
            rows += int(same.any(axis=1).sum())
            floor += float(np.log1p(same.sum(axis=1)).sum())
            pair_total += batch * (batch - 1)
            row_total += batch
    counts = np.bincount(codes)
    n = len(codes)
    return {
        "pair_share": pairs / pair_total,
        "row_share_with_one_or_more": rows / row_total,
        "loss_floor_over_chance": floor / row_total / math.log(batch),
        "pair_share_expected": float((counts * (counts - 1)).sum() / (n * (n - 1))),
        "distinct": len(counts),
        "largest_group_share": float(counts.max() / n),
    }


def sampled_sentence_false_negatives(
    sentences: Sequence[Sequence[str]], batch: int, epochs: int, rng: np.random.Generator
) -> dict[str, float]:
    """As :func:`in_batch_false_negatives`, with one sentence drawn per pair and access (the release)."""
    pairs = rows = pair_total = row_total = 0
    floor = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(sentences))
        for start in range(0, len(order) - batch + 1, batch):
            drawn = [sentences[i][int(rng.integers(len(sentences[i])))] for i in order[start : start + batch]]
            c = pd.factorize(pd.Series(drawn))[0]
            same = c[:, None] == c[None, :]
            np.fill_diagonal(same, False)
            pairs += int(same.sum())
            rows += int(same.any(axis=1).sum())
            floor += float(np.log1p(same.sum(axis=1)).sum())
            pair_total += batch * (batch - 1)
            row_total += batch
    return {
        "pair_share": pairs / pair_total,
        "row_share_with_one_or_more": rows / row_total,
        "loss_floor_over_chance": floor / row_total / math.log(batch),
    }


def names_finding(sentence: str, case: dict[str, Any], index: int) -> bool:
    """Whether a cleaned impression sentence contains one of finding ``index``'s own impression words."""
    spans = case["spans"]
    words = [
        clean_text(spans[k]["text"])
        for k in case["findings"][index]["spans"]
        if spans[k]["section"] == "impression" and spans[k]["role"] == "finding"
    ]
    return any(w and f" {w} " in f" {sentence} " for w in words)


def sentence_coverage(cases: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Over reports with a finding: expected share of drawn sentences naming none / all of its findings."""
    none, every, n_sent, n_reports = 0.0, 0.0, 0, 0
    impression_names_all = 0
    for case in cases:
        if not case["findings"]:
            continue
        sentences = report_sentences(case["text"])
        if not sentences:
            continue
        n_reports += 1
        n_sent += len(sentences)
        named = [{i for i in range(len(case["findings"])) if names_finding(s, case, i)} for s in sentences]
        none += sum(not m for m in named) / len(sentences)
        every += sum(len(m) == len(case["findings"]) for m in named) / len(sentences)
        impression_names_all += len(set().union(*named)) == len(case["findings"])
    return {
        "reports_with_a_finding": n_reports,
        "mean_sentences": n_sent / n_reports,
        "drawn_sentence_names_no_finding": none / n_reports,
        "drawn_sentence_names_every_finding": every / n_reports,
        "whole_impression_names_every_finding": impression_names_all / n_reports,
    }


def finding_sizes(cases: Sequence[dict[str, Any]], imsize: int, crop: int) -> dict[str, Any]:
    """Boxes in region units for strides 16 and 32 after resizing the image to ``imsize`` and cropping
    ``crop`` (centre; SynthCXR images are square at the cases' ``size``)."""
    out: dict[str, Any] = {}
    for stride in (16, 32):
        grid = crop // stride
        areas, inside, by_kind = [], 0, {}
        for case in cases:
            scale = imsize / case["size"]
            offset = (imsize - crop) / 2
            for f in case["findings"]:
                x, y, w, h = (float(v) for v in f["box"])
                x0, y0 = x * scale - offset, y * scale - offset
                area = (w * scale) * (h * scale) / stride**2
                areas.append(area)
                by_kind.setdefault(f["kind"], []).append(area)
                cells_x = math.floor((x0 + w * scale - 1e-9) / stride) - math.floor(x0 / stride)
                cells_y = math.floor((y0 + h * scale - 1e-9) / stride) - math.floor(y0 / stride)
                inside += cells_x == 0 and cells_y == 0
        a = np.asarray(areas)
        out[f"stride{stride}"] = {
            "grid": f"{grid}x{grid}",
            "findings": int(a.size),
            "box_area_in_regions_median": float(np.median(a)),
            "box_area_in_regions_quartiles": [float(np.quantile(a, 0.25)), float(np.quantile(a, 0.75))],
            "share_smaller_than_one_region": float((a < 1).mean()),
            "share_inside_one_region": inside / a.size,
            "median_by_kind": {k: float(np.median(v)) for k, v in sorted(by_kind.items())},
        }
    return out


def measure_seed(seed: int, out: Path, batch: int, epochs: int) -> dict[str, Any]:
    from gloria.config import preset
    from gloria.demo import stages as S
    from gloria.demo.run import DemoRun
    from gloria.demo.settings import SIZES

    settings = SIZES["default"]
    run = DemoRun(settings, seed, out / f"seed{seed}", "python scripts/pretrain_causes.py")
    if not (run.synth_root / "CheXpert-v1.0" / "master_updated.csv").exists():
        S.stage_synth(run)
    csv = S.prepare_pretraining(run)
    cases = training_cases(run.synth_root, csv)
    rng = np.random.default_rng(seed)
    whole = [" ".join(report_sentences(c["text"])) for c in cases]
    sentences = [report_sentences(c["text"]) or [""] for c in cases]
    transforms = preset(settings.preset).transforms
    result = {
        "training_pairs": len(cases),
        "batch": batch,
        "epochs_drawn": epochs,
        "false_negatives": {
            "same_whole_impression": in_batch_false_negatives(whole, batch, epochs, rng),
            "same_drawn_sentence": sampled_sentence_false_negatives(sentences, batch, epochs, rng),
            "same_label_vector": in_batch_false_negatives([label_key(c) for c in cases], batch, epochs, rng),
            "same_findings": in_batch_false_negatives([findings_key(c) for c in cases], batch, epochs, rng),
        },
        "no_finding_share": sum(not c["findings"] for c in cases) / len(cases),
        "findings_per_image": dict(sorted(Counter(len(c["findings"]) for c in cases).items())),
        "sentences": sentence_coverage(cases),
        "finding_size": finding_sizes(cases, transforms.imsize, transforms.crop_size or transforms.imsize),
        "preset_transforms": {"imsize": transforms.imsize, "crop_size": transforms.crop_size},
    }
    config = json.loads((run.synth_root / "synthcxr.json").read_text(encoding="utf-8"))["config"]
    result["synth_settings"] = {k: config[k] for k in ("subtlety", "noise", "finding_scale", "size")}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch", type=int, default=None, help="default: the demo's pretraining batch")
    parser.add_argument("--epochs", type=int, default=50, help="shuffles drawn per measurement")
    parser.add_argument("--out", type=Path, default=Path("runs/causes"), help="SynthCXR sets (reused)")
    parser.add_argument("--json", type=Path, default=Path("docs/data/pretrain_causes.json"))
    args = parser.parse_args(argv)
    meta = provenance.start(1)
    from gloria.demo.settings import SIZES

    batch = args.batch or SIZES["default"].pretrain_batch_size
    seeds = {str(s): measure_seed(s, args.out, batch, args.epochs) for s in args.seeds}
    provenance.write(args.json, {"size": "default", "seeds": seeds}, meta)
    log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
