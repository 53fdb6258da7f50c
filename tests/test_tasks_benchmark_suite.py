"""``gloria benchmark`` runs the shipped SynthCXR suite end to end on a tiny model (every benchmark kind)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gloria.data.manifest import file_sha256
from gloria.data.synth import SynthConfig, generate
from gloria.tasks.benchmark import load_suite, suite_file
from support.eval_cli import run_command, write_model_dir

SUITE = Path(__file__).resolve().parents[1] / "src" / "gloria" / "assets" / "benchmarks" / "synthcxr.yaml"
REAL = Path(__file__).resolve().parents[1] / "configs" / "benchmarks" / "real.yaml"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_suite")
    generate(out, 200, seed=5, config=SynthConfig(size=64), progress=False)
    assert run_command("prepare", ["prepare", "synthcxr", "--root", str(out)]) == 0
    return out


def test_synthcxr_suite_runs_every_benchmark(synth_root: Path, tmp_path: Path, tiny_model) -> None:
    model = write_model_dir(tiny_model, tmp_path / "model")
    out = tmp_path / "bench"
    argv = ["benchmark", "--model", str(model), "--suite", "synthcxr", "--root", str(synth_root)]  # by name
    argv += ["--out", str(out), "--n-boot", "20", "--cache", str(tmp_path / "cache")]
    assert run_command("benchmark", argv) == 0
    res = json.loads((out / "benchmark.json").read_text())
    names = [e.name for e in load_suite(SUITE, synth_root).evaluations]
    assert list(res["evaluations"]) == names and len(names) == 8
    for name, entry in res["evaluations"].items():
        assert entry["data"]["sha256"] == file_sha256(entry["data"]["file"]), name
        assert any(r["benchmark"] == name for r in res["rows"]), name
    rows = {(r["benchmark"], r["method"], r["metric"]): r for r in res["rows"]}
    auroc = rows[("synth_multilabel", "macro", "auroc")]
    assert auroc["reference"] == "GLoRIA 0.75; CheXzero 0.889; KAD 0.905" and "KAD" in auroc["source"]
    assert 0.0 <= auroc["ours"]["low"] <= auroc["ours"]["value"] <= auroc["ours"]["high"] <= 1.0
    assert rows[("synth_ms_cxr", "two_stage", "cnr")]["reference"].startswith("GLoRIA 0.93")
    assert rows[("synth_ms_cxr", "prior_class", "cnr")]["reference"] == ""  # baselines get no reference
    assert {"random", "prior_class", "prior_class_side_level"} <= set(
        res["evaluations"]["synth_rsna_boxes"]["result"]["methods"]
    )
    assert res["evaluations"]["synth_5x200_legacy"]["result"]["legacy"] is True
    assert res["evaluations"]["synth_siim_binary"]["result"]["scoring"] == "positive"
    assert res["environment"]["torch"] and res["environment"]["torch_threads"] >= 1
    md = (out / "benchmark.md").read_text()
    assert "| synth_rsna_binary | macro | auroc |" in md and "Wu et al. 2023" in md
    # the multi-class entry is today's `gloria zero-shot`, unchanged
    zs = tmp_path / "zs"
    csv = synth_root / "CheXpert-v1.0" / "chexpert_5x200.csv"
    argv = ["zero-shot", "--model", str(model), "--data", str(csv), "--out", str(zs), "--n-boot", "20"]
    assert run_command("zero_shot", [*argv, "--cache", str(tmp_path / "cache")]) == 0
    single = json.loads((zs / "results.json").read_text())["zero_shot"]
    assert single["accuracy"] == res["evaluations"]["synth_5x200"]["result"]["accuracy"]


def test_valid_data_joins_a_separate_validation_csv(synth_root: Path, tmp_path: Path, tiny_model) -> None:
    import pandas as pd

    from gloria.tasks.benchmark import run_suite

    rows = pd.read_csv(synth_root / "synth_rsna_binary.csv")
    rows[rows["split"] == "valid"].to_csv(synth_root / "bin_valid.csv", index=False)
    rows[rows["split"] == "test"].drop(columns="split").to_csv(synth_root / "bin_test.csv", index=False)
    suite_yaml = tmp_path / "suite.yaml"
    prompts = SUITE.parent / "synthcxr_prompts.yaml"
    suite_yaml.write_text(
        "n_boot: 5\nevaluations:\n  - {name: b, kind: zero_shot_labels, data: bin_test.csv, "
        f"valid_data: bin_valid.csv, prompts: {prompts}, classes: [Pneumonia]}}\n"
    )
    result = run_suite(tiny_model, load_suite(suite_yaml, synth_root))["evaluations"]["b"]
    assert result["result"]["n_valid"] == int((rows["split"] == "valid").sum())
    assert result["result"]["n_test"] == int((rows["split"] == "test").sum())
    assert result["data"]["valid_data"]["sha256"] == file_sha256(synth_root / "bin_valid.csv")


def test_suite_errors_name_the_entry(tmp_path: Path) -> None:
    assert suite_file("synthcxr").resolve() == SUITE  # the packaged suite by name
    with pytest.raises(FileNotFoundError, match=r"packaged suites: \['synthcxr'\]"):
        suite_file("synthcx")
    real = load_suite(REAL, tmp_path)  # the shipped real-data suite is well formed
    assert len(real.evaluations) == 9 and all(str(e.data).startswith(str(tmp_path)) for e in real.evaluations)
    bad = tmp_path / "suite.yaml"
    bad.write_text("evaluations:\n  - {name: a, kind: nope, data: x.csv}\n")
    with pytest.raises(ValueError, match=r"evaluation 1 \(a\): kind 'nope' is not one of"):
        load_suite(bad)
    bad.write_text("evaluations:\n  - {name: a, kind: grounding, data: x.csv, reference: made_up}\n")
    with pytest.raises(ValueError, match="unknown reference 'made_up'"):
        load_suite(bad)
    bad.write_text("evaluations:\n  - {name: a, kind: grounding, data: x.csv, prompts: p.yaml}\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['prompts'\] for grounding"):
        load_suite(bad)


def test_an_unscorable_set_raises_or_is_skipped(synth_root: Path, tmp_path: Path, tiny_model) -> None:
    """A validation split without a positive has no threshold: `gloria benchmark` stops naming it; the
    demo (``skip_unscorable``) records the reason and scores the rest."""
    import pandas as pd

    from gloria.tasks.benchmark import run_suite

    rows = pd.read_csv(synth_root / "synth_rsna_binary.csv")
    rows.loc[rows["split"] == "valid", "Pneumonia"] = 0
    rows.to_csv(synth_root / "no_valid_positive.csv", index=False)
    suite_yaml = tmp_path / "suite.yaml"
    prompts = SUITE.parent / "synthcxr_prompts.yaml"
    suite_yaml.write_text(
        "n_boot: 5\nevaluations:\n  - {name: bad, kind: zero_shot_labels, data: no_valid_positive.csv, "
        f"prompts: {prompts}, classes: [Pneumonia]}}\n"
        f"  - {{name: good, kind: zero_shot_labels, data: synth_rsna_binary.csv, prompts: {prompts}, "
        "classes: [Pneumonia]}\n"
    )
    suite = load_suite(suite_yaml, synth_root)
    with pytest.raises(ValueError, match="validation rows"):
        run_suite(tiny_model, suite)
    result = run_suite(tiny_model, suite, skip_unscorable=True)
    assert "validation rows" in result["evaluations"]["bad"]["skipped"]
    assert "result" in result["evaluations"]["good"]
    assert {r["benchmark"] for r in result["rows"]} == {"good"}
    # only the data's shortfall is skipped: a suite error (here a prompt file without the class) still raises
    suite_yaml.write_text(
        "evaluations:\n  - {name: typo, kind: zero_shot_labels, data: synth_rsna_binary.csv, "
        f"prompts: {prompts}, classes: [Pneumonitis]}}\n"
    )
    with pytest.raises(ValueError, match="Pneumonitis"):
        run_suite(tiny_model, load_suite(suite_yaml, synth_root), skip_unscorable=True)
