"""Hostile and broken model files on every path that reads one (issue 14): no code from a checkpoint runs
without ``--trust``, a given hash covers the bytes it names, paths from a file stay in its folder, a config
asking for huge shapes is refused before anything is allocated, NaN weights are refused."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from gloria.cli.main import main as gloria_main
from gloria.cli.train import main as run_py_main
from gloria.config import tiny_config
from gloria.model import GLoRIA
from gloria.pretrained import registry
from gloria.pretrained.loading import load_gloria, load_model
from gloria.pretrained.safe_pickle import UnsafeCheckpointError
from support.eval_cli import write_model_dir
from support.release_ckpt import write_malicious_checkpoint
from support.training_runs import FAST, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _raw_pickle(path: Path, marker: Path) -> Path:
    """Not even a torch.save file: a bare pickle whose loading runs a command."""
    path.write_bytes(pickle.dumps({"state_dict": {"model.x": _Touch(marker)}}, protocol=2))
    return path


@pytest.fixture(params=["zip", "legacy", "raw"])
def evil(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.ckpt"
    if request.param == "raw":
        return _raw_pickle(path, marker), marker
    return write_malicious_checkpoint(path, marker, legacy_format=request.param == "legacy"), marker


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return write_model_dir(GLoRIA(tiny_config()).eval(), tmp_path_factory.mktemp("model"))


def _copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for item in src.iterdir():
        (dst / item.name).write_bytes(item.read_bytes())
    return dst


# ------------------------------------------------------------------------------------ hostile pickles


def test_api_loaders_refuse_hostile_pickles(evil: tuple[Path, Path]) -> None:
    path, marker = evil
    for load in (load_model, load_gloria):
        with pytest.raises(ValueError, match=r"evil\.ckpt"):
            load(path, "cpu")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["zero-shot", "retrieve", "embed", "attend", "convert", "export"])
def test_commands_refuse_hostile_pickles(
    command: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "MARKER"
    path = write_malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    data = tmp_path / "data.csv"
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    data.write_text(f"Path,task,Report Impression\n{image},Edema,edema\n")
    argv = {
        "zero-shot": ["zero-shot", "--model", str(path), "--data", str(data), "--out", str(tmp_path / "o")],
        "retrieve": ["retrieve", "--model", str(path), "--data", str(data), "--out", str(tmp_path / "o")],
        "embed": ["embed", "--model", str(path), "--images", str(tmp_path), "--out", str(tmp_path / "e.npz")],
        "attend": [
            "attend",
            "--model",
            str(path),
            str(image),
            "--text",
            "edema",
            "--out",
            str(tmp_path / "a.png"),
        ],
        "convert": ["convert", str(path), "--out", str(tmp_path / "conv")],
        "export": ["export", "--model", str(path), "--out", str(tmp_path / "exp")],
    }[command]
    assert gloria_main(argv) == 1
    assert any("refusing to load" in r.getMessage() for r in caplog.records)
    assert not marker.exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "how",
    ["model.checkpoint", "resume", "test-resume", "run.py-test-resume"],
)
def test_training_refuses_hostile_checkpoints(
    how: str, synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "MARKER"
    evil = write_malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    base = ["-c", str(config_path("synth_pretrain_tiny.yaml")), "--out", str(tmp_path / "runs"),
            f"data.root={synth_root}/CheXpert-v1.0", "trainer.max_steps=1", *FAST]  # fmt: skip
    if how == "model.checkpoint":
        argv = ["--train", *base, f"model.checkpoint={evil}"]
    elif how == "resume":
        argv = ["--train", "--resume", str(evil), *base]
    else:
        argv = ["--test", "--resume", str(evil), *base]
    rc = run_py_main(argv) if how.startswith("run.py") else gloria_main(["train", *argv])
    assert rc == 1
    assert any("refusing to load" in r.getMessage() for r in caplog.records)
    assert not marker.exists()


@pytest.mark.usefixtures("one_thread")
def test_training_resume_of_random_bytes_is_not_a_checkpoint(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(bytes(range(256)) * 8)
    rc = gloria_main(
        ["train", "-c", str(config_path("synth_pretrain_tiny.yaml")), "--test", "--resume", str(junk),
         "--out", str(tmp_path / "runs"), f"data.root={synth_root}/CheXpert-v1.0", *FAST]
    )  # fmt: skip
    assert rc == 1
    assert any("junk.ckpt is not a checkpoint" in r.getMessage() for r in caplog.records)


def test_random_bytes_are_not_a_checkpoint_rather_than_unsafe(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(4096).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    with pytest.raises(ValueError, match=r"junk\.ckpt is not a checkpoint") as err:
        load_model(junk, "cpu")
    assert not isinstance(err.value, UnsafeCheckpointError)


# ------------------------------------------------------------------------------------- converted dirs


def test_given_hash_covers_the_weights_not_the_metadata(model_dir: Path, tmp_path: Path) -> None:
    good = registry.file_sha256(model_dir / "model.safetensors")
    load_gloria(model_dir, "cpu", sha256=good)
    tampered = _copy_dir(model_dir, tmp_path / "tampered")
    tensors = load_file(str(tampered / "model.safetensors"))
    tensors["img_encoder.global_embedder.weight"] = torch.zeros_like(
        tensors["img_encoder.global_embedder.weight"]
    )
    save_file(tensors, str(tampered / "model.safetensors"))
    # the directory vouches for itself: its metadata records the new file's hash, or no hash at all
    meta = {"source_sha256": good, "weights_sha256": registry.file_sha256(tampered / "model.safetensors")}
    (tampered / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_gloria(tampered, "cpu", sha256=good)
    (tampered / "metadata.json").unlink()
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_gloria(tampered, "cpu", sha256=good)


@pytest.mark.parametrize("vocab", ["../../../../etc/passwd", "/etc/passwd", "sub/../../outside.txt"])
def test_vocab_path_stays_inside_the_directory(vocab: str, model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(model_dir, tmp_path / "m")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["text"]["vocab_file"] = vocab
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"config\.yaml: text\.vocab_file .*outside the converted directory"):
        load_gloria(folder, "cpu")


def test_vocab_inside_the_directory_loads(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(model_dir, tmp_path / "m")
    (folder / "vocab.txt").write_bytes(
        (Path(__file__).parents[1] / "src/gloria/assets/cxr_vocab.txt").read_bytes()
    )
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["text"]["vocab_file"] = "vocab.txt"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    assert load_gloria(folder, "cpu").config.text.vocab_file == str((folder / "vocab.txt").resolve())


HUGE = {
    "hidden_size": ("text", "bert_config", "hidden_size", 12288),
    "layers": ("text", "bert_config", "num_hidden_layers", 100000),
    "imsize": ("transforms", None, "imsize", 100000),
    "max_length": ("text", None, "max_length", "1e8"),
    "max_length_float": ("text", None, "max_length", 1.0e8),
    "layers_in_bounds": ("text", "bert_config", "num_hidden_layers", 96),  # allowed, but not the file's
}


def test_huge_configs_refused_before_allocation(model_dir: Path, tmp_path: Path) -> None:
    """Each case in a fresh process: its peak memory may grow by a little only (no model is built)."""
    folders = {}
    for name, (section, sub, key, value) in HUGE.items():
        folder = _copy_dir(model_dir, tmp_path / name)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        (config[section][sub] if sub else config[section])[key] = value
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        folders[name] = str(folder)
    script = (
        "import json, resource, sys\n"
        "from gloria.pretrained.loading import load_gloria\n"
        "from gloria.config import tiny_config\nfrom gloria.model import GLoRIA\nGLoRIA(tiny_config())\n"
        "out = {}\n"
        "for name, folder in json.loads(sys.argv[1]).items():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    try:\n"
        "        load_gloria(folder, 'cpu')\n"
        "        out[name] = ['loaded', 0]\n"
        "    except ValueError as err:\n"
        "        out[name] = [str(err), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(folders)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (message, grown_kib) in out.items():
        assert message != "loaded", name
        assert grown_kib < 100 * 1024, (name, grown_kib)  # under 100 MiB more than a tiny model's build
        assert "config.yaml" in message, (name, message)
    assert "outside 1..8192" in out["hidden_size"][0] and "num_hidden_layers=100000" in out["layers"][0]
    assert "shape" in out["layers_in_bounds"][0] or "missing" in out["layers_in_bounds"][0]


def test_nan_weights_refused(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(model_dir, tmp_path / "nan")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["img_encoder.global_embedder.bias"][0] = float("nan")
    tensors["img_encoder.local_embedder.weight"].view(-1)[3] = float("inf")
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"NaN or infinite weights in 2 tensor.*global_embedder\.bias"):
        load_gloria(folder, "cpu")


def test_metadata_not_json_names_the_file(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(model_dir, tmp_path / "meta")
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metadata\.json is not valid JSON"):
        load_gloria(folder, "cpu")
