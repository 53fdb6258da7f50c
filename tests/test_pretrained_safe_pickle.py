"""Safe reading of Lightning 1.1 checkpoints: allowed stand-ins, refused globals, GPU tags, broken files."""

from __future__ import annotations

import fractions
import logging
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gloria.pretrained.release import read_release_checkpoint
from gloria.pretrained.safe_pickle import UnsafeCheckpointError, safe_torch_load, to_plain, unsafe_globals
from support.release_ckpt import (
    random_release_state_dict,
    release_hyper_parameters,
    write_malicious_checkpoint,
    write_release_checkpoint,
)


@pytest.fixture(scope="module")
def small_weights() -> dict[str, torch.Tensor]:
    return dict(random_release_state_dict("resnet18", seed=3))


@pytest.fixture(scope="module")
def gpu_ckpt(tmp_path_factory: pytest.TempPathFactory, small_weights: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "gpu.ckpt"
    return write_release_checkpoint(path, small_weights, saved_on="cuda:0")


def test_fixture_has_lightning_11_structure(gpu_ckpt: Path) -> None:
    # what the file references, read statically: DictConfig and Lightning's callback classes by module path
    names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(gpu_ckpt)))
    assert {
        "omegaconf.dictconfig.DictConfig",
        "omegaconf.nodes.AnyNode",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    } <= names
    # ... and the stand-in modules are gone after writing (absent, or the real installed package)
    for name in (
        "pytorch_lightning.callbacks.model_checkpoint",
        "pytorch_lightning.callbacks.early_stopping",
    ):
        module = sys.modules.get(name)
        assert module is None or getattr(module, "__file__", None) is not None
    assert unsafe_globals(gpu_ckpt) == []


def test_reads_without_lightning_or_omegaconf(
    gpu_ckpt: Path, small_weights: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("pytorch_lightning", "omegaconf", "lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of them now fails
    ckpt = read_release_checkpoint(gpu_ckpt)
    hp = ckpt.hyper_parameters
    assert hp == release_hyper_parameters()  # the DictConfig came back as the same plain data
    assert isinstance(hp["model"]["gloria"], dict) and hp["model"]["gloria"]["temp3"] == 10.0
    assert ckpt.info["pytorch-lightning_version"] == "1.1.4"
    assert ckpt.info["epoch"] == 14 and ckpt.info["global_step"] == 30255
    assert ckpt.info["hparams_type"] == "omegaconf.dictconfig.DictConfig"
    assert ckpt.info["callbacks"] == [
        "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    ]
    assert set(ckpt.state_dict) == set(small_weights)  # prefix stripped, position_ids dropped
    for key, value in small_weights.items():
        assert torch.equal(ckpt.state_dict[key], value), key


def test_gpu_saved_tensors_load_on_cpu(gpu_ckpt: Path) -> None:
    with zipfile.ZipFile(gpu_ckpt) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"cuda:0" in pkl and b"\x03cpu" not in pkl  # every storage is tagged as saved on the GPU
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu_ckpt, weights_only=False)  # without a map location it would need a GPU
    ckpt = read_release_checkpoint(gpu_ckpt)
    assert {v.device.type for v in ckpt.state_dict.values()} == {"cpu"}


def test_malicious_payload_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = write_malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"system") as err:
        safe_torch_load(path)
    assert str(path) in str(err.value) and "--trust" in str(err.value)
    with pytest.raises(UnsafeCheckpointError):
        read_release_checkpoint(path)
    assert not marker.exists()


def test_unknown_global_refused_unless_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "fraction.ckpt"
    torch.save(
        {"state_dict": {"gloria.x": torch.ones(1)}, "hyper_parameters": {"lr": fractions.Fraction(1, 3)}},
        path,
    )
    with pytest.raises(UnsafeCheckpointError, match=r"fractions\.Fraction"):
        safe_torch_load(path)
    with caplog.at_level(logging.WARNING, logger="gloria.pretrained.safe_pickle"):
        data = safe_torch_load(path, trust=True)
    assert data["hyper_parameters"]["lr"] == fractions.Fraction(1, 3)
    assert any("arbitrary code" in r.getMessage() for r in caplog.records)


def test_truncated_corrupt_and_foreign_files(tmp_path: Path, gpu_ckpt: Path) -> None:
    blob = gpu_ckpt.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"truncated\.ckpt.*(corrupt|truncated)"):
        read_release_checkpoint(truncated)

    corrupt = tmp_path / "corrupt.ckpt"
    middle = len(blob) // 2
    corrupt.write_bytes(blob[:100] + bytes(b ^ 0xFF for b in blob[100:middle]) + blob[middle:])
    with pytest.raises(ValueError, match=r"corrupt\.ckpt"):
        read_release_checkpoint(corrupt)

    text = tmp_path / "notes.ckpt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(ValueError, match=r"notes\.ckpt.*not a readable PyTorch checkpoint"):
        read_release_checkpoint(text)

    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty"):
        read_release_checkpoint(empty)

    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        read_release_checkpoint(tmp_path / "missing.ckpt")


def test_not_a_lightning_checkpoint(tmp_path: Path) -> None:
    bare = tmp_path / "bare.pt"
    torch.save({"weight": torch.ones(2)}, bare)
    with pytest.raises(ValueError, match=r"no 'state_dict' entry.*weight"):
        read_release_checkpoint(bare)
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), tensor_only)
    with pytest.raises(ValueError, match=r"holds a Tensor"):
        read_release_checkpoint(tensor_only)
    other_model = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.fc.weight": torch.ones(2)}}, other_model)
    with pytest.raises(ValueError, match=r"does not hold a GLoRIA model.*model\.fc\.weight"):
        read_release_checkpoint(other_model)


def test_to_plain_unwraps_nested_containers(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"a": [1, 2.5, {"b": None}], "c": {"d": "x", "e": True}, "f": "???"})
    path = tmp_path / "cfg.pt"
    torch.save({"cfg": cfg}, path)
    loaded = safe_torch_load(path)
    assert to_plain(loaded["cfg"]) == {"a": [1, 2.5, {"b": None}], "c": {"d": "x", "e": True}, "f": "???"}


def test_legacy_non_zip_format(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"model": {"gloria": {"temp1": 4.0}}})
    good = tmp_path / "legacy.ckpt"
    weights = {"gloria.img_encoder.global_embedder.bias": torch.arange(3.0)}
    torch.save({"state_dict": weights, "hyper_parameters": cfg}, good, _use_new_zipfile_serialization=False)
    ckpt = read_release_checkpoint(good)
    assert ckpt.hyper_parameters == {"model": {"gloria": {"temp1": 4.0}}}
    assert torch.equal(ckpt.state_dict["img_encoder.global_embedder.bias"], torch.arange(3.0))
    marker = tmp_path / "LEGACY_MARKER"
    evil = write_malicious_checkpoint(tmp_path / "legacy_evil.ckpt", marker, legacy_format=True)
    assert not zipfile.is_zipfile(evil)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_release_checkpoint(evil)
    assert not marker.exists()


def test_trusted_full_unpickling_gives_the_same_plain_data(gpu_ckpt: Path) -> None:
    pytest.importorskip("pytorch_lightning")  # the file's callback classes must be importable
    safe = read_release_checkpoint(gpu_ckpt)
    trusted = read_release_checkpoint(gpu_ckpt, trust=True)
    assert trusted.hyper_parameters == safe.hyper_parameters == release_hyper_parameters()
    assert trusted.info["hparams_type"] == "omegaconf.dictconfig.DictConfig"
    assert trusted.info["callbacks"] == safe.info["callbacks"]
    assert all(torch.equal(trusted.state_dict[k], v) for k, v in safe.state_dict.items())
