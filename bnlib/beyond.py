"""Experiments beyond the paper (chapter 6): questions the paper and the seed TF2 article leave open.

Three small experiments, each built from :func:`bnlib.train` so that they run in every profile
(smoke, cpu, paper) with the same code:

* **BN-only warm-up** (:func:`warm_start`): does training γ and β alone for a few epochs before
  ordinary full training help, compared with full training from scratch for the same total epochs?
* **BN-only fine-tuning on a new task** (:func:`task_config`, :func:`build`, :func:`transfer_model`):
  train a network on some classes, give it a fresh classifier, and adapt it to other classes by
  training only BatchNorm, only the classifier, or everything.  CIFAR-100 is not available offline,
  so the "new task" is a class split of CIFAR-10 (:data:`TASK_A` → :data:`TASK_B` by default).
* **Pruning channels by |γ|** (:func:`prune_by_gamma`, :func:`plot_pruning`): switch off the
  channels with the smallest |γ| in every BN layer, a growing fraction at a time, against the same
  number of random channels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from . import data as data_module
from . import freeze
from .config import RunConfig
from .results import Result

TASK_A = (0, 1, 2, 3, 4)   # airplane, automobile, bird, cat, deer
TASK_B = (5, 6, 7, 8, 9)   # dog, frog, horse, ship, truck
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


# --------------------------------------------------------------------------- class-split tasks

def class_split(x: np.ndarray, y: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``classes`` only, in their original order, relabelled 0..len(classes)-1
    (label ``classes[i]`` becomes ``i``)."""
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty list of distinct labels, got {classes}.")
    y = np.ravel(y)
    missing = [c for c in classes if not np.any(y == c)]
    if missing:
        raise ValueError(f"No images of class(es) {missing}; the labels present are "
                         f"{sorted(set(y.tolist()))}.")
    keep = np.isin(y, classes)
    relabel = np.full(int(max(y.max(), max(classes))) + 1, -1, dtype=np.int64)
    relabel[classes] = np.arange(len(classes))
    return x[keep], relabel[y[keep]]


def split_name(classes) -> str:
    """A short label for a class split: ``classes 0-4`` or ``classes 1,3,5``."""
    classes = [int(c) for c in classes]
    if classes == list(range(classes[0], classes[0] + len(classes))) and len(classes) > 2:
        return f"classes {classes[0]}-{classes[-1]}"
    return "classes " + ",".join(map(str, classes))


def task_config(config: RunConfig, classes, folder, **overrides) -> RunConfig:
    """``config`` restricted to ``classes``: writes their training and test images (relabelled
    0..k-1) from the data ``config`` names to ``folder`` as a pixel .npz, and returns ``config``
    pointing at it, with ``overrides`` applied.  The subset fields of ``config``
    (``train_per_class``, ``test_per_class``) then select the first N images of each kept class,
    exactly the images the full-data run would use.  The parent data's description is kept in
    the archive's name and returned by :func:`parent_description`."""
    parent = data_module.load(config.dataset, config.data_path)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config.dataset}-{split_name(classes).replace(' ', '-').replace(',', '_')}.npz"
    x_train, y_train = class_split(parent.x_train, parent.y_train, classes)
    x_test, y_test = class_split(parent.x_test, parent.y_test, classes)
    np.savez(path, x_train=x_train, y_train=y_train.astype(np.uint8), x_test=x_test,
             y_test=y_test.astype(np.uint8), parent=np.array(parent.description))
    return config.replace(data_path=str(path), **overrides)


def parent_description(config: RunConfig) -> str:
    """The description of the data a :func:`task_config` archive was cut from."""
    with np.load(config.data_path) as archive:
        return str(archive["parent"]) if "parent" in archive.files else "unknown"


def build(config: RunConfig, num_classes: int) -> keras.Model:
    """``config.model`` with ``num_classes`` outputs, initialised exactly as :func:`bnlib.train`
    would initialise it (same seed, γ/β initialisation and policy).  Pass it to
    ``bnlib.train(config, model=...)`` to train a network whose head is not CIFAR-10's."""
    from .train import build_model, configure_runtime

    configure_runtime(config)
    return build_model(config, num_classes)


def transfer_model(model: keras.Model, num_classes: int, seed: int = 0) -> keras.Model:
    """An independent copy of ``model`` (same weights and BN statistics, new variables) whose
    classifier is replaced by a freshly initialised ``Dense(num_classes)`` named ``output``.

    Training the copy never changes ``model``, so several fine-tunings can start from one
    trained network.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    features = freeze.output_layer(copy).input
    head = keras.layers.Dense(num_classes, name="output", dtype="float32",
                              kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    return keras.Model(copy.inputs, head(features), name=f"{model.name}_transfer")


def conv_kernels(model: keras.Model) -> dict:
    """Every convolution kernel of ``model`` as a numpy copy, by layer name."""
    return {layer.name: keras.ops.convert_to_numpy(layer.kernel).copy()
            for layer in freeze.conv_layers(model)}


def kernels_equal(a: dict, b: dict) -> bool:
    """Whether two :func:`conv_kernels` snapshots are bit-for-bit identical."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ BN-only warm-up

@dataclass
class WarmStart:
    """The three runs of :func:`warm_start`."""

    scratch: Result               # full training from scratch, config.epochs epochs
    bn_stage: Result              # BN-only training, bn_epochs epochs
    bn_then_full: Result          # the BN stage's network trained fully for the rest (both stages' history)
    bn_stage_kept_convolutions: bool  # the BN stage left every convolution at its initial value

    @property
    def results(self) -> list[Result]:
        return [self.scratch, self.bn_stage, self.bn_then_full]


def warm_start(config: RunConfig, bn_epochs: int, verbose: int | str = 0) -> WarmStart:
    """Full training from scratch for ``config.epochs`` epochs, against BN-only training for
    ``bn_epochs`` epochs followed by full training of the same network for the remaining
    ``config.epochs - bn_epochs`` epochs (same seed, initialisation, data and total epochs).

    Each stage starts its learning-rate schedule and its optimizer afresh.  The runs are live
    (``output_dir`` is ignored): the second stage needs the first stage's network in memory.
    """
    from .train import train

    if not 0 < bn_epochs < config.epochs:
        raise ValueError(f"bn_epochs must be between 1 and epochs - 1 = {config.epochs - 1}, "
                         f"got {bn_epochs}.")
    config = config.replace(output_dir=None)
    scratch = train(config.replace(policy="all", name=f"full, {config.epochs} ep."), verbose=verbose)
    bn_config = config.replace(policy="bn", epochs=bn_epochs, name=f"BN-only, {bn_epochs} ep.")
    model = build(bn_config, data_module.NUM_CLASSES[config.dataset])
    before = conv_kernels(model)
    first = train(bn_config, verbose=verbose, model=model)
    kept = kernels_equal(before, conv_kernels(first.model))
    rest = config.epochs - bn_epochs
    second = train(config.replace(policy="all", epochs=rest,
                                  name=f"BN-only {bn_epochs} ep. → full {rest} ep."),
                   verbose=verbose, model=first.model)
    return WarmStart(scratch, first, chain(first, second), kept)


def chain(first: Result, second: Result, name: str | None = None) -> Result:
    """``second`` (a run that continued ``first``'s network) with the two histories joined, so
    that learning curves show both stages; epochs are renumbered 1..N."""
    history = {key: list(first.history.get(key, [])) + list(values)
               for key, values in second.history.items()}
    if "epoch" in history:
        history["epoch"] = [float(e) for e in range(1, len(history["epoch"]) + 1)]
    config = {**second.config, "name": name or second.label,
              "epochs": first.epochs_run + second.epochs_run}
    joined = dataclasses.replace(second, history=history, config=config,
                                 initial_gamma=first.initial_gamma, initial_beta=first.initial_beta)
    joined.model = second.model
    return joined


# ----------------------------------------------------------------------------- pruning by |γ|

def channels_to_zero(gamma: np.ndarray, fraction: float, how: str = "smallest",
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """A boolean mask over one layer's channels: the ``round(fraction * channels)`` channels with
    the smallest |γ| (``how="smallest"``), or as many chosen at random (``how="random"``)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    gamma = np.ravel(gamma)
    count = int(round(fraction * gamma.size))
    mask = np.zeros(gamma.size, bool)
    if how == "smallest":
        mask[np.argsort(np.abs(gamma), kind="stable")[:count]] = True
    elif how == "random":
        mask[(rng or np.random.default_rng()).choice(gamma.size, count, replace=False)] = True
    else:
        raise ValueError(f"how must be 'smallest' or 'random', got {how!r}.")
    return mask


def accuracy(model: keras.Model, x, y, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (inference mode) on normalised images ``x``."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float((np.argmax(logits, axis=1) == np.ravel(y)).mean())


def prune_by_gamma(model: keras.Model, x, y, fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
                   repeats: int = 3, seed: int = 0, batch_size: int = 500) -> pd.DataFrame:
    """Test accuracy as a growing fraction of every BN layer's channels is switched off (γ = 0,
    so the channel outputs the constant β): the channels with the smallest |γ|, against the same
    number of random channels per layer (mean over ``repeats`` draws).  γ is restored afterwards.

    ``x`` must be normalised the way the model was trained: ``(images / 255 - mean) / std``.
    Returns one row per fraction.
    """
    layers = freeze.batchnorm_layers(model)
    saved = [keras.ops.convert_to_numpy(layer.gamma).copy() for layer in layers]
    rng = np.random.default_rng(seed)

    def zeroed_accuracy(how: str, fraction: float) -> float:
        for layer, gamma in zip(layers, saved):
            mask = channels_to_zero(gamma, fraction, how, rng)
            layer.gamma.assign(np.where(mask, 0.0, gamma).astype(gamma.dtype))
        return accuracy(model, x, y, batch_size)

    rows = []
    try:
        for fraction in fractions:
            random = [zeroed_accuracy("random", fraction) for _ in range(repeats)]
            rows.append({"fraction": float(fraction),
                         "channels zeroed": sum(int(round(fraction * g.size)) for g in saved),
                         "smallest |γ| zeroed": zeroed_accuracy("smallest", fraction),
                         "random zeroed (mean)": float(np.mean(random)) if random else float("nan"),
                         "random zeroed (min)": float(np.min(random)) if random else float("nan"),
                         "random zeroed (max)": float(np.max(random)) if random else float("nan")})
    finally:
        for layer, gamma in zip(layers, saved):
            layer.gamma.assign(gamma)
    return pd.DataFrame(rows).set_index("fraction")


def normalised_test_images(splits) -> np.ndarray:
    """A :class:`bnlib.data.Splits`' test images normalised with its own training statistics."""
    return ((splits.x_test.astype(np.float32) / 255.0 - splits.mean) / splits.std).astype(np.float32)


def plot_pruning(tables: dict, title: str = ""):
    """One panel per pruning table (:func:`prune_by_gamma`): accuracy against the fraction of
    channels zeroed, smallest |γ| first against random channels (mean line, min-max band)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 3.8), squeeze=False)
    for ax, (label, table) in zip(axes[0], tables.items()):
        fractions = 100 * table.index.to_numpy()
        ax.plot(fractions, 100 * table["smallest |γ| zeroed"], "o-", label="smallest |γ| zeroed")
        ax.plot(fractions, 100 * table["random zeroed (mean)"], "s--", label="random channels zeroed")
        ax.fill_between(fractions, 100 * table["random zeroed (min)"], 100 * table["random zeroed (max)"],
                        alpha=0.2, color="tab:orange")
        ax.set(xlabel="channels zeroed in every BN layer (%)", ylabel="test accuracy (%)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
