"""What γ and β learned: per-layer statistics, near-zero fractions, the small-γ ablation, and
comparison tables of many results with the paper's reference figures beside them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .names import parse_name
from .results import Result

DEFAULT_THRESHOLD = 0.05  # |γ| below this counts as "switched off" (our choice; notebooks sweep it)

# Reference figures from Frankle, Schwab & Morcos (ICLR 2021), CIFAR-10, read off the paper: BN-only
# ResNet-14 about 48%, ResNet-866 about 82%; full training of these ResNets about 91-93%.
PAPER = {
    ("resnet14", "bn"): "≈48",
    ("resnet866", "bn"): "≈82",
    ("resnet14", "all"): "≈91-93",
    ("resnet866", "all"): "≈91-93",
}
PAPER_CITATION = ("Frankle, Schwab & Morcos, 'Training BatchNorm and Only BatchNorm', ICLR 2021: "
                  "CIFAR-10, 160 epochs, SGD; figures approximate, read off the paper.")
PAPER_DISABLED_FRACTION = "about a third of features"


def fraction_below(values, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of entries with |value| < threshold (γ of a Result, a dict of arrays or an array)."""
    if isinstance(values, Result):
        values = values.all_gamma()
    elif isinstance(values, dict):
        values = np.concatenate([np.ravel(v) for v in values.values()])
    values = np.abs(np.asarray(values, dtype=np.float64))
    return float((values < threshold).mean()) if values.size else float("nan")


def layer_table(result: Result, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per BN layer: channels, mean |γ|, fraction |γ| < threshold, mean β, β shift, and
    how much training scaled the layer's (γ, β): the norm of the pair, trained over initial."""
    rows = []
    for depth, (layer, gamma) in enumerate(result.gamma.items()):
        beta = result.beta[layer]
        beta0 = result.initial_beta.get(layer, np.zeros_like(beta))
        initial_norm = np.linalg.norm(np.concatenate([result.initial_gamma.get(layer, np.full_like(gamma, np.nan)),
                                                      beta0]))
        rows.append({
            "layer": layer, "index": depth, "channels": gamma.size,
            "mean |γ|": float(np.abs(gamma).mean()),
            f"|γ|<{threshold:g}": fraction_below(gamma, threshold),
            "mean β": float(beta.mean()),
            "mean |β-β0|": float(np.abs(beta - beta0).mean()),
            "norm growth": float(np.linalg.norm(np.concatenate([gamma, beta])) / initial_norm)
                           if initial_norm > 0 else float("nan"),
        })
    return pd.DataFrame(rows).set_index("layer")


def threshold_sweep(result: Result, thresholds=(0.01, 0.02, 0.05, 0.1, 0.2)) -> pd.Series:
    """Fraction of |γ| below each threshold, for the initial and the final γ."""
    initial = result.all_initial_gamma()
    return pd.DataFrame({
        "initial γ": [fraction_below(initial, t) for t in thresholds],
        "trained γ": [fraction_below(result.all_gamma(), t) for t in thresholds],
    }, index=pd.Index(thresholds, name="threshold"))


def ablate_small_gamma(model, x, y, threshold: float = DEFAULT_THRESHOLD, batch_size: int = 500,
                       control_seed: int | None = 0) -> dict:
    """Zero γ of every channel with |γ| < threshold and re-evaluate; restores γ afterwards.

    With γ = 0 a channel's BN output is the constant β: the feature is switched off.  As a control,
    the same number of *randomly chosen* channels per layer is zeroed too (unless control_seed is
    None).  ``x`` must be normalised images as the model was trained on; returns accuracies and
    the fraction of channels zeroed.
    """
    from . import freeze
    from .runtime import keras

    layers = freeze.batchnorm_layers(model)
    saved = [layer.gamma.numpy().copy() for layer in layers]

    def accuracy() -> float:
        # Eager forward passes: model.predict would trace a new tf.function per model, and a
        # notebook ablating several networks fills its page with TensorFlow's retracing warnings.
        logits = np.concatenate([keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
                                 for i in range(0, len(x), batch_size)])
        return float((np.argmax(logits, axis=1) == np.ravel(y)).mean())

    def zero(choose) -> int:
        count = 0
        for layer, gamma in zip(layers, saved):
            mask = choose(gamma)
            count += int(mask.sum())
            layer.gamma.assign(np.where(mask, 0.0, gamma).astype(gamma.dtype))
        return count

    try:
        baseline = accuracy()
        zeroed = zero(lambda g: np.abs(g) < threshold)
        small = accuracy()
        outcome = {"threshold": threshold, "baseline": baseline, "small_gamma_zeroed": small,
                   "fraction_zeroed": zeroed / sum(g.size for g in saved)}
        if control_seed is not None:
            rng = np.random.default_rng(control_seed)

            def random_same_count(g):
                mask = np.zeros(g.shape, bool)
                mask[rng.choice(g.size, int((np.abs(g) < threshold).sum()), replace=False)] = True
                return mask

            zero(random_same_count)
            outcome["random_zeroed"] = accuracy()
        return outcome
    finally:
        for layer, gamma in zip(layers, saved):
            layer.gamma.assign(gamma)


def relu_activity(model, x, batch_size: int = 500) -> dict[str, np.ndarray]:
    """How often each channel is on: for every ReLU fed directly by a BatchNorm layer, the fraction
    of positions (images x pixels) where the channel's output is positive, per channel, on the
    normalised images ``x`` in inference mode.  Keyed by the BN layer's name, so that it lines up
    with a result's γ and β.  ReLUs after a residual addition are left out: their input is the sum
    of two BN outputs, so neither BN's γ and β alone decides where it cuts.
    """
    from . import freeze
    from .runtime import keras

    batchnorms = {id(layer) for layer in freeze.batchnorm_layers(model)}
    fed = {}
    for layer in model.layers:
        relu = isinstance(layer, keras.layers.ReLU) or (
            isinstance(layer, keras.layers.Activation) and getattr(layer.activation, "__name__", "") == "relu")
        if relu and not isinstance(layer.input, (list, tuple)):
            # Keras has no public "which layer produced this tensor"; every functional model keeps it
            # in the tensor's _keras_history (operation, node index, tensor index).
            source = layer.input._keras_history.operation
            if id(source) in batchnorms:
                fed[source.name] = layer.output
    if not fed:
        raise ValueError(f"{model.name} has no ReLU fed directly by a BatchNorm layer; "
                         "relu_activity measures those (CIFAR ResNets, VGG and Keras ResNets have them).")
    probe = keras.Model(model.input, list(fed.values()))
    positive = {name: 0 for name in fed}
    positions = {name: 0 for name in fed}
    for i in range(0, len(x), batch_size):
        # Eager calls, as in ablate_small_gamma: no retracing per model.
        for name, out in zip(fed, probe(x[i:i + batch_size], training=False)):
            out = keras.ops.convert_to_numpy(out).reshape(-1, out.shape[-1])
            positive[name] = positive[name] + (out > 0).sum(axis=0)
            positions[name] += len(out)
    return {name: positive[name] / positions[name] for name in fed}


def channel_closing(result: Result, activity: dict, threshold: float = DEFAULT_THRESHOLD,
                    off: float = 0.01) -> dict:
    """How a network switches off the channels at its BN-fed ReLUs, in percent of those channels:
    scaled away (|γ| < ``threshold``), shut (on at under ``off`` of the positions, from
    :func:`relu_activity`), shut though |γ| is not small, either; of the shut ones, how many β holds
    shut on its own (β < −2|γ|: below the ReLU's cut for any input within two standard deviations);
    and the mean share of positions on, γ below zero, the mean β and the number of channels."""
    gamma = np.concatenate([np.ravel(result.gamma[name]) for name in activity])
    beta = np.concatenate([np.ravel(result.beta[name]) for name in activity])
    on = np.concatenate([np.ravel(a) for a in activity.values()])
    scaled_away, shut = np.abs(gamma) < threshold, on < off
    held_by_beta = 100 * (beta[shut] < -2 * np.abs(gamma[shut])).mean() if shut.any() else np.nan
    return {f"|γ| < {threshold:g} %": 100 * scaled_away.mean(), f"on at < {off:.0%} of positions %": 100 * shut.mean(),
            f"shut, |γ| ≥ {threshold:g} %": 100 * (shut & ~scaled_away).mean(),
            "either %": 100 * (scaled_away | shut).mean(), "shut with β < −2|γ| (of the shut) %": held_by_beta,
            "mean share on %": 100 * on.mean(), "γ < 0 %": 100 * (gamma < 0).mean(), "mean β": beta.mean(),
            "channels": len(on)}


def standard_error(result: Result) -> float:
    """The standard error of a result's test accuracy from the test-set size alone,
    √(p(1 − p)/n): how much the accuracy would move on another test set of the same size.
    It does not include the spread between training seeds."""
    n = result.provenance["data"]["test_used"]
    return float(np.sqrt(result.test_accuracy * (1 - result.test_accuracy) / n))


def accuracy_difference(a: Result, b: Result, z: float = 2.0) -> dict:
    """``a``'s test accuracy minus ``b``'s, in points, with the standard error of the difference
    (both test sets' errors combined) and a verdict: ``higher`` or ``lower`` when the difference
    exceeds ``z`` standard errors, else ``no clear difference``.

    The error treats the two test sets as independent.  Runs scored on the same images tend to be
    right or wrong on the same ones, so for them it overstates the sampling noise and the verdict
    is conservative; a paired test would need per-image predictions, which results do not keep."""
    difference = 100 * (a.test_accuracy - b.test_accuracy)
    error = 100 * float(np.hypot(standard_error(a), standard_error(b)))
    verdict = ("higher" if difference > z * error else "lower" if difference < -z * error
               else "no clear difference")
    return {"difference": difference, "standard error": error, "verdict": verdict}


def difference_table(pairs: dict, z: float = 2.0) -> pd.DataFrame:
    """:func:`accuracy_difference` for every named pair ``{name: (a, b)}``, one row each."""
    table = pd.DataFrame({name: accuracy_difference(a, b, z) for name, (a, b) in pairs.items()}).T
    return table.astype({"difference": float, "standard error": float})


def points_per_doubling(larger: Result, smaller: Result) -> float:
    """Test-accuracy points ``larger`` gains over ``smaller`` per doubling of the BatchNorm
    parameters (γ and β): the unit that puts steps in depth and in width on one scale."""
    doublings = np.log2(larger.parameters["batchnorm"] / smaller.parameters["batchnorm"])
    if doublings <= 0:
        raise ValueError(f"{larger.label} has no more BN parameters than {smaller.label}: "
                         "pass the larger network first")
    return float(100 * (larger.test_accuracy - smaller.test_accuracy) / doublings)


def step_across_seeds(shallow: list[Result], deep: list[Result]) -> dict:
    """A step from one network to another when each was trained from several seeds, in points of
    test accuracy: the step between the seeds' means; the least favourable pairing, the worst
    ``deep`` run minus the best ``shallow`` one (above zero when every deep run beats every shallow
    run); and the largest spread between the seeds of either network, a yardstick for the step."""
    if not shallow or not deep:
        raise ValueError("step_across_seeds needs at least one run of each network")
    shallow_acc, deep_acc = (100 * np.array([r.test_accuracy for r in runs]) for runs in (shallow, deep))
    return {"mean step": float(deep_acc.mean() - shallow_acc.mean()),
            "worst pairing": float(deep_acc.min() - shallow_acc.max()),
            "largest seed spread": float(max(np.ptp(shallow_acc), np.ptp(deep_acc)))}


def gap_narrowing(shallow: tuple[Result, Result], deep: tuple[Result, Result]) -> dict:
    """How much narrower the gap to full training is at the deeper network, in points.

    ``shallow`` and ``deep`` are (BN-only, full) pairs; the gap is full minus BN-only accuracy, so
    it narrows by what BN-only gains minus what full training gains.  ``±`` combines the four test
    sets' standard errors; it does not include the spread between training seeds."""
    (shallow_bn, shallow_full), (deep_bn, deep_full) = shallow, deep
    bn_gain = 100 * (deep_bn.test_accuracy - shallow_bn.test_accuracy)
    full_gain = 100 * (deep_full.test_accuracy - shallow_full.test_accuracy)
    error = 100 * float(np.sqrt(sum(standard_error(r) ** 2 for r in (*shallow, *deep))))
    return {"BN-only gains": bn_gain, "full gains": full_gain, "gap narrows by": bn_gain - full_gain, "±": error}


def comparison_table(results: list[Result], threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per result: what ran, on what, for how long, and how well; the paper beside it."""
    rows = []
    for result in results:
        config, provenance = result.config, result.provenance
        data = provenance.get("data", {})
        rows.append({
            "run": result.label,
            "model": config["model"],
            "policy": config["policy"],
            "test acc %": round(100 * result.test_accuracy, 1),
            "best train acc %": round(100 * max(result.history.get("accuracy", [float("nan")])), 1),
            "trainable params": result.parameters.get("trainable"),
            f"|γ|<{threshold:g}": round(fraction_below(result, threshold), 3) if result.gamma else None,
            "epochs": result.epochs_run,
            "precision": config.get("precision", "float32"),
            "train images": data.get("train_used"),
            "data": data.get("description"),
            "device": provenance.get("device"),
            "paper acc % (full CIFAR-10, 160 ep.)": paper_figure(result),
            "paper: switched off": paper_disabled(result),
        })
    return pd.DataFrame(rows).set_index("run")


def paper_figure(result: Result) -> str:
    """The paper's accuracy for the result's network and policy, or "" where the paper has none
    or the run is not a 10-way CIFAR-10 task (another dataset, or a class split of it)."""
    if not _ten_way_cifar10(result):
        return ""
    return PAPER.get((result.config["model"], result.config["policy"]), "")


def paper_disabled(result: Result) -> str:
    """The share of features the paper finds switched off (γ near zero) after BN-only training
    of its CIFAR-10 ResNets, beside a BN-only CIFAR ResNet run on that task; "" otherwise."""
    family = parse_name(result.config["model"])[0]
    is_cifar_resnet = family in ("resnet", "wrn")
    if result.config["policy"] != "bn" or not is_cifar_resnet or not _ten_way_cifar10(result):
        return ""
    return PAPER_DISABLED_FRACTION


def _ten_way_cifar10(result: Result) -> bool:
    classes = len(result.output.get("bias", ())) or 10
    return result.config.get("dataset", "cifar10") == "cifar10" and classes == 10


REBUILDABLE = ("bn", "gamma", "beta", "none", "output", "bn+output")


def rebuild_model(result: Result):
    """The trained network of a saved result, rebuilt exactly from its seed and saved arrays.

    Possible whenever the convolutions were frozen (policies bn, gamma, beta, output, bn+output,
    none): they are re-created from the seed at their random initialisation, then γ, β, the BN
    moving statistics and the output layer are loaded from the result.
    """
    from . import freeze
    from .config import RunConfig
    from .training import build_model, configured_runtime

    config = RunConfig.from_dict(result.config)
    if config.policy not in REBUILDABLE or not result.moving_mean:
        raise ValueError(f"{result.label}: only results of policies {', '.join(REBUILDABLE)} saved with "
                         "moving statistics can be rebuilt (the others changed their convolutions).")
    if result.provenance.get("initial_model") == "given":
        raise ValueError(f"{result.label}: trained from a network passed to bnlib.train, not from its "
                         "seed, so its convolutions cannot be re-created; keep that network instead.")
    with configured_runtime(config):
        model = build_model(config, num_classes=result.output["bias"].shape[0])
    for layer in freeze.batchnorm_layers(model):
        layer.gamma.assign(result.gamma[layer.name])
        layer.beta.assign(result.beta[layer.name])
        layer.moving_mean.assign(result.moving_mean[layer.name])
        layer.moving_variance.assign(result.moving_variance[layer.name])
    output = freeze.output_layer(model)
    output.kernel.assign(result.output["kernel"])
    output.bias.assign(result.output["bias"])
    model._bnlib_initialisation = None  # trained values: no longer the seed's initialisation
    return model
