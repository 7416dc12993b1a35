"""Freezing policies, γ/β initialisation and BatchNorm momentum: the one place that knows Keras'
trainable semantics.

The pitfall.  In Keras, ``layer.trainable = False`` on a BatchNormalization layer does two things:
it freezes γ and β *and* it makes the layer run in inference mode (normalising with its moving
statistics, which stop updating).  Freezing every layer except BN is therefore fine, but freezing
γ/β that way (the ``output``, ``none`` and ``random`` baselines) silently changes the network.
bnlib never sets ``trainable`` on layers; it sets it on *variables* (``variable.trainable``), so
every BatchNorm layer keeps normalising with batch statistics in training and keeps updating its
moving statistics, whichever parameters are trained.

Policies (a policy chooses which parameters the optimizer sees; each is a function,
``trains_<policy>``, listed in ``POLICY_FUNCTIONS``):

==============  ==========================================================================
``all``         everything (ordinary full training)
``bn``          BatchNorm γ and β only (the paper's main setting)
``bn+output``   γ, β and the output layer
``output``      the output layer only (a linear probe of random features)
``gamma``       γ only
``beta``        β only
``none``        nothing (the network at initialisation)
``random``      two randomly chosen weights per channel of every convolution (as many
                parameters as BN's γ and β) instead of γ and β: the paper's control
==============  ==========================================================================
"""
from __future__ import annotations

import numpy as np

from .config import BETA_INITS, GAMMA_INITS, POLICIES, _check_choice
from .runtime import keras


def batchnorm_layers(model: keras.Model) -> list:
    """Every BatchNormalization layer of ``model``, in order, including nested models."""
    return [layer for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def conv_layers(model: keras.Model) -> list:
    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Conv2D)]


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The classifier: the last Dense layer."""
    dense = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"Model {model.name!r} has no Dense output layer; policies need one.")
    return dense[-1]


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


class KeepFrozenEntries(keras.constraints.Constraint):
    """Restore every entry where ``mask`` is 0 to its initial value after each optimizer step.

    Keras can only freeze whole variables; the ``random`` control trains a few entries of each
    kernel.  Keras' optimizers apply a variable's constraint right after every update, so restoring
    the frozen entries there keeps them bit-for-bit equal to their initial values whatever the
    optimizer (momentum, Adam moments, weight decay) does.
    """

    def __init__(self, mask: np.ndarray, initial: np.ndarray):
        self.mask = keras.ops.convert_to_tensor(mask.astype(initial.dtype))
        self.initial = keras.ops.convert_to_tensor(initial)

    def __call__(self, w):
        return self.mask * w + (1 - self.mask) * self.initial


def _random_entries_mask(kernel_shape, per_channel: int, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 mask choosing ``per_channel`` random entries for each output channel of a kernel."""
    fan_in = int(np.prod(kernel_shape[:-1]))
    mask = np.zeros((fan_in, kernel_shape[-1]), dtype=bool)
    for channel in range(kernel_shape[-1]):
        mask[rng.choice(fan_in, size=min(per_channel, fan_in), replace=False), channel] = True
    return mask.reshape(kernel_shape)


# ------------------------------------------------------------------------------------- policies
# One function per policy: the variables it trains.  apply_policy makes exactly those trainable.

def trains_all(model: keras.Model) -> list:
    """``all``: every parameter (ordinary full training); the BN moving statistics are never
    trained by the optimizer, whatever the policy."""
    return [v for layer in _all_layers(model) for v in layer.weights if not _is_statistic(layer, v)]


def trains_bn(model: keras.Model) -> list:
    """``bn``: γ and β of every BatchNorm layer, the paper's main setting."""
    return trains_gamma(model) + trains_beta(model)


def trains_bn_and_output(model: keras.Model) -> list:
    """``bn+output``: γ, β and the output layer's kernel and bias."""
    return trains_bn(model) + trains_output(model)


def trains_output(model: keras.Model) -> list:
    """``output``: the output layer only, a linear classifier on the random features."""
    return list(output_layer(model).weights)


def trains_gamma(model: keras.Model) -> list:
    """``gamma``: the BN scales γ only; β stays at its initial value."""
    return [layer.gamma for layer in batchnorm_layers(model)]


def trains_beta(model: keras.Model) -> list:
    """``beta``: the BN shifts β only; γ stays at its initial value."""
    return [layer.beta for layer in batchnorm_layers(model)]


def trains_nothing(model: keras.Model) -> list:
    """``none``: nothing; the network stays at its initialisation (BN statistics still adapt)."""
    return []


def trains_random_entries(model: keras.Model) -> list:
    """``random``, the paper's control: the kernel of every convolution, of which apply_policy
    lets only two randomly chosen entries per output channel change (:class:`KeepFrozenEntries`),
    as many parameters as BN's γ and β, trained instead of them."""
    return [layer.kernel for layer in conv_layers(model)]


POLICY_FUNCTIONS = {"all": trains_all, "bn": trains_bn, "bn+output": trains_bn_and_output,
                    "output": trains_output, "gamma": trains_gamma, "beta": trains_beta,
                    "none": trains_nothing, "random": trains_random_entries}


def apply_policy(model: keras.Model, policy: str, seed: int = 0) -> keras.Model:
    """Make exactly the parameters of ``policy`` trainable (in place; see ``POLICY_FUNCTIONS``);
    returns ``model``.

    Works on variables, never on layers, so BatchNorm always trains with batch statistics.
    Call before ``model.compile``.
    """
    _check_choice("policy", policy, POLICIES)
    output_layer(model)  # every policy needs a classifier to read the features out
    trainable = {id(v) for v in POLICY_FUNCTIONS[policy](model)}
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        layer.trainable = True  # undo any layer-level freezing; variables decide
        for variable in layer.weights:
            if _is_statistic(layer, variable):
                continue
            variable.trainable = id(variable) in trainable
            variable.constraint = None
        if policy == "random" and isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel
            mask = _random_entries_mask(tuple(kernel.shape), 2, rng)
            kernel.constraint = KeepFrozenEntries(mask, keras.ops.convert_to_numpy(kernel))
    return model


def _is_statistic(layer, variable) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization) and variable.path in (
        layer.moving_mean.path, layer.moving_variance.path)


def parameter_report(model: keras.Model) -> dict:
    """Counts of trainable parameters, frozen parameters and BN statistics (never trained).

    For ``random``, "trainable" counts the entries the optimizer may actually change.
    """
    trainable = frozen = statistics = 0
    for layer in _all_layers(model):
        for variable in layer.weights:
            size = int(np.prod(variable.shape))
            if _is_statistic(layer, variable):
                statistics += size
            elif variable.trainable and isinstance(variable.constraint, KeepFrozenEntries):
                free = int(keras.ops.convert_to_numpy(variable.constraint.mask).sum())
                trainable += free
                frozen += size - free
            elif variable.trainable:
                trainable += size
            else:
                frozen += size
    bn = sum(int(np.prod(layer.gamma.shape)) * 2 for layer in batchnorm_layers(model))
    total = trainable + frozen
    return {"trainable": trainable, "frozen": frozen, "statistics": statistics,
            "total": total, "batchnorm": bn,
            "trainable_fraction": trainable / total if total else 0.0}


def policy_table(model_names, policies=POLICIES):
    """A pandas table of trainable-parameter counts: one row per model, one column per policy."""
    import pandas as pd

    from .models import build

    rows = {}
    for name in model_names:
        model = build(name)
        rows[name] = {p: parameter_report(apply_policy(model, p))["trainable"] for p in policies}
    return pd.DataFrame.from_dict(rows, orient="index")


def init_batchnorm(model: keras.Model, gamma: str = "uniform", beta: str = "zeros",
                   seed: int = 0) -> keras.Model:
    """Re-initialise every BN's γ and β by name (in place).

    γ: ``ones`` (Keras' default), ``uniform`` (U[0, 1), the official code's default),
    ``normal`` (N(0, 1)), ``he_normal`` (the seed article's choice: Keras' HeNormal on the
    1-D γ, i.e. a truncated normal with std sqrt(2 / channels)).
    β: ``zeros`` (default) or ``normal`` (N(0, 1)).
    """
    _check_choice("gamma_init", gamma, GAMMA_INITS)
    _check_choice("beta_init", beta, BETA_INITS)
    rng = np.random.default_rng(seed)
    for layer in batchnorm_layers(model):
        shape = tuple(layer.gamma.shape)
        gamma_values = {
            "ones": lambda: np.ones(shape),
            "uniform": lambda: rng.uniform(0.0, 1.0, shape),
            "normal": lambda: rng.normal(0.0, 1.0, shape),
            "he_normal": lambda: keras.ops.convert_to_numpy(keras.initializers.HeNormal(
                seed=int(rng.integers(2**31)))(shape)),
        }[gamma]()
        beta_values = np.zeros(shape) if beta == "zeros" else rng.normal(0.0, 1.0, shape)
        layer.gamma.assign(gamma_values.astype(layer.gamma.dtype))
        layer.beta.assign(beta_values.astype(layer.beta.dtype))
    return model


def set_bn_momentum(model: keras.Model, momentum: float = 0.9) -> keras.Model:
    """Set every BN layer's moving-average momentum (in place).

    Keras' ``momentum`` is the weight of the *old* value; PyTorch's is the weight of the new batch.
    PyTorch's default 0.1 is therefore Keras 0.9.  Keras' own default 0.99 makes the moving
    statistics lag far behind γ/β when only they are trained, so test accuracy trails.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"BN momentum must be in [0, 1), got {momentum}; 0.9 matches PyTorch.")
    for layer in batchnorm_layers(model):
        layer.momentum = momentum
    return model
