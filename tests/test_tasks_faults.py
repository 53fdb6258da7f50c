"""Faults in evaluation and small data (issue 14): a corrupt or NaN embedding-cache entry is recomputed with
a warning, NaN embeddings from the model are refused, blank prompts are refused, prompt-file syntax errors
name the file, a one-pair training set is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from gloria.cli.main import main
from gloria.tasks import embed as E
from gloria.tasks.zero_shot import encode_class_prompts, load_prompt_file
from support.training_runs import config_path
from test_tasks_embed_cache import CountingModel, _write_images


def _entries(cache: E.EmbeddingCache) -> list[Path]:
    return sorted(cache.dir.rglob("*.npz"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "nan"])
def test_broken_cache_entry_is_recomputed_with_a_warning(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = E.list_images(_write_images(tmp_path / "imgs")[0].parent)
    model = CountingModel()
    cache = E.EmbeddingCache(tmp_path / "cache", E.model_fingerprint(model))
    first = E.embed_images(model, files, batch_size=3, cache=cache, with_regions=True, progress=False)
    entry = _entries(cache)[0]
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:40])
    elif damage == "garbage":
        entry.write_bytes(b"not an npz file at all" * 10)
    else:
        with np.load(entry) as data:
            arrays = {k: data[k].copy() for k in data.files}
        arrays["embedding"][0] = np.nan
        np.savez(entry, **arrays)
    seen = model.images_seen
    with caplog.at_level(logging.WARNING):
        again = E.embed_images(model, files, batch_size=3, cache=cache, with_regions=True, progress=False)
    assert model.images_seen == seen + 1  # only the broken entry was encoded again
    assert f"embedding cache entry {entry}" in caplog.text and "recomputing" in caplog.text
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    assert np.isfinite(again.embeddings).all()
    third = E.embed_images(model, files, batch_size=3, cache=cache, with_regions=True, progress=False)
    assert model.images_seen == seen + 1  # repaired: the next run reads it again
    np.testing.assert_array_equal(third.embeddings, first.embeddings)


def test_nan_embeddings_from_the_model_are_refused(tmp_path: Path) -> None:
    files = E.list_images(_write_images(tmp_path / "imgs")[0].parent)
    model = CountingModel()
    with torch.no_grad():
        model.scale.fill_(float("nan"))
    cache = E.EmbeddingCache(tmp_path / "cache", E.model_fingerprint(model))
    with pytest.raises(ValueError, match="NaN or infinite embeddings"):
        E.embed_images(model, files, batch_size=3, cache=cache, progress=False)
    assert not _entries(cache)  # nothing NaN was cached


@pytest.mark.parametrize("prompts", [{"A": [""], "B": ["effusion"]}, {"A": ["   "], "B": [" "]}])
def test_blank_prompts_are_refused(prompts: dict[str, list[str]], tiny_model) -> None:
    with pytest.raises(ValueError, match="blank prompt"):
        encode_class_prompts(tiny_model, prompts)


def test_prompts_without_words_are_refused(tiny_model) -> None:
    with pytest.raises(ValueError, match="no words after cleaning"):
        encode_class_prompts(tiny_model, {"A": ["..."], "B": ["!!!"]})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [("p.yaml", "A: [small effusion\nB: x\n", "p.yaml: not valid YAML"),
     ("p.json", '{"A": ["effusion"],', "p.json: not valid JSON")],
)  # fmt: skip
def test_prompt_file_syntax_errors_name_the_file(name: str, text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_prompt_file(path)


def test_one_pair_pretraining_batch_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tiny = config_path("synth_pretrain_tiny.yaml")
    assert main(["train", "-c", str(tiny), "--out", str(tmp_path), "data.batch_size=1"]) == 1
    assert "'data.batch_size' must be >= 2 for pretraining" in caplog.text


def test_one_row_training_set_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from support.dataset_fixtures import write_jpeg

    write_jpeg(tmp_path / "a.jpg", 0)
    write_jpeg(tmp_path / "b.jpg", 1)
    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "Path,Report Impression,Split\na.jpg,Small left pleural effusion.,train\n"
        "b.jpg,No acute cardiopulmonary process.,valid\n"
    )
    tiny = config_path("synth_pretrain_tiny.yaml")
    args = ["train", "-c", str(tiny), "--out", str(tmp_path / "out"), f"data.root={tmp_path}",
            "data.train_csv=pairs.csv", "data.image_root=null", "data.exclude_csv=[]",
            "trainer.accelerator=cpu"]  # fmt: skip
    assert main(args) == 1
    assert "pretraining needs at least 2 training image-report pairs" in caplog.text
    assert "gives 1 after splitting" in caplog.text
