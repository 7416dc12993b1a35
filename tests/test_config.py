"""RunConfig: presets, validation with helpful messages, round trips."""
import json

import numpy as np
import pytest

from bnlib.config import PRESETS, RunConfig, upgrade


def test_paper_preset_is_the_papers_schedule():
    config = RunConfig.preset("paper")
    assert (config.optimizer, config.learning_rate, config.momentum) == ("sgd", 0.1, 0.9)
    assert config.lr_milestones == (80, 120) and config.lr_decay == 0.1
    assert (config.epochs, config.batch_size, config.weight_decay, config.augment) == (160, 128, 1e-4, True)


def test_article_preset():
    config = RunConfig.preset("article")
    assert (config.optimizer, config.learning_rate, config.schedule) == ("adam", 0.01, "constant")
    assert (config.batch_size, config.epochs, config.augment) == (1024, 50, False)


def test_small_profiles_shrink_sizes_not_code():
    smoke, cpu = RunConfig.preset("smoke"), RunConfig.preset("cpu")
    assert smoke.epochs < cpu.epochs < RunConfig.preset("paper").epochs
    assert smoke.train_per_class and cpu.train_per_class
    assert set(PRESETS) == {"paper", "article", "cpu", "smoke"}


def test_defaults_are_the_official_code():
    config = RunConfig()
    assert (config.policy, config.gamma_init, config.bn_momentum) == ("bn", "uniform", 0.9)


@pytest.mark.parametrize("overrides, fragment", [
    (dict(policy="bnn"), "did you mean 'bn'"),
    (dict(gamma_init="one"), "did you mean 'ones'"),
    (dict(model="resnet21"), "20 or 26"),
    (dict(model="wrn14--1"), "positive"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(batch_size=12.5), "batch_size"),
    (dict(bn_momentum=1.0), "0.9 matches"),
    (dict(validation_split=1.5), "validation_split"),
    (dict(strategy="mirror"), "did you mean 'mirrored'"),
    (dict(learning_rate=float("nan")), "learning_rate must be a positive finite number"),
    (dict(learning_rate="0.1"), "learning_rate must be a positive finite number"),
    (dict(momentum=5.0), r"momentum must be in \[0, 1\)"),
    (dict(weight_decay=-1e-4), "weight_decay must be >= 0"),
    (dict(lr_decay=10), r"lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=0), r"lr_decay must be in \(0, 1\]"),
    (dict(warmup_epochs=10, epochs=8), r"warmup_epochs must be an integer from 0 to epochs - 1 \(7\)"),
    (dict(lr_milestones=80), r"lr_milestones must be increasing positive epochs, e.g. \(80, 120\)"),
    (dict(lr_milestones=(120, 80)), "lr_milestones must be increasing"),
    (dict(lr_milestones=(0, 80)), "lr_milestones must be increasing positive"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(augment="yes"), "augment must be True or False"),
    (dict(clipnorm=0), "clipnorm must be positive"),
    (dict(precision="mixed_bfloat"), "did you mean 'mixed_bfloat16'"),
    (dict(precision=True), "Unknown precision True"),
])
def test_invalid_values_fail_at_once_on_one_line(overrides, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        RunConfig(**overrides)
    assert "\n" not in str(error.value)


def test_numpy_numbers_and_model_spellings_are_normalised():
    """NumPy scalars become Python numbers (JSON, resume comparisons) and a model has one spelling
    (tables and the paper's figures look runs up by it)."""
    config = RunConfig(epochs=np.int64(8), learning_rate=np.float32(0.5), lr_milestones=[np.int64(4), 6],
                       model="ResNet-14")
    assert (type(config.epochs), type(config.learning_rate), config.lr_milestones) == (int, float, (4, 6))
    assert json.loads(config.to_json())["epochs"] == 8
    assert [RunConfig(model=m).model for m in ("ResNet-14", "WRN_14_2", "Keras-ResNet50", "vgg-16")] == \
        ["resnet14", "wrn14-2", "keras-resnet50", "vgg16"]


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="did you mean 'paper'"):
        RunConfig.preset("papers")
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        RunConfig.from_dict({"epoch": 3})


def test_round_trip():
    config = RunConfig.preset("cpu", model="wrn14-2", lr_milestones=[3, 5])
    assert RunConfig.from_dict({**config.to_dict(), "lr_milestones": tuple(config.lr_milestones)}) == config
    assert config.replace(seed=3).seed == 3 and config.label == "wrn14-2 bn"


def test_configs_of_earlier_versions_load_translated():
    """Result files and run folders written before ``precision`` replaced the boolean
    ``mixed_precision`` still load, as the same setting, and nothing else is renamed."""
    old = {**RunConfig().to_dict(), "mixed_precision": True}
    del old["precision"]
    assert RunConfig.from_dict(old).precision == "mixed_float16"
    assert RunConfig.from_dict({**old, "mixed_precision": False}).precision == "float32"
    assert upgrade({"epochs": 3}) == {"epochs": 3}
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        RunConfig.from_dict({"mixed_precision": False, "epoch": 3})
