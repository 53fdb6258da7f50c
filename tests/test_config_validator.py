"""One validator for model configs and experiment files (``gloria.config.from_dict``): the same rules and
the same messages for both."""

from __future__ import annotations

import pytest

from gloria.config import config_from_dict
from gloria.training.experiment import experiment_from_dict

BASE = {"task": "pretrain", "data": {"train_csv": "x.csv"}}


@pytest.mark.parametrize(
    ("model_config", "experiment", "message"),
    [
        ({"alignment": {"word_temperature": float("nan")}}, {"optim": {"lr": float("nan")}}, "finite number"),
        ({"alignment": {"word_temperature": float("inf")}}, {"optim": {"lr": float("inf")}}, "finite number"),
        ({"image": {"widget": 1}}, {"optim": {"widget": 1}}, r"unknown config key.*widget.*allowed here"),
        ({"text": {"max_length": "97"}}, {"data": {"batch_size": "8"}}, "must be an integer"),
        ({"text": {"max_length": None}}, {"data": {"batch_size": None}}, "must be an integer, got None"),
        ({"image": {"freeze": 1}}, {"model": {"freeze_encoder": 1}}, "must be true or false"),
    ],
)
def test_model_configs_and_experiments_share_the_rules(
    model_config: dict, experiment: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_dict(model_config)
    with pytest.raises(ValueError, match=message):
        experiment_from_dict({**BASE, **experiment})


def test_experiment_model_config_section_uses_the_same_bounds() -> None:
    with pytest.raises(ValueError, match=r"transforms\.imsize=100000 is outside"):
        config_from_dict({"transforms": {"imsize": 100000}})
    with pytest.raises(ValueError, match=r"transforms\.imsize=100000 is outside"):
        experiment_from_dict(
            {**BASE, "model": {"preset": "tiny", "config": {"transforms": {"imsize": 100000}}}}
        )
