"""Demo pieces without training: prompt choice, the headline table, a failing late stage keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gloria.demo import figures, pipeline, stages
from gloria.demo.prompts import DEMO_PROMPTS, choose_prompts, corpus_vocabulary
from gloria.demo.run import DemoRun
from gloria.demo.settings import SIZES, demo_settings
from gloria.demo.summary import headline_rows, terminal_summary


def test_release_prompts_kept_only_when_their_words_occur_in_the_reports() -> None:
    vocab = corpus_vocabulary(["Mild pulmonary edema.", "Small left pleural effusion."])
    chosen = choose_prompts(["Edema", "Cardiomegaly"], vocab, n=3, seed=0)
    assert chosen.source == {"Edema": "release", "Cardiomegaly": "demo"}
    assert chosen.fitting["Cardiomegaly"] == 0 and chosen.fitting["Edema"] >= 2
    assert all(set(p.lower().split()) <= vocab for p in chosen.prompts["Edema"])
    assert chosen.prompts["Cardiomegaly"] == DEMO_PROMPTS["Cardiomegaly"][:3]
    assert choose_prompts(["Edema"], vocab, n=3, seed=0).prompts == {"Edema": chosen.prompts["Edema"]}


def test_headline_rows_pick_each_stage_and_the_better_prior() -> None:
    acc = {"pretrained": {"accuracy": {"value": 0.6}}, "random_init": {"accuracy": {"value": 0.2}}}
    probe = {
        "pretrained": {"0.01": {"mean_auroc": 0.7}, "1": {"mean_auroc": 0.9}},
        "random_init": {"0.01": {"mean_auroc": 0.5}, "1": {"mean_auroc": 0.6}},
    }
    pointing = {"two_stage": 0.4, "prior_class": 0.3, "prior_class_side_level": 0.5, "random": 0.1}
    results = {
        "zero_shot": {**acc, "chance": 0.25},
        "probe": {"fractions": [0.01, 1.0], **probe},
        "grounding": {"pretrained": {k: {"pointing": v} for k, v in pointing.items()}},
    }
    rows = {r["metric"]: r for r in headline_rows(results)}
    assert rows["zero-shot accuracy"]["GLoRIA pretrained"] == 0.6
    assert rows["zero-shot accuracy"]["image-blind baseline"] == 0.25
    assert rows["linear probe mean AUROC, 1% labels"]["random init"] == 0.5
    assert rows["linear probe mean AUROC, 100% labels"]["GLoRIA pretrained"] == 0.9
    assert rows["grounding pointing game (attention)"]["image-blind baseline"] == 0.5
    assert rows["grounding pointing game, random map"]["image-blind baseline"] == 0.1
    assert "segmentation Dice (test)" not in rows  # a stage not run yet has no row
    assert "segmentation Dice, test images with a mask" not in rows
    text = terminal_summary({**results, "timings": {"synth": 1.0}}, "out")
    assert "0.600" in text and "out/report.md" in text and len(text.splitlines()) < 25
    seg = {
        m: {"test_metrics": {"test_dice": d, "test_dice_positive": p}}
        for m, d, p in (("pretrained", 0.93, 0.8), ("random_init", 0.9, 0.3))
    }
    rows = {r["metric"]: r for r in headline_rows({"segmentation": {**seg, "empty_prediction_dice": 0.88}})}
    assert rows["segmentation Dice (test)"]["image-blind baseline"] == 0.88
    positive = rows["segmentation Dice, test images with a mask"]
    assert (positive["GLoRIA pretrained"], positive["random init"], positive["image-blind baseline"]) == (
        0.8,
        0.3,
        0.0,
    )


def test_a_failing_late_stage_keeps_earlier_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def first(run: DemoRun) -> None:
        run.results["zero_shot"] = {"pretrained": {"accuracy": {"value": 0.75}}}

    def late(run: DemoRun) -> None:
        raise RuntimeError("disk full")

    def never(run: DemoRun) -> None:
        run.results["probe"] = {"fractions": []}

    monkeypatch.setattr(
        stages, "STAGES", (("first", first, True), ("late", late, False), ("after", never, False))
    )
    run = pipeline.run_demo(SIZES["smoke"], out=tmp_path, seed=3)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["failed"] == {"late": "RuntimeError: disk full"}
    assert saved["zero_shot"]["pretrained"]["accuracy"]["value"] == 0.75
    assert "probe" in saved and list(saved["timings"]) == ["first", "late", "after"]
    assert "disk full" in (tmp_path / "report.md").read_text() and run.results["seed"] == 3


def test_an_essential_stage_failure_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(run: DemoRun) -> None:
        raise ValueError("no data")

    def later(run: DemoRun) -> None:
        raise AssertionError("must not run")

    monkeypatch.setattr(stages, "STAGES", (("synth", broken, True), ("zero_shot", later, False)))
    run = pipeline.run_demo(SIZES["smoke"], out=tmp_path, seed=0)
    assert list(run.results["timings"]) == ["synth"] and "synth" in run.results["failed"]


def test_settings_replace_preset_and_device_and_reject_unknown_sizes() -> None:
    s = demo_settings("quick", preset="small", device="cuda")
    assert (s.preset, s.device, s.n_images) == ("small", "cuda", SIZES["quick"].n_images)
    with pytest.raises(ValueError, match="unknown demo size"):
        demo_settings("huge")


def test_mask_dice_and_the_segmentation_picture() -> None:
    truth = np.zeros((8, 8), dtype=bool)
    truth[2:4, 2:4] = True  # 4 pixels
    pred = np.zeros_like(truth)
    pred[2:4, 3:5] = True  # 4 pixels, 2 shared -> 2*2/8
    assert figures.dice(pred, truth) == 0.5
    assert figures.dice(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    assert figures.dice(np.zeros_like(truth), truth) == 0.0
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    predictions = {"a": [pred, truth], "b": [truth, pred]}
    fig = figures.segmentation_examples([image, image], [truth, truth], predictions)
    axes = fig.get_axes()
    assert len(axes) == 6  # two rows of image + two predictions
    assert [ax.get_title() for ax in axes[:3]] == ["image, true mask", "a: Dice 0.50", "b: Dice 1.00"]
    assert axes[4].get_title() == "a: Dice 1.00"
