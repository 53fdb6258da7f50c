"""Zero-shot from precomputed features: legacy equals the release API, default is batch-independent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gloria.api import zero_shot_classification
from gloria.tasks import zero_shot as Z

# the tiny preset has 32 word slots: the release's legacy slice needs prompts of at most 31 characters
SHORT = {
    "Atelectasis": ["linear atelectasis", "trace atelectasis at base"],
    "Cardiomegaly": ["cardiomegaly unchanged", "heart size enlarged"],
    "Pleural Effusion": ["small left effusion", "bilateral pleural effusion", "trace effusion"],
}
PROMPTS = {
    "Atelectasis": ["mild linear atelectasis at the lung bases", "trace atelectasis at the left lung base"],
    "Cardiomegaly": ["cardiomegaly unchanged", "heart size is borderline enlarged"],
    "Pleural Effusion": ["small left pleural effusion", "bilateral pleural effusion", "trace effusion"],
}


@pytest.fixture()
def images(tiny_model):
    g = torch.Generator().manual_seed(1)
    return torch.randn(7, 3, 64, 64, generator=g)


def test_legacy_equals_the_release_api(tiny_model, images) -> None:
    prompts = Z.encode_class_prompts(tiny_model, SHORT)
    with torch.no_grad():
        feats = tiny_model.encode_images(images)
    ours = Z.zero_shot_scores(feats, prompts, tiny_model.config.alignment, legacy=True, chunk_size=3)
    api = zero_shot_classification(tiny_model, images, tiny_model.process_class_prompts(SHORT), legacy=True)
    assert list(api.columns) == list(SHORT)
    np.testing.assert_allclose(ours.numpy(), api.to_numpy(), rtol=1e-5, atol=1e-5)
    # and the release's z-scoring across images: every column has mean 0, population std 1
    np.testing.assert_allclose(ours.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(ours.std(0, correction=0).numpy(), 1, atol=1e-4)


def test_default_max_equals_api_and_is_batch_independent(tiny_model, images) -> None:
    prompts = Z.encode_class_prompts(tiny_model, PROMPTS)
    with torch.no_grad():
        feats = tiny_model.encode_images(images)
    cfg = tiny_model.config.alignment
    whole = Z.zero_shot_scores(feats, prompts, cfg)
    api = zero_shot_classification(tiny_model, images, tiny_model.process_class_prompts(PROMPTS))
    np.testing.assert_allclose(whole.numpy(), api.to_numpy(), rtol=1e-5, atol=1e-5)
    for ensemble in ("max", "mean"):
        full = Z.zero_shot_scores(feats, prompts, cfg, ensemble=ensemble, chunk_size=7)
        for i in (0, 4):
            one = type(feats)(regions=feats.regions[i : i + 1], embedding=feats.embedding[i : i + 1])
            torch.testing.assert_close(Z.zero_shot_scores(one, prompts, cfg, ensemble=ensemble)[0], full[i])
    # legacy is not batch independent: the same images scored in a smaller group get other scores
    short = Z.encode_class_prompts(tiny_model, SHORT)
    legacy_all = Z.zero_shot_scores(feats, short, cfg, legacy=True)
    legacy_sub = Z.zero_shot_scores(
        type(feats)(regions=feats.regions[:3], embedding=feats.embedding[:3]), short, cfg, legacy=True
    )
    assert not torch.allclose(legacy_sub, legacy_all[:3])


def test_pairs_are_probabilities_and_negatives_change_them(tiny_model, images) -> None:
    negatives = Z.default_negatives(list(PROMPTS))
    assert negatives["Pleural Effusion"] == ["no pleural effusion"]
    prompts = Z.encode_class_prompts(tiny_model, PROMPTS, negatives)
    with torch.no_grad():
        feats = tiny_model.encode_images(images)
    cfg = tiny_model.config.alignment
    pairs = Z.zero_shot_scores(feats, prompts, cfg, ensemble="pairs")
    assert pairs.shape == (7, 3) and bool(((pairs > 0) & (pairs < 1)).all())
    # max ignores the negatives entirely
    without = Z.zero_shot_scores(feats, Z.encode_class_prompts(tiny_model, PROMPTS), cfg)
    torch.testing.assert_close(Z.zero_shot_scores(feats, prompts, cfg), without)
    other = Z.encode_class_prompts(
        tiny_model, PROMPTS, Z.default_negatives(list(PROMPTS), "{finding} is absent")
    )
    assert not torch.allclose(Z.zero_shot_scores(feats, other, cfg, ensemble="pairs"), pairs)
    with pytest.raises(ValueError, match="needs negative prompts"):
        Z.zero_shot_scores(feats, Z.encode_class_prompts(tiny_model, PROMPTS), cfg, ensemble="pairs")
    partial = Z.encode_class_prompts(tiny_model, PROMPTS, {"Cardiomegaly": ["normal heart size"]})
    with pytest.raises(ValueError, match="'Atelectasis' needs positive and negative"):
        Z.zero_shot_scores(feats, partial, cfg, ensemble="pairs")
    with pytest.raises(ValueError, match="legacy"):
        Z.zero_shot_scores(feats, prompts, cfg, ensemble="mean", legacy=True)


def test_mean_ensemble_matches_a_plain_loop(tiny_model, images) -> None:
    from gloria.alignment.similarity import default_local_similarity

    prompts = Z.encode_class_prompts(tiny_model, PROMPTS)
    with torch.no_grad():
        feats = tiny_model.encode_images(images)
    cfg = tiny_model.config.alignment
    ours = Z.zero_shot_scores(feats, prompts, cfg, ensemble="mean")
    t = prompts.encoded.features
    for i in range(7):
        g, loc_list = [], []
        for c in range(3):
            sel = prompts.owner == c
            unit = torch.nn.functional.normalize(t.embedding[sel], dim=1).mean(0)
            g.append(torch.nn.functional.cosine_similarity(feats.embedding[i], unit, dim=0))
            loc = default_local_similarity(feats.regions[i : i + 1], t.words[sel], t.word_mask[sel], cfg)
            loc_list.append(loc.mean())
        g_t, l_t = torch.stack(g), torch.stack(loc_list)
        z = lambda x: (x - x.mean()) / x.std(correction=0)  # noqa: E731
        torch.testing.assert_close(ours[i], (z(g_t) + z(l_t)) / 2, rtol=1e-4, atol=1e-5)


def test_prompt_file_formats_and_errors(tmp_path: Path) -> None:
    plain = tmp_path / "p.yaml"
    plain.write_text("Edema:\n  - mild pulmonary edema\nCardiomegaly: enlarged heart\n")
    pos, neg = Z.load_prompt_file(plain)
    assert pos == {"Edema": ["mild pulmonary edema"], "Cardiomegaly": ["enlarged heart"]} and neg is None
    both = tmp_path / "p.json"
    both.write_text('{"positive": {"Edema": ["edema"]}, "negative": {"Edema": ["lungs are clear"]}}')
    assert Z.load_prompt_file(both) == ({"Edema": ["edema"]}, {"Edema": ["lungs are clear"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("Edema: []\n")
    with pytest.raises(ValueError, match="'Edema'"):
        Z.load_prompt_file(bad)


def test_evaluate_scores_numbers() -> None:
    scores = np.array([[2.0, 1.0], [0.5, 1.5], [1.0, 0.0], [0.2, 0.1]])
    labels = np.array([0, 1, 1, 0])
    out = Z.evaluate_scores(scores, labels, ["a", "b"], n_boot=50)
    assert out["accuracy"]["value"] == pytest.approx(0.75)  # type: ignore[index]
    assert out["confusion_matrix"] == [[2, 0], [1, 1]]
    # class a: positives scores 2.0, 0.2 vs negatives 0.5, 1.0 -> pairs (2>.5, 2>1, .2<.5, .2<1) = 0.5
    assert out["auroc"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}


def test_ece_by_hand() -> None:
    from gloria.tasks import metrics as M

    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    # bins of width 0.5: [0.5,1): all four; confidence mean .75, accuracy .75 -> 0; with 10 bins:
    # .9 bin: acc 1 conf .9 (.1); .8: acc 0 conf .8 (.8); .7: acc 1 (.3); .6: acc 1 (.4) -> (.1+.8+.3+.4)/4
    assert M.expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.0)
    assert M.expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)


def test_temperature_and_platt_calibration_recover_the_generating_scale() -> None:
    rng = np.random.default_rng(0)
    n, C = 3000, 3
    logits = rng.normal(size=(n, C)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(C, p=p) for p in probs])
    scores = logits * 5.0  # over-confident scores: the right temperature is 5
    cal = Z.Calibrator.fit(scores[:2000], labels[:2000], "temperature")
    assert float(cal.params.exp()) == pytest.approx(5.0, rel=0.1)
    out = cal(scores[2000:])
    np.testing.assert_array_equal(out.argmax(1), scores[2000:].argmax(1))
    from gloria.tasks import metrics as M

    raw = np.exp(scores[2000:] - scores[2000:].max(1, keepdims=True))
    raw /= raw.sum(1, keepdims=True)
    assert M.expected_calibration_error(out, labels[2000:]) < M.expected_calibration_error(raw, labels[2000:])
    platt = Z.Calibrator.fit(scores[:2000], labels[:2000], "platt")
    p = platt(scores[2000:])
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert M.expected_calibration_error(p, labels[2000:]) < M.expected_calibration_error(raw, labels[2000:])


def test_legacy_equals_the_release_formula_written_as_a_loop(tiny_model, images) -> None:
    """method.md 5: per prompt (local + global) / 2, release local; max per class; z-scored columns."""
    from support.alignment_reference import numpy_legacy_local

    prompts = Z.encode_class_prompts(tiny_model, SHORT)
    with torch.no_grad():
        feats = tiny_model.encode_images(images)
    t = prompts.encoded.features
    regions = feats.regions.double().numpy()
    local = numpy_legacy_local(regions, t.words.double().numpy(), prompts.encoded.cap_lens)
    img = feats.embedding.double().numpy()
    txt = t.embedding.double().numpy()
    glob = (img @ txt.T) / np.maximum(
        np.linalg.norm(img, axis=1)[:, None] * np.linalg.norm(txt, axis=1), 1e-8
    )
    both = (local + glob) / 2
    owner = prompts.owner.numpy()
    per_class = np.stack([both[:, owner == c].max(axis=1) for c in range(3)], axis=1)
    expected = (per_class - per_class.mean(0)) / per_class.std(0)
    ours = Z.zero_shot_scores(feats, prompts, tiny_model.config.alignment, legacy=True)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_fit_legacy_prompts_replaces_the_release_prompt_that_crashed_it() -> None:
    """The release's own default draw (seed 6) has an 85-character Cardiomegaly prompt: 63 word slots (a
    64-token text tower) cannot hold it. It is skipped and replaced by a fitting generator candidate."""
    from gloria.constants import class_prompt_vocabulary
    from gloria.model import release_cap_lens
    from gloria.prompts import class_prompt_candidates, generate_chexpert_class_prompts

    drawn = generate_chexpert_class_prompts(5, seed=6)
    spare = {name: class_prompt_candidates(parts) for name, parts in class_prompt_vocabulary().items()}
    kept, changes = Z.fit_legacy_prompts(drawn, 64, spare=spare, seed=6)
    too_long = {n: [t for t in ts if release_cap_lens([t])[0] > 63] for n, ts in drawn.items()}
    assert {n: c["skipped"] for n, c in changes.items()} == {n: t for n, t in too_long.items() if t}
    assert "Cardiomegaly" in changes
    for name, texts in kept.items():
        assert len(texts) == 5 and all(1 <= release_cap_lens([t])[0] <= 63 for t in texts)
        assert [t for t in drawn[name] if t in texts] == [t for t in drawn[name] if t not in too_long[name]]
        assert set(texts) - set(drawn[name]) == set(changes.get(name, {}).get("added", []))
        assert set(texts) <= set(spare[name])
    # without spare candidates the long prompt is only skipped; a class left empty is an error
    alone, changes = Z.fit_legacy_prompts({"Edema": ["edema", "x" * 40]}, 32)
    assert alone == {"Edema": ["edema"]} and changes == {"Edema": {"skipped": ["x" * 40], "added": []}}
    with pytest.raises(ValueError, match=r"'Edema'.*31 word slots"):
        Z.fit_legacy_prompts({"Edema": ["x" * 40]}, 32)
