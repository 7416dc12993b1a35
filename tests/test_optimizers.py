"""Weight decay in the paper's (PyTorch's) form: an L2 term on the gradient, counted once per step
also when a batch is split across devices."""
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from bnlib import optimizers
from bnlib.config import RunConfig
from bnlib.training import make_optimizer

REPO = Path(__file__).resolve().parents[1]
DECAY = 1e-2


def run_steps(optimizer, gradients, feed_decay=0.0):
    """Apply ``gradients`` to a variable starting at [1, -2, 3]; with ``feed_decay`` the
    optimizer sees ``gradient + feed_decay * w`` instead (the L2 term computed by hand)."""
    variable = keras.Variable(np.array([1.0, -2.0, 3.0], "float32"))
    for gradient in gradients:
        w = keras.ops.convert_to_numpy(variable)
        optimizer.apply([keras.ops.convert_to_tensor(gradient + feed_decay * w)], [variable])
    return keras.ops.convert_to_numpy(variable)


def sgd_torch(gradients, lr, momentum, decay):
    """torch.optim.SGD's update (dampening 0, no Nesterov), written out in NumPy."""
    w, buffer = np.array([1.0, -2.0, 3.0]), None
    for gradient in gradients:
        gradient = gradient + decay * w
        buffer = gradient if buffer is None else momentum * buffer + gradient
        w = w - lr * buffer
    return w


GRADIENTS = list(np.random.default_rng(0).normal(size=(5, 3)).astype("float32"))  # five different steps


def test_sgd_weight_decay_is_torchs():
    ours = run_steps(optimizers.SGD(learning_rate=0.1, momentum=0.9, coupled_weight_decay=DECAY), GRADIENTS)
    np.testing.assert_allclose(ours, sgd_torch(GRADIENTS, 0.1, 0.9, DECAY), rtol=1e-5)
    # ... which Keras' own weight_decay is not: it shrinks the weights after the step instead.
    keras_decoupled = run_steps(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=DECAY), GRADIENTS)
    assert not np.allclose(keras_decoupled, ours, rtol=1e-4)


def test_sgd_decay_alone_shrinks_weights_through_momentum():
    """No loss gradient: weights shrink by the L2 term, accelerated by the momentum buffer."""
    zeros = [np.zeros(3, "float32")] * 50
    ours = run_steps(optimizers.SGD(learning_rate=0.1, momentum=0.9, coupled_weight_decay=DECAY), zeros)
    np.testing.assert_allclose(ours, sgd_torch(zeros, 0.1, 0.9, DECAY), rtol=1e-5)
    keras_decoupled = run_steps(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=DECAY), zeros)
    shrink_ours, shrink_keras = 1 - ours[0], 1 - keras_decoupled[0]
    assert shrink_ours > 5 * shrink_keras > 0  # ~1/(1 - momentum) = 10x, minus the buffer's start-up


def test_adam_weight_decay_enters_the_moments():
    ours = run_steps(optimizers.Adam(learning_rate=0.01, coupled_weight_decay=DECAY), GRADIENTS)
    by_hand = run_steps(keras.optimizers.Adam(learning_rate=0.01), GRADIENTS, feed_decay=DECAY)
    np.testing.assert_allclose(ours, by_hand, rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_make_optimizer_uses_the_config(name):
    optimizer = make_optimizer(RunConfig(optimizer=name, weight_decay=5e-4, clipnorm=1.0))
    assert optimizer.coupled_weight_decay == 5e-4 and optimizer.weight_decay is None
    assert optimizer.global_clipnorm == 1.0
    assert type(optimizer).from_config(optimizer.get_config()).coupled_weight_decay == 5e-4
    assert make_optimizer(RunConfig(optimizer=name, weight_decay=0.0)).coupled_weight_decay == 0.0


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from bnlib import optimizers

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        variable = keras.Variable(np.array([1.0, -2.0, 3.0], "float32"))
        optimizer = optimizers.SGD(learning_rate=0.1, momentum=0.9, coupled_weight_decay=float(sys.argv[2]))
        optimizer.build([variable])

    @tf.function
    def step():
        def replica_fn():  # each replica's share of a zero loss gradient
            optimizer.apply([tf.zeros(3)], [variable])
        strategy.run(replica_fn)

    for _ in range(3):
        step()
    print("RESULT", " ".join(repr(float(v)) for v in variable.value.values[0].numpy()),
          strategy.num_replicas_in_sync)
    """)


@pytest.mark.slow
def test_decay_counts_once_across_replicas():
    out = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(REPO), str(DECAY)],
                         capture_output=True, text=True, timeout=300)
    line = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert line, out.stderr[-2000:]
    *values, replicas = line[0].split()[1:]
    assert replicas == "2"
    zeros = [np.zeros(3)] * 3
    np.testing.assert_allclose([float(v) for v in values], sgd_torch(zeros, 0.1, 0.9, DECAY), rtol=1e-5)


def test_describe_names_the_weight_decay_form():
    """A result says which weight decay it ran with: bnlib's coupled L2 term or Keras' decoupled one."""
    paper = optimizers.describe(make_optimizer(RunConfig.preset("paper", clipnorm=2.0)))
    assert paper == ("bnlib.optimizers.SGD (momentum 0.9; weight decay 0.0001 as an L2 term on the "
                     "gradient; gradients clipped to global norm 2)")
    assert optimizers.describe(make_optimizer(RunConfig.preset("cpu"))) == "bnlib.optimizers.Adam"
    keras_decay = optimizers.describe(keras.optimizers.SGD(momentum=0.5, weight_decay=1e-3))
    assert keras_decay.endswith("SGD (momentum 0.5; decoupled weight decay 0.001)")
