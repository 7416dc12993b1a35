"""Model builders: architecture, exact parameter counts, names and their errors."""
import numpy as np
import pytest

from bnlib import freeze, models
from bnlib.batchnorm import BatchNorm

# (total trainable parameters under policy "all", γ+β parameters): the reference counts,
# which match the paper's official code (open_lth).
EXPECTED = {
    "resnet14": (175_258, 1_120),
    "resnet32": (466_906, 2_464),
    "resnet56": (855_770, 4_256),
    "resnet110": (1_730_714, 8_288),
    "wrn14-2": (696_618, 2_240),
}


def counts(model):
    report = freeze.parameter_report(freeze.apply_policy(model, "all"))
    return report["trainable"], report["batchnorm"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts(name):
    assert counts(models.build(name)) == EXPECTED[name]


@pytest.mark.slow
def test_resnet866_parameter_count():
    assert counts(models.build("resnet866")) == (13_979_930, 64_736)


def test_resnet_structure():
    model = models.build("resnet20")
    convs = freeze.conv_layers(model)
    assert all(not conv.use_bias for conv in convs)
    assert [c.filters for c in convs if c.kernel_size == (1, 1)] == [32, 64]  # projection shortcuts
    assert len(freeze.batchnorm_layers(model)) == 19 + 2
    assert all(isinstance(layer, BatchNorm) for layer in freeze.batchnorm_layers(model))
    assert model.layers[-1].name == "output" and model.output.shape == (None, 10)
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


@pytest.mark.parametrize("depth", [14, 20, 32, 44, 56, 110, 218, 434, 866])
def test_every_6n_plus_2_depth_is_valid(depth):
    assert models.check_resnet_depth(depth) == (depth - 2) // 6


def test_names_agree_with_the_builders():
    # bnlib.names checks names without TensorFlow; its depth lists must be the ones models builds.
    assert tuple(models.VGG_LAYOUTS) == models.VGG_DEPTHS
    assert tuple(models.KERAS_RESNETS) == models.KERAS_RESNET_DEPTHS
    assert all(models.parse_name(name) for name in models.EXAMPLE_NAMES)


def test_vgg_and_keras_resnet():
    vgg = models.build("vgg11", num_classes=100)
    assert vgg.output.shape == (None, 100) and len(freeze.batchnorm_layers(vgg)) == 8
    resnet50 = models.build("keras-resnet50")
    assert resnet50.layers[-1].name == "output"
    assert all(isinstance(layer, BatchNorm) for layer in freeze.batchnorm_layers(resnet50))
    assert len(freeze.batchnorm_layers(resnet50)) == 53
    assert all(layer.momentum == 0.9 for layer in freeze.batchnorm_layers(resnet50))
    assert resnet50(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)


@pytest.mark.parametrize("name, fragment", [
    ("resnet15", "14 or 20"),
    ("resnet7", "nearest valid depths: 8"),
    ("wrn14-0", "must be positive"),
    ("wrn15-2", "14 or 20"),
    ("resnett20", "resnet20"),
    ("vgg12", "11, 13, 16, 19"),
    ("keras-resnet34", "50, 101 or 152"),
])
def test_bad_names_name_the_nearest_choice(name, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        models.build(name)
    assert "\n" not in str(error.value)


def test_bn_momentum_reaches_layers():
    model = models.build("resnet14", bn_momentum=0.5)
    assert {layer.momentum for layer in freeze.batchnorm_layers(model)} == {0.5}
    assert {layer.momentum for layer in freeze.batchnorm_layers(models.build("resnet14"))} == {0.9}
