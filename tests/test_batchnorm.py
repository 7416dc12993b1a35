"""bnlib's fused ``BatchNorm`` must behave exactly like ``keras.layers.BatchNormalization``.

Every comparison copies the same random, non-trivial weights (gamma, beta, moving mean and
variance) into both layers and feeds inputs whose per-channel mean and variance are far from 0 and
1, on small batches (so that the Bessel factor n/(n-1) that the fused kernel applies is large
enough to be seen).  Checked: training-mode outputs, gradients with respect to the inputs, gamma and
beta, moving statistics after one and several updates, inference-mode outputs, float32,
mixed_float16 and mixed_bfloat16, epsilon, MirroredStrategy on two logical CPUs (in a subprocess, because logical devices must
be configured before TensorFlow initialises), the fallback to Keras' code path, serialisation, and
a two-step BN-only training run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # plain `pytest` (not `python -m pytest`) from anywhere
    sys.path.insert(0, str(REPO))

from bnlib.batchnorm import BatchNorm  # noqa: E402
SHAPE = (4, 5, 5, 6)  # 100 values per channel: the Bessel factor is 1.0101
MOMENTUM = 0.9
F32 = dict(atol=1e-5, rtol=1e-5)
F16 = dict(atol=1e-3, rtol=1e-3)  # about one float16 ulp (2**-10 relative); observed: 0
BF16 = dict(atol=8e-3, rtol=8e-3)  # about one bfloat16 ulp (2**-7 relative); observed: 0
TOL = {"float32": F32, "mixed_float16": F16, "mixed_bfloat16": BF16}
COMPUTE_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# Raised inside Keras' own saving code (tf.Variable.__array__ under NumPy 2), not by bnlib.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ----------------------------------------------------------------------------------------------
# helpers


def random_weights(channels: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.uniform(0.5, 2.0, channels).astype("float32"),  # gamma
        rng.normal(0.0, 1.0, channels).astype("float32"),  # beta
        rng.normal(0.0, 0.5, channels).astype("float32"),  # moving mean
        rng.uniform(0.5, 2.0, channels).astype("float32"),  # moving variance
    ]


def random_inputs(shape=SHAPE, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    scale = rng.uniform(0.5, 3.0, channels)
    offset = rng.normal(0.0, 2.0, channels)
    return (rng.normal(size=shape) * scale + offset).astype("float32")


def layer_pair(shape=SHAPE, seed: int = 0, **kwargs):
    """A bnlib BatchNorm and a Keras BatchNormalization, built, with the same random weights."""
    fused = BatchNorm(momentum=MOMENTUM, **kwargs)
    ref = keras.layers.BatchNormalization(momentum=MOMENTUM, **kwargs)
    fused.build(shape)
    ref.build(shape)
    weights = random_weights(shape[-1], seed)
    fused.set_weights(weights)
    ref.set_weights(weights)
    return fused, ref


def to_numpy(value) -> np.ndarray:
    value = value.numpy() if hasattr(value, "numpy") else value
    return np.asarray(value, dtype="float64")


def assert_close(actual, expected, tol, what=""):
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), err_msg=what, **tol)


def forward_and_grads(layer, x, w):
    """Training-mode output and d(sum(out * w))/d(x, gamma, beta)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * w)
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return out, dx, dgamma, dbeta


@pytest.fixture(params=["float32", "mixed_float16", "mixed_bfloat16"])
def precision(request):
    """Run the test under a global dtype policy; always restore float32 afterwards."""
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def fused_calls(monkeypatch):
    """Count calls of tf.compat.v1.nn.fused_batch_norm (to prove which code path ran)."""
    calls = []
    original = tf.compat.v1.nn.fused_batch_norm

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", counting)
    return calls


# ----------------------------------------------------------------------------------------------
# the layer alone, float32 and mixed precision


def test_fused_path_is_taken_for_4d_training(fused_calls):
    fused, _ = layer_pair()
    fused(random_inputs(), training=True)
    assert len(fused_calls) == 1
    fused(random_inputs(), training=False)  # inference: Keras' path
    assert len(fused_calls) == 1


def test_training_outputs_gradients_and_moving_stats(precision):
    tol = TOL[precision]
    fused, ref = layer_pair()
    assert fused.compute_dtype == ref.compute_dtype == COMPUTE_DTYPE[precision]
    x = tf.cast(random_inputs(), fused.compute_dtype)
    w = tf.constant(np.random.default_rng(2).normal(size=SHAPE).astype("float32"))

    out_f, dx_f, dg_f, db_f = forward_and_grads(fused, x, w)
    out_r, dx_r, dg_r, db_r = forward_and_grads(ref, x, w)
    assert out_f.dtype == out_r.dtype
    assert_close(out_f, out_r, tol, "training-mode output")
    # Gradients: dx is of the order of gamma/std * |w| ~ 1; dgamma/dbeta sum 100 terms.
    assert_close(dx_f, dx_r, tol, "d/dx")
    assert_close(dg_f, dg_r, {k: v * 10 for k, v in tol.items()}, "d/dgamma")
    assert_close(db_f, db_r, {k: v * 10 for k, v in tol.items()}, "d/dbeta")
    # Moving statistics after one update (they are float32 in both precisions).
    stat_tol = F32 if precision == "float32" else dict(atol=1e-4, rtol=1e-4)
    assert_close(fused.moving_mean, ref.moving_mean, stat_tol, "moving mean, 1 step")
    assert_close(fused.moving_variance, ref.moving_variance, stat_tol, "moving variance, 1 step")


def test_moving_stats_after_several_steps_and_inference(precision):
    tol = TOL[precision]
    stat_tol = F32 if precision == "float32" else dict(atol=1e-4, rtol=1e-4)
    fused, ref = layer_pair()
    for step in range(5):
        x = tf.cast(random_inputs(seed=10 + step), fused.compute_dtype)
        assert_close(fused(x, training=True), ref(x, training=True), tol, f"output, step {step}")
    # Independent check against the definition (biased batch variance, momentum 0.9).
    mean, var = random_weights(SHAPE[-1])[2:]
    mean, var = mean.astype("float64"), var.astype("float64")
    for step in range(5):
        x = tf.cast(random_inputs(seed=10 + step), fused.compute_dtype).numpy().astype("float64")
        mean = MOMENTUM * mean + (1 - MOMENTUM) * x.mean(axis=(0, 1, 2))
        var = MOMENTUM * var + (1 - MOMENTUM) * x.var(axis=(0, 1, 2))
    for layer in (fused, ref):
        assert_close(layer.moving_mean, mean, stat_tol, f"{layer.__class__.__name__} moving mean")
        assert_close(layer.moving_variance, var, stat_tol, f"{layer.__class__.__name__} moving variance")
    x = tf.cast(random_inputs(seed=99), fused.compute_dtype)
    assert_close(fused(x, training=False), ref(x, training=False), tol, "inference output")
    assert_close(fused(x), ref(x), tol, "output with training=None")


@pytest.mark.parametrize("epsilon", [1e-6, 1.001e-5, 1e-1])
def test_epsilon_is_honoured(epsilon, fused_calls):
    """Older TensorFlow raised epsilon to at least 1.001e-5 inside fused_batch_norm; a channel
    with variance 1e-6 makes any such clamp (or a dropped epsilon) visible.  (Its mean is kept
    small: a large mean would cost float32 input resolution, in both layers alike.)"""
    fused, ref = layer_pair(epsilon=epsilon)
    x = random_inputs()
    c = x[..., 0]
    x[..., 0] = (c - c.mean()) * 1e-3 / c.std() + 2e-3  # variance 1e-6
    gamma, beta = (w.astype("float64") for w in random_weights(SHAPE[-1])[:2])
    x64 = x.astype("float64")
    exact = (x64 - x64.mean((0, 1, 2))) / np.sqrt(x64.var((0, 1, 2)) + epsilon) * gamma + beta
    out = fused(x, training=True)
    assert_close(out, ref(x, training=True), dict(atol=1e-4, rtol=1e-4), "fused vs keras")
    assert_close(out, exact, dict(atol=1e-4, rtol=1e-4), "fused vs float64 definition")
    assert len(fused_calls) == 1


def test_frozen_layer_uses_moving_stats_and_does_not_update_them(fused_calls):
    fused, ref = layer_pair()
    fused.trainable = ref.trainable = False
    before = [w.copy() for w in fused.get_weights()]
    x = random_inputs()
    assert_close(fused(x, training=True), ref(x, training=True), F32, "frozen layer output")
    assert not fused_calls
    for a, b in zip(fused.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_frozen_variables_keep_batch_statistics():
    """bnlib freezes *variables* (gamma.trainable = False): the layer still normalises with batch
    statistics and still updates its moving averages."""
    fused, ref = layer_pair()
    for layer in (fused, ref):
        layer.gamma.trainable = False
        layer.beta.trainable = False
    x = random_inputs()
    assert_close(fused(x, training=True), ref(x, training=True), F32, "output")
    assert_close(fused.moving_variance, ref.moving_variance, F32, "moving variance")
    assert not np.allclose(fused.moving_variance.numpy(), random_weights(SHAPE[-1])[3])


# ----------------------------------------------------------------------------------------------
# fallback to Keras' implementation


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((16, 7), {}),  # 2-D input
        ((4, 6, 7), {}),  # 3-D input
        (SHAPE, {"renorm": True}),
        (SHAPE, {"center": False}),
        ((4, 6, 5, 5), {"axis": 1}),  # channels first
    ],
    ids=["2d", "3d", "renorm", "no-center", "channels-first"],
)
def test_fallback_to_keras(shape, kwargs, fused_calls):
    fused = BatchNorm(momentum=MOMENTUM, **kwargs)
    ref = keras.layers.BatchNormalization(momentum=MOMENTUM, **kwargs)
    fused.build(shape)
    ref.build(shape)
    axis = kwargs.get("axis", -1)
    channels = shape[axis]
    weights = ref.get_weights()
    rng = np.random.default_rng(5)
    weights = [w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in weights]
    fused.set_weights(weights)
    ref.set_weights(weights)
    assert fused.moving_mean.shape == (channels,)
    for step in range(2):
        x = random_inputs(shape, seed=20 + step)
        assert_close(fused(x, training=True), ref(x, training=True), F32, f"output, step {step}")
    for a, b in zip(fused.get_weights(), ref.get_weights()):
        assert_close(a, b, F32, "weights after updates")
    assert not fused_calls, "the fused kernel must not run for this configuration"


# ----------------------------------------------------------------------------------------------
# serialisation


def tiny_model(bn_class, name="tiny"):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = bn_class(momentum=MOMENTUM, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv2")(x)
    y = bn_class(momentum=MOMENTUM, name="bn2")(y)
    x = keras.layers.ReLU(name="relu2")(keras.layers.Add(name="add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.mark.parametrize("setting, expected", [(None, "on"), ("0", "off"), ("1", "on")])
def test_onednn_is_on_by_default_and_can_be_turned_off(setting, expected):
    """bnlib turns TensorFlow's oneDNN CPU kernels on unless TF_ENABLE_ONEDNN_OPTS says otherwise,
    and the device description that goes into every result's provenance says which."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = "import bnlib; from bnlib.runtime import describe_device; print(describe_device())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    assert f"oneDNN {expected}" in proc.stdout, proc.stdout
    # ... and importing bnlib keeps TensorFlow's oneDNN notice out of stderr (notebook outputs).
    assert "oneDNN custom operations" not in proc.stderr, proc.stderr


def test_quiet_import_passes_other_stderr_lines_on():
    """Only the oneDNN notice is dropped: TensorFlow's other start-up lines still reach stderr."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run([sys.executable, "-c", "import bnlib.models"], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    assert "cpu_feature_guard" in proc.stderr or "I0000" in proc.stderr, proc.stderr
    assert "oneDNN custom operations" not in proc.stderr, proc.stderr


def test_import_works_without_stderr():
    """A detached process (no file descriptor 2, sys.stderr is None) can still import bnlib and,
    through it, TensorFlow."""
    proc = subprocess.run([sys.executable, "-c", "import bnlib; bnlib.models; print('imported')"],
                          capture_output=False, stdout=subprocess.PIPE, text=True, timeout=300,
                          preexec_fn=lambda: os.close(2))
    assert proc.returncode == 0 and "imported" in proc.stdout


def test_config_round_trip():
    layer = BatchNorm(momentum=0.8, epsilon=1e-4, name="bn", gamma_initializer="ones")
    clone = BatchNorm.from_config(layer.get_config())
    assert type(clone) is BatchNorm
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is BatchNorm and restored.momentum == 0.8 and restored.epsilon == 1e-4


def test_model_save_load_keras(tmp_path):
    model = tiny_model(BatchNorm)
    rng = np.random.default_rng(3)
    model.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert type(loaded.get_layer("bn1")) is BatchNorm
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = random_inputs((4, 8, 8, 3))
    assert_close(loaded(x, training=False), model(x, training=False), F32, "inference after load")
    assert_close(loaded(x, training=True), model(x, training=True), F32, "training after load")


# ----------------------------------------------------------------------------------------------
# BN-only training, fused vs Keras


def freeze_all_but_bn_variables(model):
    """bnlib's way: non-BN variables get trainable=False; every layer stays trainable."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            for v in layer.weights:
                v.trainable = False


def freeze_non_bn_layers(model):
    """The seed article's way: layer.trainable = False on every non-BN layer."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def test_bn_only_training_matches_keras():
    fused = tiny_model(BatchNorm, "fused")
    keras_vars = tiny_model(keras.layers.BatchNormalization, "keras_vars")
    seed = tiny_model(keras.layers.BatchNormalization, "seed")
    rng = np.random.default_rng(4)
    weights = [w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in fused.get_weights()]
    for model in (fused, keras_vars, seed):
        model.set_weights(weights)
    freeze_all_but_bn_variables(fused)
    freeze_all_but_bn_variables(keras_vars)
    freeze_non_bn_layers(seed)
    for model in (fused, keras_vars, seed):
        assert sorted(v.path for v in model.trainable_variables) == sorted(
            f"{bn}/{p}" for bn in ("bn1", "bn2") for p in ("gamma", "beta"))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    xs = [random_inputs((16, 8, 8, 3), seed=30 + i) for i in range(2)]
    ys = [np.random.default_rng(40 + i).integers(0, 10, 16) for i in range(2)]
    losses = {m.name: [float(m.train_on_batch(x, y)) for x, y in zip(xs, ys)]
              for m in (fused, keras_vars, seed)}
    np.testing.assert_allclose(losses["fused"], losses["keras_vars"], rtol=1e-5)
    np.testing.assert_allclose(losses["fused"], losses["seed"], rtol=1e-5)
    tol = dict(atol=1e-5, rtol=1e-4)
    for other in (keras_vars, seed):
        for a, b in zip(fused.weights, other.weights):
            assert_close(a, b, tol, f"{a.path} vs {other.name}")
    # Convolutions and classifier did not move; gamma/beta did.
    for a, w in zip(fused.weights, weights):
        if "bn" in a.path and a.name in ("gamma", "beta"):
            assert np.abs(a.numpy() - w).max() > 1e-4, a.path
        elif "bn" not in a.path:
            np.testing.assert_array_equal(a.numpy(), w, err_msg=a.path)


def test_resnet_forward_matches_keras_clone():
    """A whole bnlib ResNet in training mode equals its clone with Keras' layer (errors compound
    over depth, so this is a stricter check than a single layer)."""
    from bnlib import models

    model = models.build("resnet14", input_shape=(16, 16, 3))
    clone = keras.models.clone_model(
        model,
        clone_function=lambda l: (keras.layers.BatchNormalization.from_config(l.get_config())
                                  if isinstance(l, BatchNorm) else l.__class__.from_config(l.get_config())),
    )
    assert not any(isinstance(l, BatchNorm) for l in clone.layers)
    rng = np.random.default_rng(6)
    weights = [w + rng.uniform(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    clone.set_weights(weights)
    x = random_inputs((8, 16, 16, 3), seed=7)
    assert_close(model(x, training=True), clone(x, training=True), dict(atol=1e-4, rtol=1e-4), "logits")
    for a, b in zip(model.weights, clone.weights):
        assert_close(a, b, dict(atol=1e-5, rtol=1e-4), a.path)


# ----------------------------------------------------------------------------------------------
# MirroredStrategy on two logical CPUs, in a fresh interpreter

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from bnlib.batchnorm import BatchNorm

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    rng = np.random.default_rng(0)
    shape = (8, 5, 5, 6)
    weights = [rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(0, 0.5, 6), rng.uniform(0.5, 2, 6)]
    weights = [w.astype("float32") for w in weights]
    with strategy.scope():
        fused = BatchNorm(momentum=0.9)
        ref = keras.layers.BatchNormalization(momentum=0.9)
        for layer in (fused, ref):
            layer.build(shape)
            layer.set_weights(weights)
    xs = [(rng.normal(size=shape) * 2 + 1).astype("float32") for _ in range(3)]
    ws = rng.normal(size=(4,) + shape[1:]).astype("float32")

    @tf.function
    def step(batch):
        def replica_fn(x):
            out = {}
            for key, layer in (("fused", fused), ("ref", ref)):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x, training=True)
                    loss = tf.reduce_sum(y * ws)
                out[key] = [y] + tape.gradient(loss, [x, layer.gamma, layer.beta])
            return out
        return strategy.run(replica_fn, args=(batch,))

    diffs = {"output": 0.0, "dx": 0.0, "dgamma": 0.0, "dbeta": 0.0}
    for x in xs:
        dist = next(iter(strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(x))))
        out = step(dist)
        for i, key in enumerate(diffs):
            for a, b in zip(strategy.experimental_local_results(out["fused"][i]),
                            strategy.experimental_local_results(out["ref"][i])):
                diffs[key] = max(diffs[key], float(np.abs(a.numpy() - b.numpy()).max()))
    # Keras keeps one moving average per replica (aggregation "none"): compare every copy.
    for name in ("moving_mean", "moving_variance"):
        copies_f = [v.numpy() for v in getattr(fused, name).value.values]
        copies_r = [v.numpy() for v in getattr(ref, name).value.values]
        diffs[name] = max(float(np.abs(a - b).max()) for a, b in zip(copies_f, copies_r))
        diffs[name + "_moved"] = float(np.abs(copies_f[0] - weights[2 if name == "moving_mean" else 3]).max())
    # Per-replica moving variance against numpy (biased variance of each replica's half batch).
    var = [weights[3].astype("float64")] * 2
    for x in xs:
        var = [0.9 * v + 0.1 * x[4 * r:4 * r + 4].astype("float64").var(axis=(0, 1, 2))
               for r, v in enumerate(var)]
    diffs["moving_variance_vs_numpy"] = max(
        float(np.abs(v.numpy() - e).max()) for v, e in zip(fused.moving_variance.value.values, var))

    # Two BN-only fit steps of a small model under the strategy.
    def small(bn_class):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
        x = bn_class(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="output")(x))

    with strategy.scope():
        models = [small(BatchNorm), small(keras.layers.BatchNormalization)]
        init = [w + 0.2 for w in models[0].get_weights()]
        for m in models:
            m.set_weights(init)
            for layer in m.layers:
                if not isinstance(layer, keras.layers.BatchNormalization):
                    for v in layer.weights:
                        v.trainable = False
            m.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    for m in models:
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    diffs["fit_weights"] = max(float(np.abs(a - b).max())
                               for a, b in zip(models[0].get_weights(), models[1].get_weights()))
    diffs["fit_gamma_moved"] = float(np.abs(models[0].get_weights()[1] - init[1]).max())
    result["diffs"] = diffs
    print("RESULT " + json.dumps(result))
    """
)


def test_mirrored_strategy_two_logical_cpus():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(REPO)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    d = result["diffs"]
    for key in ("output", "dx", "moving_mean", "moving_variance", "moving_variance_vs_numpy"):
        assert d[key] < 1e-4, (key, d)
    for key in ("dgamma", "dbeta", "fit_weights"):
        assert d[key] < 1e-3, (key, d)
    assert d["moving_mean_moved"] > 1e-2 and d["moving_variance_moved"] > 1e-2, d
    assert d["fit_gamma_moved"] > 1e-4, d
