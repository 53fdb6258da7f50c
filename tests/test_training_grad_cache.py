"""Gradient caching (training/grad_cache.py): k chunks give the losses and every parameter gradient of one
batch of k x B (global and local loss), on one process and composed with two gloo DDP processes."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from gloria.alignment.losses import gloria_objective
from gloria.alignment.options import LossOptions
from gloria.config import AlignmentConfig
from gloria.training.grad_cache import grad_cache_step, kept_batchnorm_statistics, split_batch
from gloria.training.objective import PretrainObjective
from support import ddp_loss_worker as worker


def _norm_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _plain_backward(surrogate: torch.Tensor, last: bool) -> None:
    surrogate.backward()


@pytest.mark.parametrize(("pairs", "chunks"), [(6, 2), (6, 3), (5, 2), (4, 4)])
@pytest.mark.parametrize("scale", [None, 10.0])
def test_chunks_equal_one_big_batch_losses_and_every_gradient(pairs, chunks, scale) -> None:
    cfg = AlignmentConfig(local_feature_scale=scale, local_weight=0.7, global_weight=1.3)
    inputs = worker.make_inputs(pairs)
    model = worker.make_model()
    full = gloria_objective(*model(inputs), cfg, LossOptions())
    full["loss"].backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    def loss(image, text):
        return gloria_objective(image, text, cfg, LossOptions(recompute=True))

    cached = grad_cache_step(model, loss, inputs, chunks, model, _plain_backward)
    assert set(cached) == set(full)
    for key, value in full.items():
        assert _norm_err(cached[key], value) < 1e-12, key
    for name, p in model.named_parameters():
        assert _norm_err(p.grad, expected[name]) < 1e-10, name
        assert bool(expected[name].abs().sum() > 0)


def test_tiny_gloria_in_eval_mode_equals_the_big_batch(tiny_model) -> None:
    """The real towers (ResNet-18 with BatchNorm in eval mode, 4-layer BERT without dropout), float32."""
    objective = PretrainObjective(tiny_model)
    texts = [
        "small left effusion",
        "heart size is normal",
        "no pneumothorax",
        "mild edema",
        "clear lungs",
        "x",
    ]
    batch = {"image": torch.randn(6, 3, 64, 64), "text": texts}
    full = objective(batch)
    full["loss"].backward()
    params = [(n, p) for n, p in tiny_model.named_parameters() if p.grad is not None]
    expected = {n: p.grad.clone() for n, p in params}
    tiny_model.zero_grad()
    cached = grad_cache_step(objective.encode, objective.loss, batch, 3, tiny_model, _plain_backward)
    for key in ("loss", "global_loss", "local_loss"):
        assert _norm_err(cached[key], full[key]) < 1e-5, key
    assert len(params) > 50
    every = torch.cat([expected[n].flatten() for n, _ in params])
    assert _norm_err(torch.cat([p.grad.flatten() for _, p in params]), every) < 1e-5
    for name, p in params:  # each parameter, except those whose gradient is zero but for rounding
        if float(expected[name].abs().max()) > 1e-6 * float(every.abs().max()):
            assert _norm_err(p.grad, expected[name]) < 1e-4, name


def test_batchnorm_statistics_move_once_per_chunk_not_in_the_graph_free_pass(tiny_model) -> None:
    """BatchNorm in training mode: the first (graph-free) pass leaves the running statistics alone; the
    second moves them once per chunk, each chunk normalised by its own statistics."""
    tiny_model.train()
    objective = PretrainObjective(tiny_model)
    batch = {"image": torch.randn(4, 3, 64, 64), "text": ["effusion", "edema", "normal", "clear"]}
    bn = tiny_model.img_encoder.model.bn1 if hasattr(tiny_model.img_encoder, "model") else None
    bn = bn or next(m for m in tiny_model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    start = bn.running_mean.clone()
    with kept_batchnorm_statistics(tiny_model), torch.no_grad():
        objective.encode(batch)
    assert torch.equal(bn.running_mean, start)
    grad_cache_step(objective.encode, objective.loss, batch, 2, tiny_model, _plain_backward)
    after = bn.running_mean.clone()
    bn.running_mean.copy_(start)
    bn.num_batches_tracked.zero_()
    with torch.no_grad():
        for part in split_batch(batch, 2):
            tiny_model.encode_images(part["image"])
    torch.testing.assert_close(after, bn.running_mean)


def test_split_batch_slices_per_pair_values_only() -> None:
    tokens = {"caption_ids": torch.arange(10).view(5, 2), "other": torch.zeros(3)}
    batch = {"image": torch.zeros(5, 1), "text": list("abcde"), "meta": "shared", "tokens": tokens}
    parts = split_batch(batch, 2)
    assert torch.equal(torch.cat([p["tokens"]["caption_ids"] for p in parts]), tokens["caption_ids"])
    assert all(p["tokens"]["other"] is tokens["other"] for p in parts)
    assert [len(p["image"]) for p in parts] == [2, 3] or [len(p["image"]) for p in parts] == [3, 2]
    assert [t for p in parts for t in p["text"]] == list("abcde")
    assert all(p["meta"] == "shared" for p in parts)
    with pytest.raises(ValueError, match="into 6 chunks"):
        split_batch(batch, 6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_with_grad_caching_equal_one_process(tmp_path) -> None:
    world, batch, chunks = 2, 4, 2
    args = (world, batch, str(tmp_path), _free_port(), chunks)
    mp.spawn(worker.run_grad_cache, args=args, nprocs=world, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    model = worker.make_model()
    full = gloria_objective(*model(worker.make_inputs(batch * world)), AlignmentConfig())
    full["loss"].backward()
    for key in ("loss", "global_loss", "local_loss", "local_i2t", "global_t2i"):
        mean = sum(res["losses"][key] for res in results) / world
        assert _norm_err(mean, full[key]) < 1e-10, key
    for name, p in model.named_parameters():
        for res in results:
            assert _norm_err(res["grads"][name], p.grad) < 1e-10, name


def test_pretrain_module_trains_by_grad_caching_under_lightning(tiny_config) -> None:
    """``trainer.grad_cache_chunks``: one Lightning step (manual optimisation, clipping in the module) gives
    the weights of ``grad_cache_step`` + clipping + Adam written out by hand."""
    import copy

    import lightning.pytorch as L
    from torch.utils.data import DataLoader

    from gloria.model import GLoRIA
    from gloria.training.experiment import OptimSection, SchedulerSection
    from gloria.training.optim import build_optimizer, parameter_groups
    from gloria.training.pretrain_module import PretrainModule, freeze_unused_pooler

    torch.manual_seed(0)
    model = GLoRIA(tiny_config)
    ref = copy.deepcopy(model).train()
    texts = ["small left effusion", "heart size is normal", "no pneumothorax", "mild edema"]
    batch = {"image": torch.randn(4, 3, 64, 64), "text": texts}
    optim = OptimSection(lr=1e-3)
    module = PretrainModule(
        model, optim, SchedulerSection(name="none"), grad_cache_chunks=2, gradient_clip_val=0.05
    )
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader([batch], batch_size=None))
    assert trainer.global_step == 1 and not module.automatic_optimization

    freeze_unused_pooler(ref)
    optimizer = build_optimizer(parameter_groups(ref, optim), optim)
    objective = PretrainObjective(ref)
    grad_cache_step(objective.encode, objective.loss, batch, 2, ref, _plain_backward)
    params = [p for p in ref.parameters() if p.grad is not None]
    total = torch.nn.utils.clip_grad_norm_(params, 0.05)
    assert float(total) > 0.05  # the clip did something
    optimizer.step()
    # Adam's first step hardly depends on the gradients' scale: compare the clipped gradients too
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
