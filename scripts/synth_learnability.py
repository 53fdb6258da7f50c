"""Learnability check of SynthCXR: a small CNN trained from scratch on the 5 competition labels.

Run: python scripts/synth_learnability.py [--n 2500] [--size 128] [--epochs 8] [--model small|resnet18]
Prints per-finding validation AUROC and writes bench/results/synth_learnability.json. The AUROCs should be
well above 0.5 (findings are visible) and below 1.0 (they are not trivial).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from gloria.data.synth import SynthConfig, make_case
from gloria.data.synth.labels import COMPETITION_TASKS

log = logging.getLogger("synth_learnability")
U_ONES = {"Atelectasis", "Edema", "Pleural Effusion"}  # the release's uncertain mapping; others U-Zeros


def build_arrays(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 1, size, size] float32 in [0, 1] and targets [N, 5] (uncertain mapped, blank -> 0)."""
    cfg = SynthConfig(size=size)
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    targets = np.zeros((n, len(COMPETITION_TASKS)), dtype=np.float32)
    for i in tqdm(range(n), desc="synthcxr", unit="img"):
        case = make_case(seed, i, cfg)
        images[i, 0] = case.image / 255.0
        for k, task in enumerate(COMPETITION_TASKS):
            value = case.labels[task]
            targets[i, k] = 1.0 if value == 1.0 or (value == -1.0 and task in U_ONES) else 0.0
    return images, targets


def small_cnn(outputs: int) -> torch.nn.Module:
    """A plain 9-layer CNN (about 50 MFLOPs at 128 px): stride-2 stem, four conv-conv stages, pooling."""

    def block(cin: int, cout: int, stride: int) -> list[torch.nn.Module]:
        return [
            torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(),
        ]

    layers = block(1, 16, 2)
    for cin, cout in ((16, 32), (32, 64), (64, 96), (96, 128)):
        layers += block(cin, cout, 1) + block(cout, cout, 2)
    return torch.nn.Sequential(
        *layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, outputs)
    )


def build_model(name: str, outputs: int) -> torch.nn.Module:
    if name == "resnet18":
        model = torchvision.models.resnet18(num_classes=outputs)
        model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return model
    return small_cnn(outputs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2500, help="images (the last 20%% validate)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", choices=["small", "resnet18"], default="small")
    parser.add_argument("--out", default="bench/results/synth_learnability.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    images, targets = build_arrays(args.n, args.size, args.seed)
    gen_s = time.perf_counter() - t0
    n_val = args.n // 5
    x_train, y_train = torch.from_numpy(images[:-n_val]), torch.from_numpy(targets[:-n_val])
    x_val, y_val = torch.from_numpy(images[-n_val:]), targets[-n_val:]
    model = build_model(args.model, len(COMPETITION_TASKS))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = args.epochs * ((len(x_train) + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    t1 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for start in tqdm(range(0, len(order), 32), desc=f"epoch {epoch + 1}", unit="batch"):
            idx = order[start : start + 32]
            batch = x_train[idx]
            if torch.rand(()) < 0.5:  # mild augmentation: brightness jitter
                batch = (batch * (0.9 + 0.2 * torch.rand(len(idx), 1, 1, 1))).clamp(0, 1)
            loss = loss_fn(model((batch - 0.5) / 0.25), y_train[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model((x_val[s : s + 64] - 0.5) / 0.25) for s in range(0, n_val, 64)]).numpy()
        aurocs = {t: float(roc_auc_score(y_val[:, k], scores[:, k])) for k, t in enumerate(COMPETITION_TASKS)}
        history.append({"epoch": epoch + 1, "train_loss": total / len(x_train), "val_auroc": aurocs})
        log.info("epoch %d loss %.4f AUROC %s", epoch + 1, total / len(x_train), json.dumps(aurocs))
    train_s = time.perf_counter() - t1
    final = history[-1]["val_auroc"]
    result = {
        "model": args.model + " CNN from scratch (see scripts/synth_learnability.py)",
        "n_images": args.n,
        "n_val": n_val,
        "size": args.size,
        "epochs": args.epochs,
        "seed": args.seed,
        "label_mapping": "U-Ones Atelectasis/Edema/Pleural Effusion, U-Zeros Cardiomegaly/Consolidation, "
        "blank 0",
        "val_positives": {t: int(y_val[:, k].sum()) for k, t in enumerate(COMPETITION_TASKS)},
        "val_auroc": final,
        "mean_auroc": float(np.mean(list(final.values()))),
        "history": history,
        "generate_seconds": round(gen_s, 1),
        "train_seconds": round(train_s, 1),
        "threads": args.threads,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%-18s %6s %8s", "finding", "AUROC", "val pos")
    for task in COMPETITION_TASKS:
        log.info("%-18s %6.3f %8d", task, final[task], result["val_positives"][task])
    log.info(
        f"mean AUROC {result['mean_auroc']:.3f}; generation {gen_s:.0f} s, training {train_s:.0f} s -> {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
