"""``gloria demo`` end to end at the hidden ``--smoke`` size through ``gloria.cli.main.main``: every stage
runs, one report with pictures, finite numbers; the same seed twice gives the same numbers (slow)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from gloria.cli.main import main
from support.scratch import scratch_dir

STAGES = ["synth", "pretrain", "zero_shot", "retrieval", "probe", "segmentation", "grounding", "benchmark",
          "learning_curve"]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


def run_smoke(out: Path, seed: int = 0) -> tuple[int, dict[str, Any]]:
    threads = torch.get_num_threads()
    try:  # one thread: on a shared 2-core box two spinning OpenMP threads are much slower
        rc = main(["demo", "--smoke", "--out", str(out), "--seed", str(seed), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    return rc, json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, dict[str, Any]]]:
    with scratch_dir(tmp_path_factory, "demo") as root:  # ~600 MB of checkpoints, gone after the module
        out = root / "out"
        rc, results = run_smoke(out)
        yield rc, out, results


def numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf by its key path, leaving out the machine's readings (timings, load average)."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "timings" or key.startswith("load_average"):
                continue
            out.update(numbers(value, f"{prefix}/{key}"))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.update(numbers(value, f"{prefix}[{i}]"))
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        out[prefix] = float(tree)
    return out


def test_smoke_demo_writes_one_report_with_pictures(smoke: tuple[int, Path, dict[str, Any]]) -> None:
    rc, out, results = smoke
    assert rc == 0 and results["failed"] == {}
    assert list(results["timings"]) == STAGES
    report = (out / "report.md").read_text()
    assert report.startswith("# GLoRIA demo on SynthCXR")
    for heading in (
        "## Results",
        "## 1. Data",
        "## 3. Zero-shot",
        "## 5. Linear probe",
        "## 6. Segmentation",
        "## 7. Word-to-region",
        "## 8. The benchmark suite",
    ):
        assert heading in report
    linked = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    names = {Path(p).name for p in linked}
    assert {"examples.png", "pretrain_loss.png", "probe_auroc.png", "attention_0.png"} <= names
    assert "segmentation_examples.png" in names
    assert any(n.endswith("_roc.png") for n in names)
    for rel in linked:  # every picture the report shows exists and is a real PNG
        data = (out / rel).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, rel


def test_smoke_demo_keeps_only_the_checkpoints_a_user_needs(smoke: tuple[int, Path, dict[str, Any]]) -> None:
    """No last.ckpt (optimiser state, only for resuming); the best checkpoints hold weights only; the
    pretrained model's checkpoint, the one a user reuses, is kept."""
    _, out, results = smoke
    kept = sorted((out / "runs").rglob("*.ckpt"))
    assert kept and not [p for p in kept if p.name == "last.ckpt"]
    for path in kept:
        assert "optimizer_states" not in torch.load(path, map_location="cpu", weights_only=True), path
    assert Path(results["pretrain"]["checkpoint"]) in kept


def test_smoke_demo_report_reads_its_tables_and_says_how_to_reuse_the_model(
    smoke: tuple[int, Path, dict[str, Any]],
) -> None:
    _, out, results = smoke
    report = (out / "report.md").read_text()
    assert report.count("**Reading.**") >= 6  # zero-shot, retrieval, probe, segmentation, grounding, suite
    assert "always answering the largest class scores" in report and "macro F1" in report
    assert "the top text is a" in report  # the retrieval hub is measured
    assert "## Reuse the trained model" in report and "gloria zero-shot --model" in report
    import gloria

    model = gloria.load_gloria(results["pretrain"]["model_dir"])  # the reuse commands' model loads
    assert model.config.image.backbone
    assert results["pretrain"]["val_loss_curve"] and results["threads"] == 1
    assert results["probe"]["over_seeds"]["pretrained"]


def test_smoke_demo_numbers_are_finite_and_in_range(smoke: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, results = smoke
    for model in ("pretrained", "random_init"):
        zs = results["zero_shot"][model]
        assert 0.0 <= zs["accuracy"]["value"] <= 1.0
        assert len(zs["confusion_matrix"]) == len(zs["classes"]) >= 2
        rows = results["retrieval"][model]
        assert len(rows) == 4 and all(0.0 <= v <= 1.0 for r in rows for v in r["precision_at_k"].values())
        probe = results["probe"][model]
        assert [probe[k]["train_images"] for k in ("0.01", "0.1", "1")] == sorted(
            probe[k]["train_images"] for k in ("0.01", "0.1", "1")
        )
        assert all(0.0 <= probe[k]["mean_auroc"] <= 1.0 for k in probe)
        seg = results["segmentation"][model]["test_metrics"]
        assert 0.0 <= seg["test_dice"] <= 1.0 and 0.0 <= seg["test_dice_positive"] <= 1.0
        grounding = results["grounding"][model]
        assert {"two_stage", "random", "prior_class", "prior_class_side_level"} <= set(grounding)
        assert all(0.0 <= g["pointing"] <= 1.0 for g in grounding.values())
    assert 0.0 < results["segmentation"]["empty_prediction_dice"] < 1.0
    bench = results["benchmark"]  # the packaged SynthCXR suite on both models, every evaluation
    from gloria.tasks.benchmark import load_suite

    names = [e.name for e in load_suite("synthcxr").evaluations]
    for model in ("pretrained", "random_init"):
        assert list(bench[model]["evaluations"]) == names
        values = [r["ours"]["value"] for r in bench[model]["rows"]]
        assert values and all(math.isfinite(v) for v in values)
    assert [r["metric"] for r in bench["pretrained"]["rows"]] == [
        r["metric"] for r in bench["random_init"]["rows"]
    ]
    assert set(bench["data"]) == {"multilabel", "rsna_binary", "siim_binary", "phrase_boxes", "rsna_boxes",
                                  "siim_masks"}  # fmt: skip
    curve = results["pretrain"]["train_loss_curve"]
    assert curve and all(math.isfinite(v) for v in curve)
    assert results["pretrain"]["global_step"] == len(curve) > 0
    prompts = results["zero_shot"]["prompts"]
    assert set(results["zero_shot"]["prompt_source"]) == set(prompts)
    assert all(isinstance(p, str) and p for ps in prompts.values() for p in ps)


@pytest.mark.slow
def test_same_seed_twice_gives_identical_numbers(
    smoke: tuple[int, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, _, first = smoke
    rc, second = run_smoke(tmp_path / "again")
    assert rc == 0
    a, b = numbers(first), numbers(second)
    assert len(a) > 100 and a == b


def test_a_missing_pretrained_text_model_stops_the_demo_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gloria.cli.demo import missing_text_model
    from gloria.encoders import text

    assert missing_text_model("small") is None  # built from a config: nothing to find
    monkeypatch.setattr(text, "packaged_model_dir", lambda name: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    message = missing_text_model("minilm")
    assert message is not None and "sentence-transformers/all-MiniLM-L6-v2" in message
    assert ".[train,seg,demo]" in message and "--preset small" in message
    assert main(["demo", "--preset", "minilm", "--out", str(tmp_path / "out"), "--seed", "0"]) == 2
    assert "needs the pretrained text model" in caplog.text
    assert not (tmp_path / "out").exists()  # nothing generated
