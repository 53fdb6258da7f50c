"""Config dataclasses: presets, dict round trip, validation errors naming the key."""

from __future__ import annotations

import pytest

from gloria.config import (
    GloriaConfig,
    ImageEncoderConfig,
    config_from_dict,
    preset,
    release_config,
)


def test_release_defaults_match_method_spec() -> None:
    cfg = release_config()
    assert cfg.image.backbone == "resnet50"
    assert cfg.image.input_resize == 299
    assert cfg.text.model == "emilyalsentzer/Bio_ClinicalBERT"
    assert cfg.text.max_length == 97
    assert cfg.text.last_n_layers == 4
    a = cfg.alignment
    assert (a.attention_temperature, a.word_temperature, a.logit_temperature) == (4.0, 5.0, 10.0)
    assert (cfg.transforms.imsize, cfg.transforms.crop_size, cfg.transforms.norm) == (256, 224, "half")


@pytest.mark.parametrize("name", ["gloria_resnet50", "gloria_resnet18", "tiny", "small"])
def test_presets_round_trip_through_dicts(name: str) -> None:
    cfg = preset(name)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(ValueError, match="known presets"):
        preset("gloria_vit")


def test_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"image\.backbon"):
        config_from_dict({"image": {"backbon": "resnet50"}})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"image": {"backbone": "vgg16"}}, "image.backbone"),
        ({"alignment": {"word_temperature": "hot"}}, "alignment.word_temperature"),
        ({"text": {"max_length": 9.5}}, "text.max_length"),
        ({"image": {"freeze": "yes"}}, "image.freeze"),
        ({"transforms": 3}, "transforms"),
    ],
)
def test_wrong_types_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config_from_dict(data)


def test_ints_are_accepted_for_floats_and_none_for_optional() -> None:
    cfg = config_from_dict({"alignment": {"word_temperature": 5}, "image": {"input_resize": None}})
    assert cfg.alignment.word_temperature == 5.0
    assert isinstance(cfg.alignment.word_temperature, float)
    assert cfg.image.input_resize is None


def test_replace_sections_and_fields() -> None:
    cfg = GloriaConfig().replace(image=ImageEncoderConfig(backbone="resnet18"), alignment__local_weight=0.0)
    assert cfg.image.backbone == "resnet18"
    assert cfg.alignment.local_weight == 0.0
    assert cfg.alignment.global_weight == 1.0
