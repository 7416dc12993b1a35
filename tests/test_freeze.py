"""Freezing policies, the BatchNorm inference-mode pitfall, γ/β initialisation and BN momentum."""
import keras
import numpy as np
import pytest

from bnlib import freeze, models, optimizers
from bnlib.config import POLICIES

RESNET14_TRAINABLE = {"all": 175_258, "bn": 1_120, "bn+output": 1_770, "output": 650,
                      "gamma": 560, "beta": 560, "none": 0, "random": 1_120}


def snapshot(model):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


def train_steps(model, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 16)
    model.compile(optimizers.SGD(0.1, momentum=0.9, coupled_weight_decay=1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for _ in range(steps):
        model.train_on_batch(x, y)


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_counts(policy):
    model = freeze.apply_policy(models.build("resnet14"), policy)
    report = freeze.parameter_report(model)
    assert report["trainable"] == RESNET14_TRAINABLE[policy]
    assert report["trainable"] + report["frozen"] == 175_258
    assert report["statistics"] == 1_120


# Policy `none` trains nothing, which Keras points out; the BN statistics still update (checked below).
@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights:UserWarning")
@pytest.mark.parametrize("policy", POLICIES)
def test_frozen_weights_unchanged_and_trained_ones_change(policy):
    keras.utils.set_random_seed(0)
    model = freeze.apply_policy(models.build("resnet8"), policy, seed=1)
    before = snapshot(model)
    train_steps(model)
    after = snapshot(model)
    trained = {v.path for v in model.trainable_weights}
    statistics = {v.path for layer in freeze.batchnorm_layers(model)
                  for v in (layer.moving_mean, layer.moving_variance)}
    for path in before:
        if path in statistics:
            assert not np.array_equal(before[path], after[path]), f"{path}: statistics not updated"
        elif path in trained and policy == "random" and "kernel" in path and "conv" in path:
            changed = before[path] != after[path]
            # two entries per output channel may change, every other entry is bit-for-bit frozen
            assert changed.reshape(-1, changed.shape[-1]).sum(axis=0).max() <= 2
            assert changed.any()
        elif path in trained:
            assert not np.array_equal(before[path], after[path]), f"{path} did not train"
        else:
            assert np.array_equal(before[path], after[path]), f"{path} changed but is frozen"


def test_freezing_gamma_beta_keeps_batch_statistics():
    """bnlib freezes variables, not layers: BN still normalises with batch statistics in training
    and still updates its moving statistics, whatever the policy."""
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(32, 32, 32, 3)).astype("float32")
    model = freeze.apply_policy(models.build("resnet8"), "output")
    bn = freeze.batchnorm_layers(model)[0]
    assert bn.trainable and not bn.gamma.trainable and not bn.beta.trainable
    stem = keras.Model(model.input, model.get_layer("stem_bn").output)
    out = keras.ops.convert_to_numpy(stem(x, training=True))
    # batch statistics: every channel of the training-mode output has mean β = 0 and std γ
    gamma = keras.ops.convert_to_numpy(bn.gamma)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), gamma, rtol=1e-2)
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0.0)


def test_keras_layer_trainable_false_is_the_pitfall():
    """The behaviour bnlib avoids: a BN layer with trainable=False runs in inference mode."""
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(32, 8, 8, 3)).astype("float32")
    layer = keras.layers.BatchNormalization()
    layer.build(x.shape)
    layer.trainable = False
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert abs(out.mean()) > 1.0  # normalised with moving statistics (0, 1), not the batch's
    assert np.allclose(keras.ops.convert_to_numpy(layer.moving_mean), 0.0)  # never updated


def test_apply_policy_undoes_layer_level_freezing():
    model = models.build("resnet8")
    for layer in model.layers:
        layer.trainable = False
    freeze.apply_policy(model, "bn")
    assert all(layer.trainable for layer in freeze.batchnorm_layers(model))
    assert freeze.parameter_report(model)["trainable"] == 2 * 2 * (16 + 16 * 2 + 32 * 3 + 64 * 3) // 2


def test_every_policy_is_a_documented_function():
    assert tuple(freeze.POLICY_FUNCTIONS) == POLICIES
    for policy, function in freeze.POLICY_FUNCTIONS.items():
        assert function.__doc__ and function.__doc__.startswith(f"``{policy}``"), policy


def test_unknown_policy_names_choices():
    with pytest.raises(ValueError, match="did you mean 'bn'.*choose one of"):
        freeze.apply_policy(models.build("resnet8"), "bnn")


def test_policy_table():
    table = freeze.policy_table(["resnet14"], policies=("all", "bn"))
    assert table.loc["resnet14", "bn"] == 1_120 and table.loc["resnet14", "all"] == 175_258


def all_gamma(model):
    return np.concatenate([keras.ops.convert_to_numpy(l.gamma) for l in freeze.batchnorm_layers(model)])


def test_gamma_initialisations():
    model = models.build("resnet20")
    freeze.init_batchnorm(model, "uniform", seed=0)
    gamma = all_gamma(model)
    assert gamma.min() >= 0 and gamma.max() < 1 and 0.4 < gamma.mean() < 0.6
    freeze.init_batchnorm(model, "ones")
    assert np.all(all_gamma(model) == 1)
    freeze.init_batchnorm(model, "normal", seed=0)
    assert 0.8 < all_gamma(model).std() < 1.2 and (all_gamma(model) < 0).any()
    freeze.init_batchnorm(model, "he_normal", seed=0)
    last = keras.ops.convert_to_numpy(freeze.batchnorm_layers(model)[-1].gamma)  # 64 channels
    assert 0.5 * np.sqrt(2 / 64) < last.std() < 1.5 * np.sqrt(2 / 64)
    assert all(np.all(keras.ops.convert_to_numpy(l.beta) == 0) for l in freeze.batchnorm_layers(model))
    freeze.init_batchnorm(model, "ones", beta="normal", seed=0)
    assert np.concatenate([keras.ops.convert_to_numpy(l.beta) for l in freeze.batchnorm_layers(model)]).std() > 0.5
    with pytest.raises(ValueError, match="gamma_init"):
        freeze.init_batchnorm(model, "glorot")


@pytest.mark.parametrize("momentum", [0.9, 0.99])
def test_bn_momentum_sets_the_moving_average(momentum):
    model = freeze.set_bn_momentum(models.build("resnet8"), momentum)
    bn = freeze.batchnorm_layers(model)[0]
    x = np.random.default_rng(0).normal(2.0, 1.0, size=(8, 32, 32, 3)).astype("float32")
    stem = keras.Model(model.input, bn.output)
    conv_out = keras.ops.convert_to_numpy(model.get_layer("stem_conv")(x))
    stem(x, training=True)
    expected = (1 - momentum) * conv_out.mean(axis=(0, 1, 2))  # from a moving mean of 0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), expected, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="0.9 matches PyTorch"):
        freeze.set_bn_momentum(model, 1.5)
