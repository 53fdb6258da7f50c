"""The release -> ours key map, the shape report and the config inferred from a release file."""

from __future__ import annotations

import pytest
import torch
import torchvision

from gloria.config import TextEncoderConfig
from gloria.pretrained.keymap import (
    KEY_MAP,
    check_keys,
    config_from_release,
    infer_backbone,
    release_key_to_ours,
    release_to_ours,
)
from support.release_ckpt import release_hyper_parameters


def _trunk(name: str) -> dict[str, torch.Tensor]:
    model = torchvision.models.get_model(name, weights=None)
    return {f"img_encoder.model.{k}": v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def test_key_map_table() -> None:
    assert len(KEY_MAP) == 2  # one place, two rules
    assert release_key_to_ours("gloria.img_encoder.model.conv1.weight") == "img_encoder.model.conv1.weight"
    assert release_key_to_ours("gloria.text_encoder.model.encoder.layer.3.output.dense.bias") == (
        "text_encoder.model.encoder.layer.3.output.dense.bias"
    )
    assert release_key_to_ours("gloria.text_encoder.model.embeddings.position_ids") is None
    assert release_key_to_ours("model.fc.weight") == "model.fc.weight"  # unmatched: reported later


def test_release_to_ours_keeps_tensors_and_drops_position_ids() -> None:
    a, b = torch.ones(2), torch.zeros(3)
    out = release_to_ours(
        {
            "gloria.img_encoder.global_embedder.bias": a,
            "gloria.text_encoder.model.embeddings.position_ids": torch.arange(4)[None],
            "gloria.text_encoder.model.pooler.dense.bias": b,
        }
    )
    assert list(out) == ["img_encoder.global_embedder.bias", "text_encoder.model.pooler.dense.bias"]
    assert out["img_encoder.global_embedder.bias"] is a and out["text_encoder.model.pooler.dense.bias"] is b


def test_check_keys_reports_every_problem_with_shapes() -> None:
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}
    given = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "d": torch.zeros(5, 5)}
    report = check_keys(expected, given)
    assert not report.ok
    assert report.missing == [("c", (1,))]
    assert report.unexpected == [("d", (5, 5))]
    assert report.mismatched == [("a", (3, 2), (2, 3))]
    text = report.format()
    assert "c (model [1])" in text and "d (file [5, 5])" in text and "a: file [3, 2] vs model [2, 3]" in text
    assert check_keys(expected, expected).ok


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "densenet121"])
def test_infer_backbone_from_shapes(name: str) -> None:
    if name == "densenet121":
        model = torchvision.models.densenet121(weights=None)
        state = {f"img_encoder.model.{k}": v for k, v in model.state_dict().items()}
    else:
        state = _trunk(name)
    assert infer_backbone(state) == name


def test_infer_backbone_rejects_unknown_layouts() -> None:
    state = _trunk("resnet50")
    del_keys = [k for k in state if k.startswith("img_encoder.model.layer3.5.")]
    for key in del_keys:
        del state[key]
    with pytest.raises(ValueError, match=r"blocks per stage \[3, 4, 5, 3\]"):
        infer_backbone(state)
    with pytest.raises(ValueError, match=r"no image-encoder weights.*\['text_encoder'\]"):
        infer_backbone({"text_encoder.model.pooler.dense.bias": torch.zeros(1)})


def test_config_from_release_reads_hyper_parameters() -> None:
    hp = release_hyper_parameters(
        model_name="resnet_50",
        temps=(3.0, 6.0, 11.0),
        word_num=64,
        imsize=300,
        crop_size=280,
        norm="imagenet",
    )
    hp["model"]["text"]["last_n_layers"] = 2
    hp["model"]["gloria"]["local_loss_weight"] = 0.5
    text = TextEncoderConfig(model="some/bert", bert_config={"hidden_size": 8}, vocab_file="v.txt")
    cfg = config_from_release(hp, _trunk("resnet18"), text)
    assert cfg.image.backbone == "resnet18"  # from the weights, not from model_name
    assert cfg.image.input_resize == 299
    assert (cfg.alignment.attention_temperature, cfg.alignment.word_temperature) == (3.0, 6.0)
    assert cfg.alignment.logit_temperature == 11.0 and cfg.alignment.local_weight == 0.5
    assert cfg.text.max_length == 64 and cfg.text.last_n_layers == 2 and cfg.text.model == "some/bert"
    assert cfg.text.bert_config == {"hidden_size": 8} and cfg.text.vocab_file == "v.txt"
    assert (cfg.transforms.imsize, cfg.transforms.crop_size, cfg.transforms.norm) == (300, 280, "imagenet")


def test_config_from_release_defaults_and_bad_values(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_from_release({}, _trunk("resnet50"), TextEncoderConfig())
    assert cfg.alignment.attention_temperature == 4.0 and cfg.text.max_length == 97
    assert any("lack" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match=r"transforms\.norm='zscore'"):
        config_from_release({"transforms": {"norm": "zscore"}}, _trunk("resnet50"), TextEncoderConfig())
