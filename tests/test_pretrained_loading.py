"""load_gloria / convert / registry on release-format files: ResNet-50 + tiny BERT, and ResNet-18."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from gloria.pretrained import registry
from gloria.pretrained.convert import convert_checkpoint
from gloria.pretrained.loading import (
    load_gloria,
    load_image_encoder,
    load_img_classification_model,
    load_img_segmentation_model,
)
from support.release_ckpt import (
    random_release_state_dict,
    release_hyper_parameters,
    write_release_checkpoint,
    write_text_model_dir,
)
from support.scratch import scratch_dir

TEXTS = ["no acute cardiopulmonary process", "small left pleural effusion with atelectasis"]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    with scratch_dir(tmp_path_factory, "release") as root:  # ~270 MB, gone after the module
        weights = random_release_state_dict("resnet50", seed=1)
        torch.save(dict(weights), root / "expected.pt")
        weights18 = random_release_state_dict("resnet18", seed=7)
        torch.save(dict(weights18), root / "expected18.pt")
        hp18 = release_hyper_parameters(model_name="resnet_18")
        yield {
            "root": root,
            "text": write_text_model_dir(root / "tiny-bert"),
            "r50": write_release_checkpoint(root / "chexpert_resnet50.ckpt", weights, saved_on="cuda:0"),
            "expected": root / "expected.pt",
            "r18": write_release_checkpoint(
                root / "chexpert_resnet18.ckpt", weights18, hyper_parameters=hp18
            ),
            "expected18": root / "expected18.pt",
        }


def _convert_in_tmp_cache(source: Path, text: Path, factory: pytest.TempPathFactory) -> Path:
    old = os.environ.get(registry.CACHE_ENV)
    os.environ[registry.CACHE_ENV] = str(factory.mktemp("conv-cache"))
    try:
        return convert_checkpoint(source, factory.mktemp("conv") / source.stem, text_model=text)
    finally:
        if old is None:
            os.environ.pop(registry.CACHE_ENV)
        else:
            os.environ[registry.CACHE_ENV] = old


@pytest.fixture(scope="module")
def converted(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert_in_tmp_cache(files["r50"], files["text"], tmp_path_factory)


@pytest.fixture(scope="module")
def converted18(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert_in_tmp_cache(files["r18"], files["text"], tmp_path_factory)


@pytest.fixture(scope="module")
def original(files: dict[str, Path]) -> torch.nn.Module:
    return load_gloria(files["r50"], device=None, text_model=files["text"]).cpu()


def _outputs(model: torch.nn.Module) -> list[torch.Tensor]:
    torch.manual_seed(5)
    images = torch.randn(1, 3, 64, 64)
    batch = model.process_text(TEXTS, "cpu")
    with torch.no_grad():
        regions, embedding = model.image_encoder_forward(images)
        words, sentence, _ = model.text_encoder_forward(
            batch["caption_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
    return [regions, embedding, words, sentence]


def test_load_release_file(files: dict[str, Path], original: torch.nn.Module) -> None:
    model = original
    assert not model.training
    expected = torch.load(files["expected"], weights_only=True)
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    cfg = model.config
    assert cfg.image.backbone == "resnet50" and cfg.image.input_resize == 299
    assert cfg.text.max_length == 97 and cfg.text.model == "emilyalsentzer/Bio_ClinicalBERT"
    assert model.img_encoder.global_embedder.weight.shape == (32, 2048)


def test_convert_then_reload_is_identical(
    files: dict[str, Path], converted: Path, original: torch.nn.Module
) -> None:
    names = sorted(p.name for p in converted.iterdir())
    assert {"model.safetensors", "config.yaml", "metadata.json", "vocab.txt"} <= set(names)
    meta = json.loads((converted / "metadata.json").read_text())
    assert meta["source_sha256"] == hashlib.sha256(files["r50"].read_bytes()).hexdigest()
    assert meta["release_hyper_parameters"] == release_hyper_parameters()
    assert meta["lightning"]["pytorch-lightning_version"] == "1.1.4"
    assert "temp1" not in (converted / "config.yaml").read_text()  # our names, readable YAML
    assert "attention_temperature: 4.0" in (converted / "config.yaml").read_text()

    reloaded = load_gloria(converted, "cpu")
    a, b = original.state_dict(), reloaded.state_dict()
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert original.config == reloaded.config.replace(text__vocab_file=original.config.text.vocab_file)
    for x, y in zip(_outputs(original), _outputs(reloaded), strict=True):
        assert torch.equal(x, y)


def test_converted_dir_loads_without_any_pickle(converted18: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    model = load_gloria(str(converted18), None)
    assert model.config.image.backbone == "resnet18" and not model.training
    assert next(model.parameters()).device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_conversion_recorded_in_registry(files: dict[str, Path], tmp_path: Path, _cache_dir: Path) -> None:
    out = convert_checkpoint(files["r18"], tmp_path / "again", text_model=files["text"])
    records = registry.read_registry()
    entry = records[str(files["r18"].resolve())]
    assert entry["sha256"] == json.loads((out / "metadata.json").read_text())["source_sha256"]
    assert entry["converted_dir"] == str(out.resolve())
    with pytest.raises(ValueError, match="already holds a converted model"):
        convert_checkpoint(files["r18"], out, text_model=files["text"])


def test_sha256_checked_only_when_given(files: dict[str, Path], converted18: Path) -> None:
    digest = hashlib.sha256(files["r18"].read_bytes()).hexdigest()
    load_image_encoder(files["r18"], "cpu", sha256=digest.upper())
    # a directory's hash is the one of its weights file (never the release file's, recorded by the directory)
    load_image_encoder(converted18, "cpu", sha256=registry.file_sha256(converted18 / "model.safetensors"))
    with pytest.raises(ValueError, match=r"sha256 of .*model\.safetensors"):
        load_image_encoder(converted18, "cpu", sha256=digest)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_image_encoder(files["r18"], "cpu", sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_image_encoder(converted18, "cpu", sha256="0" * 64)
    with pytest.raises(ValueError, match="64 hex digits"):
        load_image_encoder(files["r18"], "cpu", sha256="abc")


def test_resnet18_with_real_shapes(files: dict[str, Path]) -> None:
    weights = torch.load(files["expected18"], weights_only=True)
    encoder = load_image_encoder(files["r18"], "cpu")
    assert encoder.backbone == "resnet18" and encoder.global_embedder.weight.shape == (32, 512)
    assert torch.equal(encoder.local_embedder.weight, weights["img_encoder.local_embedder.weight"])


def test_resnet18_with_resnet50_dims_reports_each_key(tmp_path: Path) -> None:
    weights = random_release_state_dict("resnet18", seed=2, embed_dims=(2048, 1024))
    path = write_release_checkpoint(tmp_path / "bad18.ckpt", weights)
    with pytest.raises(ValueError) as err:
        load_image_encoder(path, "cpu")
    text = str(err.value)
    assert "bad18.ckpt" in text
    assert "global_embedder.weight: file [32, 2048] vs model [32, 512]" in text
    assert "local_embedder.weight: file [32, 1024, 1, 1] vs model [32, 256, 1, 1]" in text


def test_wrong_architecture_lists_keys(files: dict[str, Path], tmp_path: Path) -> None:
    weights = dict(random_release_state_dict("resnet18", seed=4))
    del weights["text_encoder.model.encoder.layer.0.attention.self.query.weight"]
    weights["text_encoder.model.extra.weight"] = torch.zeros(3)
    path = write_release_checkpoint(tmp_path / "odd.ckpt", weights)
    with pytest.raises(ValueError) as err:
        load_gloria(path, "cpu", text_model=files["text"])
    text = str(err.value)
    assert "odd.ckpt" in text
    assert "text_encoder.model.encoder.layer.0.attention.self.query.weight (model [32, 32])" in text
    assert "text_encoder.model.extra.weight (file [3])" in text


def test_text_model_missing_is_a_clear_error(tmp_path: Path) -> None:
    weights = random_release_state_dict("resnet18", seed=2)
    hp = release_hyper_parameters(bert_type="gloria-tests/not-a-cached-model")
    path = write_release_checkpoint(tmp_path / "r18.ckpt", weights, hyper_parameters=hp)
    with pytest.raises(FileNotFoundError, match=r"not-a-cached-model.*--text-model DIR"):
        load_gloria(path, "cpu")
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_gloria(path, "cpu", text_model=tmp_path)


def test_missing_registered_name_says_where_to_get_it(_cache_dir: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_gloria("gloria_resnet50", "cpu")
    text = str(err.value)
    assert registry.RELEASE_URL in text
    assert str(_cache_dir / "chexpert_resnet50.ckpt") in text
    assert str(Path.cwd() / "pretrained" / "chexpert_resnet50.ckpt") in text
    with pytest.raises(ValueError, match="registered names"):
        registry.resolve("gloria_vit")
    with pytest.raises(FileNotFoundError, match="neither a registered model"):
        load_gloria("nowhere.ckpt", "cpu")


def test_registered_name_found_in_pretrained_dir_then_cache(
    files: dict[str, Path], converted18: Path, _cache_dir: Path
) -> None:
    (Path.cwd() / "pretrained").mkdir()
    (Path.cwd() / "pretrained" / "chexpert_resnet18.ckpt").symlink_to(files["r18"])
    assert registry.resolve("gloria_resnet18") == Path.cwd() / "pretrained" / "chexpert_resnet18.ckpt"
    encoder = load_image_encoder("gloria_resnet18", "cpu")
    assert encoder.backbone == "resnet18"
    _cache_dir.mkdir(parents=True)
    (_cache_dir / "gloria_resnet18").symlink_to(converted18, target_is_directory=True)
    assert registry.resolve("gloria_resnet18") == _cache_dir / "gloria_resnet18"  # converted dir preferred
    model = load_gloria("gloria_resnet18", "cpu")
    assert model.config.text.vocab_file == str((converted18 / "vocab.txt").resolve())


def test_downstream_models_from_both_formats(files: dict[str, Path], converted18: Path) -> None:
    expected = torch.load(files["expected18"], weights_only=True)
    for source in (files["r18"], converted18):
        clf = load_img_classification_model(source, "cpu", num_cls=5)
        assert clf.classifier.out_features == 5 and clf.classifier.in_features == 512
        assert not any(p.requires_grad for p in clf.img_encoder.parameters())
        assert torch.equal(clf.img_encoder.model.conv1.weight, expected["img_encoder.model.conv1.weight"])
        unet = load_img_segmentation_model(source, "cpu")
        assert torch.equal(
            unet.encoder.layer4[1].bn2.running_var, expected["img_encoder.model.layer4.1.bn2.running_var"]
        )


def _run_cli(argv: list[str]) -> int:
    """``gloria convert`` through its own parser (main.py imports every command module, some of which
    other parts are still writing); errors propagate as main() would report them."""
    import argparse

    from gloria.cli import convert as convert_cli

    parser = argparse.ArgumentParser(prog="gloria")
    convert_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_convert(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    argv = ["convert", str(files["r18"]), "--out", str(out), "--text-model", str(files["text"])]
    assert _run_cli(argv) == 0 and (out / "model.safetensors").is_file()
    assert load_image_encoder(out, "cpu").backbone == "resnet18"
    with pytest.raises(ValueError, match="--force"):
        _run_cli(argv)
    assert _run_cli([*argv, "--force"]) == 0
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        _run_cli(["convert", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")])


def test_tiny_release_files_helper(tmp_path: Path) -> None:
    from support.release_ckpt import write_tiny_release_files

    files = write_tiny_release_files(tmp_path / "tiny")
    model = load_gloria(files["ckpt"], "cpu", text_model=files["text"])
    cfg = model.config
    assert (cfg.image.backbone, cfg.text.max_length, cfg.transforms.imsize, cfg.transforms.crop_size) == (
        "resnet18",
        32,
        72,
        64,
    )
    assert model.process_text(TEXTS, "cpu")["caption_ids"].shape == (2, 32)


def test_text_model_from_local_hub_cache_only(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[tuple[str, bool]] = []

    def cached_only(repo_id: str, *, local_files_only: bool = False, **kwargs: object) -> str:
        calls.append((repo_id, local_files_only))
        return str(files["text"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached_only)
    encoder_cfg = load_gloria(files["r18"], "cpu").config.text
    assert calls == [("emilyalsentzer/Bio_ClinicalBERT", True)]  # looked up in the cache, never fetched
    assert encoder_cfg.vocab_file == str((files["text"] / "vocab.txt").resolve())
