"""Benchmark: GLoRIA pretraining steps on CPU, tiny and release-size models, and the loss at the release's
batch of 48: the release's structure (a Python loop over the B texts, words repeated over the B images)
next to ours (one batched block computation, ``gathered_gloria_loss``).

Each measurement runs in a fresh process with one intra-op thread (the box is shared; peak RSS from VmHWM
is then per measurement). Train step = encode images + texts, loss, backward, Adam step; its time is split
into encoders (forward + backward), local loss (forward + backward) and the rest.
Prints a table and writes bench/results/train.json.

    python bench/bench_train.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gloria import provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

SENTENCES = [
    "small left pleural effusion with adjacent atelectasis",
    "heart size is mildly enlarged",
    "no pneumothorax is seen",
    "patchy consolidation in the right lower lobe concerning for pneumonia",
    "mild pulmonary edema with interstitial markings",
    "endotracheal tube terminates above the carina",
]


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - non-Linux


def _release_size_config() -> Any:
    """ResNet-50 with the 299-px input resize + a random BERT-base-size text model (12 x 768)."""
    from gloria.config import TINY_VOCAB, GloriaConfig, ImageEncoderConfig, TextEncoderConfig

    bert = {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
    }
    return GloriaConfig(
        image=ImageEncoderConfig(backbone="resnet50", input_resize=299),
        text=TextEncoderConfig(
            model="base-size-random", bert_config=bert, vocab_file=TINY_VOCAB, do_lower_case=True
        ),
    )


def _train_steps(size: str, batch: int, steps: int, queue: Any) -> None:
    """Fresh process: ``steps`` timed pretraining steps (after one warm-up) of the ``size`` model."""
    import logging

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from gloria.config import AlignmentConfig, tiny_config
    from gloria.model import GLoRIA
    from gloria.training.distributed import gathered_gloria_loss

    cfg = tiny_config() if size == "tiny" else _release_size_config()
    model = GLoRIA(cfg).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.5, 0.999), weight_decay=1e-6)
    crop = cfg.transforms.crop_size
    images = torch.randn(batch, 3, crop, crop)
    tokens = model.process_text([SENTENCES[i % len(SENTENCES)] for i in range(batch)], "cpu")
    local_only = AlignmentConfig(global_weight=0.0)
    base = _peak_rss_mib()
    times: dict[str, list[float]] = {"step": [], "encoders": [], "local_loss": [], "other_loss": []}
    for step in range(steps + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        image = model.encode_images(images)
        text = model.encode_texts(tokens)
        t1 = time.perf_counter()
        outputs = [image.regions, image.embedding, text.words, text.embedding]
        leaves = [t.detach().requires_grad_() for t in outputs]
        img_f = type(image)(regions=leaves[0], embedding=leaves[1])
        txt_f = type(text)(leaves[2], leaves[3], text.word_mask, text.legacy_word_counts, text.word_strings)
        t2 = time.perf_counter()
        gathered_gloria_loss(img_f, txt_f, local_only)["local_loss"].backward()
        t3 = time.perf_counter()
        for leaf in leaves:
            leaf.grad = None
        losses = gathered_gloria_loss(img_f, txt_f, model.alignment)
        losses["loss"].backward()
        t4 = time.perf_counter()
        torch.autograd.backward(outputs, [leaf.grad for leaf in leaves])
        optimizer.step()
        t5 = time.perf_counter()
        if step == 0:
            continue  # warm-up
        times["step"].append(t5 - t0 - (t3 - t2))  # the extra local-only pass is not part of a step
        times["encoders"].append((t1 - t0) + (t5 - t4))
        times["local_loss"].append(t3 - t2)
        times["other_loss"].append((t4 - t3) - (t3 - t2))
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    queue.put(
        {
            "model": size,
            "batch": batch,
            "steps": steps,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "seconds_per_step": mean["step"],
            "steps_per_s": 1.0 / mean["step"],
            "local_loss_share": mean["local_loss"] / mean["step"],
            "encoder_share": mean["encoders"] / mean["step"],
            "peak_rss_mib": _peak_rss_mib(),
            "rss_before_mib": base,
            "loss": float(losses["loss"]),
        }
    )


def release_style_local_loss(
    regions: torch.Tensor, words: torch.Tensor, counts: list[int], cfg: Any
) -> torch.Tensor:
    """The release's structure, written from method.md 4: for each text k (a Python loop), its words
    repeated over the B images, two-stage attention, cosine per word, log-sum-exp -> column k of S."""
    B, D = regions.shape[:2]
    values = regions.reshape(B, D, -1)  # [B, D, R]
    columns = []
    for k in range(B):
        w = words[k, :, : counts[k] + 1].unsqueeze(0).expand(B, -1, -1)  # [B, D, n]
        a = torch.bmm(values.transpose(1, 2), w)  # [B, R, n]
        p = a.softmax(dim=2)
        alpha = (cfg.attention_temperature * p).softmax(dim=1)
        context = torch.bmm(values, alpha)  # [B, D, n]
        cos = (w * context).sum(1) / (w.norm(dim=1) * context.norm(dim=1)).clamp_min(1e-8)  # [B, n]
        columns.append(torch.logsumexp(cfg.word_temperature * cos, dim=1))
    S = cfg.logit_temperature * torch.stack(columns, dim=1)  # [B images, B texts]
    target = torch.arange(B)
    return F.cross_entropy(S, target) + F.cross_entropy(S.t(), target)


def _loss_only(kind: str, batch: int, repeats: int, queue: Any) -> None:
    """Fresh process: local loss forward + backward at the release's sizes (D 768, 19 x 19, T 97)."""
    torch.set_num_threads(1)
    from gloria.config import AlignmentConfig
    from gloria.training.distributed import gathered_gloria_loss
    from gloria.types import ImageFeatures, TextFeatures

    cfg = AlignmentConfig(global_weight=0.0)
    g = torch.Generator().manual_seed(0)
    D, h, T = 768, 19, 97
    counts = torch.randint(6, 20, (batch,), generator=g)
    mask = torch.arange(T).unsqueeze(0) <= counts.unsqueeze(1)
    regions = torch.randn(batch, D, h, h, generator=g).requires_grad_()
    words = (torch.randn(batch, D, T, generator=g) * mask.unsqueeze(1)).requires_grad_()
    base = _peak_rss_mib()
    seconds = []
    value = 0.0
    for _ in range(repeats):
        regions.grad = words.grad = None
        t0 = time.perf_counter()
        if kind == "release_loop":
            loss = release_style_local_loss(regions, words, counts.tolist(), cfg)
        else:
            image = ImageFeatures(regions=regions, embedding=torch.randn(batch, D, generator=g))
            text = TextFeatures(words, torch.randn(batch, D, generator=g), mask, counts, [])
            loss = gathered_gloria_loss(image, text, cfg)["local_loss"]
        loss.backward()
        seconds.append(time.perf_counter() - t0)
        value = float(loss.detach())
    queue.put(
        {
            "kind": kind,
            "batch": batch,
            "seconds": min(seconds),
            "peak_rss_mib": _peak_rss_mib(),
            "rss_before_mib": base,
            "loss": value,
            "grad_norm_regions": float(regions.grad.norm()) if regions.grad is not None else float("nan"),
        }
    )


def _in_fresh_process(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=1800)
    proc.join()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, smaller release-size batch")
    args = parser.parse_args(argv)
    meta = provenance.start(1)
    steps = 2 if args.quick else 3
    release_batch = 4 if args.quick else 8
    train = [
        _in_fresh_process(_train_steps, "tiny", 16, steps),
        _in_fresh_process(_train_steps, "release_size", release_batch, steps),
    ]
    loss_batch = 16 if args.quick else 48
    ref = _in_fresh_process(_loss_only, "release_loop", loss_batch, 1 if not args.quick else 2)
    ours = _in_fresh_process(_loss_only, "ours_batched", loss_batch, 2)
    ratio = ref["seconds"] / ours["seconds"]
    agree = abs(ref["loss"] - ours["loss"]) / max(abs(ref["loss"]), 1e-12)

    header = ("model", "B", "params M", "s/step", "steps/s", "local %", "enc %", "RSS MiB")
    print(f"{header[0]:<14}{header[1]:>4}" + "".join(f"{h:>10}" for h in header[2:]))
    for r in train:
        print(
            f"{r['model']:<14}{r['batch']:>4}{r['params_m']:>10.1f}{r['seconds_per_step']:>10.3f}"
            f"{r['steps_per_s']:>10.3f}{100 * r['local_loss_share']:>10.1f}{100 * r['encoder_share']:>10.1f}"
            f"{r['peak_rss_mib']:>10.0f}"
        )
    print(f"\nlocal loss fwd+bwd at D=768, 19x19 regions, T=97, B={loss_batch}:")
    print(f"{'':<16}{'seconds':>9}{'peak RSS MiB':>14}{'loss':>12}")
    for r in (ref, ours):
        print(f"{r['kind']:<16}{r['seconds']:>9.3f}{r['peak_rss_mib']:>14.0f}{r['loss']:>12.5f}")
    print(f"ratio (release loop / ours): {ratio:.2f}x; relative loss difference {agree:.1e}")

    out = {
        "quick": args.quick,
        "threads": 1,
        "note": (
            "CPU, one intra-op thread per fresh process on a shared 2-core box; release-size train steps use "
            f"B={release_batch}, not the release's 48 (a B=48 ResNet-50 step takes minutes here); the loss "
            f"comparison uses B={loss_batch}."
        ),
        "train_steps": train,
        "local_loss": {
            "release_loop": ref,
            "ours": ours,
            "speedup": ratio,
            "relative_loss_difference": agree,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    provenance.write(RESULTS / "train.json", out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
