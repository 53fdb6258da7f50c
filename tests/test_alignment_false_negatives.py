"""``loss.false_negatives: same_text`` in the one objective: identical texts of a batch are positives of
each other in the global and the local term, against a plain loop, on one process, two gloo processes and
by gradient caching; the option's validation."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.multiprocessing as mp

from gloria.alignment.attention import scaled_local_features
from gloria.alignment.losses import LOSS_KEYS, gloria_objective
from gloria.alignment.options import LossOptions
from gloria.alignment.targets import key_groups
from gloria.config import AlignmentConfig
from gloria.training.experiment import experiment_from_dict
from gloria.training.grad_cache import grad_cache_step
from gloria.training.objective import PretrainObjective
from support import ddp_loss_worker as worker

SAME_TEXT = LossOptions(false_negatives="same_text")


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-8)


def loop_scores(image, text, cfg: AlignmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The global and local [B, B] score matrices (row image i, column text k), pair by pair."""
    B, D = image.embedding.shape[0], image.regions.shape[1]
    rows_g, rows_l = [], []
    for i in range(B):
        V = image.regions[i].reshape(D, -1)  # [D, R]
        row_g, row_l = [], []
        for k in range(B):
            row_g.append(cfg.logit_temperature * _cos(image.embedding[i], text.embedding[k]))
            n = int(text.word_mask[k].sum())
            W = text.words[k][:, :n]  # [D, n]
            alpha = torch.softmax(cfg.attention_temperature * torch.softmax(V.t() @ W, dim=1), dim=0)
            c = V @ alpha  # [D, n]
            sims = torch.stack([_cos(W[:, j], c[:, j]) for j in range(n)])
            row_l.append(cfg.logit_temperature * torch.log(torch.exp(cfg.word_temperature * sims).sum()))
        rows_g.append(torch.stack(row_g))
        rows_l.append(torch.stack(row_l))
    return torch.stack(rows_g), torch.stack(rows_l)


def loop_ce(S: torch.Tensor, groups: list[int]) -> torch.Tensor:
    """From the definition: mean over rows i of -sum_{j in i's group} log softmax(S[i])_j / |group|."""
    B = len(groups)
    total = S.new_zeros(())
    for i in range(B):
        log_norm = torch.log(sum(torch.exp(S[i, j]) for j in range(B)))
        positives = [j for j in range(B) if groups[j] == groups[i]]
        total = total - sum(S[i, j] - log_norm for j in positives) / len(positives)
    return total / B


def loop_objective(image, text, cfg: AlignmentConfig, groups: list[int]) -> dict[str, torch.Tensor]:
    Sg, Sl = loop_scores(image, text, cfg)
    g = loop_ce(Sg, groups) + loop_ce(Sg.t(), groups)
    loc = loop_ce(Sl, groups) + loop_ce(Sl.t(), groups)
    return {"loss": cfg.local_weight * loc + cfg.global_weight * g, "global_loss": g, "local_loss": loc}


def _norm_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _keys(groups: list[int], width: int = 4) -> torch.Tensor:
    """[B, width] token-id-like keys, equal rows exactly where ``groups`` match."""
    return torch.tensor(groups).unsqueeze(1) * 7 + torch.arange(width)


def test_key_groups_are_equal_exactly_on_equal_rows() -> None:
    ids = key_groups(torch.tensor([[5, 1, 0], [5, 1, 0], [5, 2, 0], [1, 5, 0]]))
    assert ids[0] == ids[1] and len({int(ids[0]), int(ids[2]), int(ids[3])}) == 3
    assert key_groups(torch.tensor([3, 1, 3])).tolist()[0] == key_groups(torch.tensor([3, 1, 3])).tolist()[2]
    with pytest.raises(ValueError, match="integers"):
        key_groups(torch.zeros(3, 2))


def test_distinct_texts_equal_none_bit_for_bit() -> None:
    cfg = AlignmentConfig(local_feature_scale=10.0)
    inputs = worker.make_inputs(5)
    model = worker.make_model()
    base = gloria_objective(*model(inputs), cfg, LossOptions())
    base_grads = torch.autograd.grad(base["loss"], list(model.parameters()))
    ours = gloria_objective(*model(inputs), cfg, SAME_TEXT, groups=_keys([0, 1, 2, 3, 4]))
    grads = torch.autograd.grad(ours["loss"], list(model.parameters()))
    for key in LOSS_KEYS:
        assert torch.equal(ours[key], base[key]), key
    for a, b in zip(grads, base_grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [None, 10.0])
def test_duplicates_equal_a_plain_loop_values_and_gradients(scale) -> None:
    cfg = AlignmentConfig(local_feature_scale=scale, local_weight=0.7, global_weight=1.3)
    groups = [0, 1, 0, 2, 1, 0]  # three copies of text 0, two of text 1
    inputs = worker.make_inputs(6)
    model = worker.make_model()
    ours = gloria_objective(*model(inputs), cfg, SAME_TEXT, groups=_keys(groups))
    grads = torch.autograd.grad(ours["loss"], list(model.parameters()))
    image, text = model(inputs)
    # the loop takes the local features as the local term sees them (unit length x sqrt(scale))
    image.regions = scaled_local_features(image.regions, scale)
    text.words = scaled_local_features(text.words, scale)
    ref = loop_objective(image, text, cfg, groups)
    ref_grads = torch.autograd.grad(ref["loss"], list(model.parameters()))
    for key in ("loss", "global_loss", "local_loss"):
        assert _norm_err(ours[key], ref[key]) < 1e-10, key
    for g, r in zip(grads, ref_grads):
        assert bool(r.abs().sum() > 0) and _norm_err(g, r) < 1e-8
    plain = gloria_objective(*model(inputs), cfg, LossOptions())
    for key in ("global_loss", "local_loss"):  # the targets matter in both terms
        assert abs(float(plain[key].detach() - ours[key].detach())) > 1e-3, key


def test_options_and_inputs_that_do_not_fit_raise() -> None:
    cfg = AlignmentConfig()
    image, text = worker.make_model()(worker.make_inputs(3))
    with pytest.raises(ValueError, match="needs the batch's group keys"):
        gloria_objective(image, text, cfg, SAME_TEXT)
    with pytest.raises(ValueError, match="false_negatives is 'none'"):
        gloria_objective(image, text, cfg, LossOptions(), groups=_keys([0, 0, 1]))
    with pytest.raises(ValueError, match="3 pairs but group keys"):
        gloria_objective(image, text, cfg, SAME_TEXT, groups=_keys([0, 0]))
    with pytest.raises(ValueError, match="pick one"):
        gloria_objective(image, text, cfg, SAME_TEXT, groups=_keys([0, 0, 1]), targets=torch.eye(3))
    with pytest.raises(ValueError, match=r"'loss\.false_negatives'"):
        LossOptions(false_negatives="same_labels")  # type: ignore[arg-type]


def test_experiment_validates_the_key() -> None:
    data = {"task": "pretrain", "data": {"train_csv": "x.csv"}}
    assert experiment_from_dict(data).loss.false_negatives == "none"
    on = experiment_from_dict({**data, "loss": {"false_negatives": "same_text"}})
    assert on.loss.false_negatives == "same_text"
    with pytest.raises(ValueError, match=r"'loss\.false_negatives' must be one of \['none', 'same_text'\]"):
        experiment_from_dict({**data, "loss": {"false_negatives": "same_report"}})


def test_pretrain_objective_groups_identical_cleaned_texts(tiny_model) -> None:
    """The keys are the token ids the text encoder sees: texts equal after cleaning share a group."""
    objective = PretrainObjective(tiny_model, SAME_TEXT)
    texts = ["Small left effusion.", "small left effusion", "no pneumothorax", "mild edema"]
    batch = {"image": torch.randn(4, 3, 64, 64), "text": texts}
    ids = key_groups(objective.groups(batch))
    assert ids[0] == ids[1] and len(set(ids.tolist())) == 3
    assert PretrainObjective(tiny_model).groups(batch) is None
    tokens = tiny_model.process_text(texts)
    torch.testing.assert_close(objective(batch)["loss"], objective({**batch, **tokens})["loss"])
    image, text = objective.encode(batch)
    expected = gloria_objective(image, text, tiny_model.alignment, SAME_TEXT, groups=_keys([0, 0, 1, 2]))
    torch.testing.assert_close(objective.loss(image, text, objective.groups(batch))["loss"], expected["loss"])


def test_grad_caching_equals_one_big_batch() -> None:
    cfg = AlignmentConfig(local_feature_scale=10.0)
    groups = _keys([0, 1, 0, 2, 1, 3])
    inputs = worker.make_inputs(6)
    model = worker.make_model()
    full = gloria_objective(*model(inputs), cfg, SAME_TEXT, groups=groups)
    full["loss"].backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    def loss(image, text):
        return gloria_objective(image, text, cfg, SAME_TEXT, groups=groups)

    cached = grad_cache_step(model, loss, inputs, 3, model, lambda surrogate, last: surrogate.backward())
    for key, value in full.items():
        assert _norm_err(cached[key], value) < 1e-12, key
    for name, p in model.named_parameters():
        assert _norm_err(p.grad, expected[name]) < 1e-10, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_gather_the_groups(tmp_path) -> None:
    """Copies of one text on both ranks: the gathered keys make them positives across processes."""
    world, batch = 2, 3
    groups = [0, 1, 2, 0, 3, 1]  # rank 0 holds pairs 0..2, rank 1 pairs 3..5
    keys = _keys(groups)
    mp.spawn(worker.run, args=(world, batch, str(tmp_path), _free_port(), keys), nprocs=world)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    model = worker.make_model()
    full = gloria_objective(
        *model(worker.make_inputs(batch * world)), AlignmentConfig(), SAME_TEXT, groups=keys
    )
    full["loss"].backward()
    for key in ("loss", "global_loss", "local_loss"):
        mean = sum(res["losses"][key] for res in results) / world
        assert _norm_err(mean, full[key].detach()) < 1e-10, key
    for name, p in model.named_parameters():
        for res in results:
            assert _norm_err(res["grads"][name], p.grad) < 1e-10, name
    alone = gloria_objective(*model(worker.make_inputs(batch * world)), AlignmentConfig(), LossOptions())
    assert not math.isclose(float(alone["loss"].detach()), float(full["loss"].detach()))
