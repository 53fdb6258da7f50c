"""Gathered global + local GLoRIA loss: plain-loop reference, and 2 gloo processes == 1 process on the
concatenated batch (losses and DDP-averaged parameter gradients)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from gloria.alignment.losses import word_mask_from_counts
from gloria.config import AlignmentConfig
from gloria.training.distributed import (
    block_contrastive_terms,
    gather_with_grad,
    gathered_gloria_loss,
)
from support import ddp_loss_worker as worker


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-8)


def loop_loss(image, text, cfg: AlignmentConfig) -> dict[str, torch.Tensor]:
    """method.md section 4 written as plain loops over (image i, text k) pairs."""
    B = image.embedding.shape[0]
    D = image.regions.shape[1]
    rows_g, rows_l = [], []
    for i in range(B):
        row_g, row_l = [], []
        V = image.regions[i].reshape(D, -1)  # [D, R]
        for k in range(B):
            row_g.append(cfg.logit_temperature * _cos(image.embedding[i], text.embedding[k]))
            n = int(text.word_mask[k].sum())
            W = text.words[k][:, :n]  # [D, n]
            a = V.t() @ W  # [R, n]
            p = torch.softmax(a, dim=1)  # over words
            alpha = torch.softmax(cfg.attention_temperature * p, dim=0)  # over regions
            c = V @ alpha  # [D, n]
            sims = torch.stack([_cos(W[:, j], c[:, j]) for j in range(n)])
            z = torch.log(torch.exp(cfg.word_temperature * sims).sum())
            row_l.append(cfg.logit_temperature * z)
        rows_g.append(torch.stack(row_g))
        rows_l.append(torch.stack(row_l))
    Sg, Sl = torch.stack(rows_g), torch.stack(rows_l)
    t = torch.arange(B)
    g = F.cross_entropy(Sg, t) + F.cross_entropy(Sg.t(), t)
    loc = F.cross_entropy(Sl, t) + F.cross_entropy(Sl.t(), t)
    return {"loss": g + loc, "global_loss": g, "local_loss": loc}


def _norm_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def test_one_process_matches_plain_loop_values_and_gradients() -> None:
    cfg = AlignmentConfig()
    inputs = worker.make_inputs(5)
    model = worker.make_model()
    ours = gathered_gloria_loss(*model(inputs), cfg)
    grads = torch.autograd.grad(ours["loss"], list(model.parameters()))
    ref = loop_loss(*model(inputs), cfg)
    ref_grads = torch.autograd.grad(ref["loss"], list(model.parameters()))
    for key in ("loss", "global_loss", "local_loss"):
        assert _norm_err(ours[key], ref[key]) < 1e-8, key
    for g, r in zip(grads, ref_grads):
        assert _norm_err(g, r) < 1e-8
    assert torch.isfinite(ours["loss"]) and float(ours["local_loss"]) > 0.0


def test_legacy_word_counts_select_slots_0_to_n() -> None:
    counts = torch.tensor([0, 2, 4])
    mask = word_mask_from_counts(counts, 5)
    assert mask.sum(dim=1).tolist() == [1, 3, 5]
    assert mask[1].tolist() == [True, True, True, False, False]


def test_block_terms_on_full_matrix_are_plain_cross_entropy() -> None:
    S = torch.randn(4, 4, dtype=torch.float64)
    t = torch.arange(4)
    i2t, t2i = block_contrastive_terms(S, S, 0)
    assert torch.allclose(i2t, F.cross_entropy(S, t)) and torch.allclose(t2i, F.cross_entropy(S.t(), t))
    # rank 1 of 2 with B=2: rows 2..3 and columns 2..3, targets offset by 2
    i2t, t2i = block_contrastive_terms(S[2:], S[:, 2:], 2)
    assert torch.allclose(i2t, F.cross_entropy(S[2:], t[2:]))
    assert torch.allclose(t2i, F.cross_entropy(S.t()[2:], t[2:]))
    with pytest.raises(ValueError, match="do not match"):
        block_contrastive_terms(S[2:], S[:, 1:], 2)


def test_gather_is_identity_without_process_group() -> None:
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_equal_one_process_on_concatenated_batch(tmp_path) -> None:
    world, batch = 2, 3
    mp.spawn(worker.run, args=(world, batch, str(tmp_path), _free_port()), nprocs=world, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]

    model = worker.make_model()
    full = gathered_gloria_loss(*model(worker.make_inputs(batch * world)), AlignmentConfig())
    full["loss"].backward()
    for key in ("loss", "global_loss", "local_loss"):
        mean = sum(res["losses"][key] for res in results) / world
        assert _norm_err(mean, full[key].detach()) < 1e-10, key
    # each rank's loss differs (its own rows/columns) but DDP leaves every rank with the full gradient
    assert not torch.allclose(results[0]["losses"]["loss"], results[1]["losses"]["loss"])
    for name, p in model.named_parameters():
        for res in results:
            assert _norm_err(res["grads"][name], p.grad) < 1e-10, name
