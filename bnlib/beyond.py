"""Experiments beyond the paper (chapter 6): questions the paper and the seed TF2 article leave open.

Three small experiments, each built from :func:`bnlib.train` so that they run in every profile
(smoke, cpu, paper) with the same code:

* **BN-only warm-up** (:func:`warm_start`): does training γ and β alone for a few epochs before
  ordinary full training help, compared with full training from scratch for the same total epochs?
* **BN-only fine-tuning on a new task** (:func:`task_config`, :func:`build`, :func:`transfer_model`):
  train a network on some classes, give it a fresh classifier, and adapt it to other classes by
  training only BatchNorm, only the classifier, or everything.  CIFAR-100 is not available offline,
  so the "new task" is a class split of CIFAR-10 (:data:`TASK_A` → :data:`TASK_B` by default).
  :func:`transfer` runs the whole experiment.
* **Pruning channels by |γ|** (:func:`prune_by_gamma`, :func:`plot_pruning`): switch off the
  channels with the smallest |γ| in every BN layer, a growing fraction at a time, against the same
  number of random channels.

With an ``output_dir``, :func:`warm_start` and :func:`transfer` save every run in a subfolder and
resume like :func:`bnlib.train`; :func:`load_warm_start` and :func:`load_transfer` read them back
(``scripts/run_experiments.py`` makes the committed ones, in ``results/cpu-beyond/``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import data as data_module
from . import freeze
from .config import RunConfig
from .results import Result, atomic_write
from .runtime import keras

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
    from .training import build_model, configured_runtime

    with configured_runtime(config):
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

WARM_START_RUNS = ("full-from-scratch", "bn-stage", "bn-then-full", "full-rest-only")  # saved subfolders


@dataclass
class WarmStart:
    """The runs of :func:`warm_start`."""

    scratch: Result               # full training from scratch, config.epochs epochs
    bn_stage: Result              # BN-only training, bn_epochs epochs
    bn_then_full: Result          # the BN stage's network trained fully for the rest (both stages' history)
    rest_only: Result             # full training from scratch for the second stage's epochs only
    # The BN stage left every convolution at its initial value (None: that stage was loaded from
    # disk, not run in this session, so it was not checked here).
    bn_stage_kept_convolutions: bool | None

    @property
    def results(self) -> list[Result]:
        return [self.scratch, self.bn_stage, self.bn_then_full, self.rest_only]


def warm_start(config: RunConfig, bn_epochs: int, verbose: int | str = 0,
               output_dir: str | Path | None = None) -> WarmStart:
    """Full training from scratch for ``config.epochs`` epochs, against BN-only training for
    ``bn_epochs`` epochs followed by full training of the same network for the remaining
    ``config.epochs - bn_epochs`` epochs (same seed, initialisation, data and total epochs).
    A fourth run, full training from scratch for those remaining epochs alone, tells whether
    the BN-only epochs did anything at all for the second stage.

    Each stage starts its learning-rate schedule and its optimizer afresh.  With ``output_dir``,
    every run is saved in its own subfolder (:data:`WARM_START_RUNS`) and resumable like any
    ``bnlib.train`` run: calling again continues an interrupted stage and loads finished ones
    (a finished BN stage is rebuilt exactly from its result, its convolutions being random).
    :func:`load_warm_start` reads a saved warm start back.  ``config.output_dir`` is ignored.
    """
    from .analysis import rebuild_model
    from .training import train

    if not 0 < bn_epochs < config.epochs:
        raise ValueError(f"bn_epochs must be between 1 and epochs - 1 = {config.epochs - 1}, "
                         f"got {bn_epochs}.")

    def stage(subfolder: str, **overrides) -> RunConfig:
        folder = str(Path(output_dir) / subfolder) if output_dir else None
        return config.replace(output_dir=folder, **overrides)

    rest = config.epochs - bn_epochs
    scratch = train(stage(WARM_START_RUNS[0], policy="all", name=f"full, {config.epochs} ep."),
                    verbose=verbose)
    bn_config = stage(WARM_START_RUNS[1], policy="bn", epochs=bn_epochs, name=f"BN-only, {bn_epochs} ep.")
    model = build(bn_config, data_module.NUM_CLASSES[config.dataset])
    before = conv_kernels(model)
    first = train(bn_config, verbose=verbose, model=model)
    if first.model is None:  # loaded from disk: rebuild the trained BN-only network
        first.model, kept = rebuild_model(first), None
    else:
        kept = kernels_equal(before, conv_kernels(first.model))
    second = train(stage(WARM_START_RUNS[2], policy="all", epochs=rest,
                         name=f"BN-only {bn_epochs} ep. → full {rest} ep."),
                   verbose=verbose, model=first.model)
    rest_only = train(stage(WARM_START_RUNS[3], policy="all", epochs=rest, name=f"full, {rest} ep."),
                      verbose=verbose)
    return WarmStart(scratch, first, chain(first, second), rest_only, kept)


def load_warm_start(folder: str | Path) -> WarmStart:
    """A warm start saved by :func:`warm_start` with ``output_dir=folder``, its two-stage run
    joined with :func:`chain` as :func:`warm_start` returns it."""
    from .results import load

    scratch, first, second, rest_only = (load(Path(folder) / name) for name in WARM_START_RUNS)
    return WarmStart(scratch, first, chain(first, second), rest_only, None)


# ------------------------------------------------------------------ BN-only fine-tuning, in full

# run name -> (subfolder, policy) for the target task
TRANSFER_RUNS = {"fine-tune: bn": ("fine-tune-bn", "bn"), "fine-tune: output": ("fine-tune-output", "output"),
                 "fine-tune: all": ("fine-tune-all", "all"), "BN-only from scratch": ("bn-from-scratch", "bn")}
SOURCE_RUN = "source"
SOURCE_WEIGHTS = "source.weights.h5"
TASKS_FILE = "tasks.json"


@dataclass
class Transfer:
    """The runs of :func:`transfer`: the source network and the four ways to learn the target task."""

    source: Result             # full training on the source classes
    runs: dict                 # name (a key of TRANSFER_RUNS) -> Result on the target classes
    source_task: tuple
    target_task: tuple

    @property
    def results(self) -> list[Result]:
        return [self.source, *self.runs.values()]


def transfer(config: RunConfig, work: str | Path, source_task=TASK_A, target_task=TASK_B,
             verbose: int | str = 0, output_dir: str | Path | None = None) -> Transfer:
    """Train ``config.model`` fully on ``source_task``, then learn ``target_task`` four ways: from
    the trained network with a new random head, training only BN (``fine-tune: bn``), only the
    head (``fine-tune: output``, a linear probe) or everything (``fine-tune: all``), and BN-only
    from random convolutions (``BN-only from scratch``).  Same profile, seed and images per class
    for every run.

    ``work`` receives the class-split archives (:func:`task_config`) and, with ``output_dir``, the
    trained source network's weights (kept out of ``output_dir``, which holds small results
    only).  With ``output_dir`` every run is saved in a subfolder (:data:`SOURCE_RUN`,
    :data:`TRANSFER_RUNS`) and resumable: calling again continues an interrupted run and loads
    finished ones.  :func:`load_transfer` reads the results back.
    """
    from .training import train

    work = Path(work)

    def folder(name: str) -> str | None:
        return str(Path(output_dir) / name) if output_dir else None

    source_config = task_config(config, source_task, work, policy="all", output_dir=folder(SOURCE_RUN),
                                name=f"source: full training, {split_name(source_task)}")
    target = task_config(config, target_task, work)
    if output_dir:
        text = json.dumps({"source_task": list(source_task), "target_task": list(target_task)})
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(output_dir) / TASKS_FILE, lambda handle: handle.write(text.encode()))
    source = train(source_config, verbose=verbose,
                   model=None if _finished(source_config) else build(source_config, len(source_task)))
    if source.model is not None and output_dir:
        source.model.save_weights(work / SOURCE_WEIGHTS)
    runs = {}
    for name, (subfolder, policy) in TRANSFER_RUNS.items():
        run = target.replace(policy=policy, name=name, output_dir=folder(subfolder))
        if _finished(run):
            model = None  # train() loads the saved result
        elif name == "BN-only from scratch":
            model = build(run, len(target_task))
        else:
            if source.model is None:  # the source finished in an earlier session
                source.model = _saved_source(source_config, len(source_task), work)
            model = transfer_model(source.model, len(target_task), seed=config.seed)
        runs[name] = train(run, verbose=verbose, model=model)
    return Transfer(source, runs, tuple(source_task), tuple(target_task))


def _finished(config: RunConfig) -> bool:
    from .results import RESULT_FILE

    return bool(config.output_dir) and (Path(config.output_dir) / RESULT_FILE).is_file()


def _saved_source(source_config: RunConfig, num_classes: int, work: Path) -> keras.Model:
    """The trained network of a finished source run, from the weights it left in ``work``."""
    weights = work / SOURCE_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(
            f"{source_config.output_dir} holds a finished source run but its weights ({weights}) "
            f"are gone; delete {source_config.output_dir} to train the source again.")
    model = build(source_config, num_classes)
    model.load_weights(weights)
    return model


def load_transfer(folder: str | Path) -> Transfer:
    """A transfer experiment saved by :func:`transfer` with ``output_dir=folder``."""
    from .results import load

    folder = Path(folder)
    source = load(folder / SOURCE_RUN)
    runs = {name: load(folder / sub) for name, (sub, _) in TRANSFER_RUNS.items()}
    tasks = json.loads((folder / TASKS_FILE).read_text())
    return Transfer(source, runs, tuple(tasks["source_task"]), tuple(tasks["target_task"]))


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

    ``x`` must be normalised the way the model was trained (`Splits.normalised_test_images`).
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
