"""Turn a RunConfig into a Result: model.fit with Keras callbacks, checkpoints, resume, strategies.

One training path for every profile (smoke, cpu, article, paper): the profiles change sizes, never
code.  With an ``output_dir`` a run checkpoints every epoch (Keras' BackupAndRestore) and keeps its
per-epoch history on disk, so re-running the same command after an interruption continues from
the last complete epoch and ends with the same history and weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import data as data_module
from . import freeze, models, results
from .config import RunConfig

BACKUP = "backup"
HISTORY_FILE = "history.json"
RUN_FILE = "run_config.json"


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


class RunConflictError(ValueError):
    """The output folder holds a different run's checkpoint."""


# ------------------------------------------------------------------------------------ building

def build_model(config: RunConfig, num_classes: int = 10) -> keras.Model:
    """The configured model with its γ/β initialisation and freezing policy applied (uncompiled)."""
    model = models.build(config.model, num_classes=num_classes, bn_momentum=config.bn_momentum)
    freeze.init_batchnorm(model, config.gamma_init, config.beta_init, seed=config.seed)
    return freeze.apply_policy(model, config.policy, seed=config.seed)


def make_optimizer(config: RunConfig) -> keras.optimizers.Optimizer:
    """SGD with momentum or Adam; weight decay applies only to what the optimizer trains."""
    common = dict(learning_rate=learning_rate(config, 0),
                  weight_decay=config.weight_decay or None,
                  global_clipnorm=config.clipnorm)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, **common)
    return keras.optimizers.Adam(**common)


def learning_rate(config: RunConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based): warm-up, then step, cosine or constant."""
    base = config.learning_rate
    if epoch < config.warmup_epochs:
        return base * (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "step":
        return base * config.lr_decay ** sum(epoch >= m for m in config.lr_milestones)
    if config.schedule == "cosine":
        span = max(1, config.epochs - config.warmup_epochs)
        return 0.5 * base * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))
    return base


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``auto`` (TPU, else all GPUs mirrored, else one device),
    ``mirrored``, ``multiworker`` (reads TF_CONFIG) or ``tpu``."""
    if name in ("auto", "tpu"):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.NotFoundError):
            if name == "tpu":
                raise ValueError("strategy 'tpu' found no TPU; use 'auto' or 'default'.") from None
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs TF_CONFIG describing the cluster; "
                             "see the README section on several machines.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def describe_device() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x GPU {details.get('device_name', '')}".strip()
    return f"CPU ({os.cpu_count()} cores)"


# --------------------------------------------------------------------------------- callbacks

class HistoryFile(keras.callbacks.Callback):
    """Keeps the per-epoch history (metrics, learning rate, seconds) in a JSON file, atomically.

    Keras' History callback only holds the epochs of the current ``fit`` call; a resumed run needs
    the epochs before the interruption too.
    """

    def __init__(self, path: Path | None, history: dict):
        super().__init__()
        self.path, self.history, self._start = path, history, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs["epoch_seconds"] = time.perf_counter() - self._start
        logs["epoch"] = epoch + 1
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        if self.path is not None:
            text = json.dumps(results._plain(self.history))
            results.atomic_write(self.path, lambda handle: handle.write(text.encode()))


# ------------------------------------------------------------------------------ checkpoints

def _prepare_output(config: RunConfig, overwrite: bool) -> Path | None:
    """Create the output folder; refuse one holding a different run unless ``overwrite``."""
    if not config.output_dir:
        return None
    folder = Path(config.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_FILE
    wanted = config.to_dict()
    if run_file.is_file():
        existing = json.loads(run_file.read_text())
        if existing != wanted:
            if not overwrite:
                changed = sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))
                raise RunConflictError(
                    f"{folder} holds a different run (differs in {', '.join(changed)}); choose "
                    "another output folder or pass overwrite=True (--overwrite) to discard it.")
            for name in (BACKUP, HISTORY_FILE, results.RESULT_FILE, results.ARRAYS_FILE):
                path = folder / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    text = json.dumps(wanted, indent=1)
    results.atomic_write(run_file, lambda handle: handle.write(text.encode()))
    return folder


def _restored_epoch(backup_dir: Path) -> int:
    """The epoch a resumed run starts at; falls back to the previous checkpoint if the latest
    one is truncated or corrupt (with a warning), so BackupAndRestore then loads a good one."""
    latest = backup_dir / "latest.weights.h5"
    meta = backup_dir / "training_metadata.json"

    def readable(weights: Path, metadata: Path) -> int | None:
        try:
            import h5py

            with h5py.File(weights, "r") as handle:
                handle.visit(lambda name: None)
            return int(json.loads(metadata.read_text())["epoch"])
        except Exception:
            return None

    if not latest.exists():
        return 0
    epoch = readable(latest, meta)
    if epoch is not None:
        return epoch
    previous_w, previous_m = Path(f"{latest}.bkp"), Path(f"{meta}.bkp")
    epoch = readable(previous_w, previous_m) if previous_w.exists() else None
    if epoch is None:
        warnings.warn(f"Checkpoint in {backup_dir} is corrupt and no earlier one is readable; "
                      "starting from scratch.", stacklevel=3)
        shutil.rmtree(backup_dir)
        return 0
    warnings.warn(f"Latest checkpoint in {backup_dir} is corrupt; resuming from the previous one "
                  f"(epoch {epoch}).", stacklevel=3)
    shutil.copyfile(previous_w, latest)
    shutil.copyfile(previous_m, meta)
    return epoch


def _load_history(folder: Path | None, first_epoch: int) -> dict:
    if folder is None or first_epoch == 0 or not (folder / HISTORY_FILE).is_file():
        return {}
    history = json.loads((folder / HISTORY_FILE).read_text())
    return {key: values[:first_epoch] for key, values in history.items()}


# ---------------------------------------------------------------------------------- training

def configure_runtime(config: RunConfig) -> None:
    """Seeds, determinism and precision, set before anything is built."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")


def train(config: RunConfig, verbose: int | str = 2, overwrite: bool = False,
          callbacks: list | None = None) -> results.Result:
    """Train as ``config`` says and return the Result (also saved in ``config.output_dir``).

    Re-running with the same config and output folder resumes an interrupted run, or returns the
    saved result of a finished one.  ``verbose=2`` prints one line per epoch.
    """
    started = time.perf_counter()
    folder = _prepare_output(config, overwrite)
    if folder is not None and (folder / results.RESULT_FILE).is_file():
        return results.load(folder)
    policy_before = keras.mixed_precision.global_policy()
    try:
        return _train(config, folder, verbose, callbacks or [], started)
    finally:
        keras.mixed_precision.set_global_policy(policy_before)


def _train(config, folder, verbose, extra_callbacks, started) -> results.Result:
    configure_runtime(config)
    splits = data_module.prepare(config)
    strategy = make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config, splits.num_classes)
        model.compile(optimizer=make_optimizer(config),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=config.xla)
    initial = _batchnorm_values(model)
    backup_dir = folder / BACKUP if folder else None
    first_epoch = _restored_epoch(backup_dir) if backup_dir else 0
    history = _load_history(folder, first_epoch)
    if first_epoch and verbose:
        print(f"Resuming {config.label} from epoch {first_epoch} (checkpoint in {backup_dir}).")
    steps = data_module.steps_per_epoch(len(splits.x_train), config.batch_size)
    train_stream = data_module.train_pipeline(
        splits.x_train, splits.y_train, config.batch_size, splits.mean, splits.std,
        augment=config.augment, seed=config.seed, first_epoch=first_epoch, epochs=config.epochs)
    validation = None
    if splits.x_val is not None:
        validation = data_module.eval_pipeline(splits.x_val, splits.y_val, config.batch_size,
                                               splits.mean, splits.std)
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate(config, epoch)),
        keras.callbacks.TerminateOnNaN(raise_error=True),  # before the checkpoint of a bad epoch
        *extra_callbacks,
        HistoryFile(folder / HISTORY_FILE if folder else None, history),
    ]
    if backup_dir:
        # double_checkpoint keeps the previous epoch's state too, for a corrupt latest file.
        callbacks.append(keras.callbacks.BackupAndRestore(
            str(backup_dir), double_checkpoint=True, delete_checkpoint=False))
    model.build((None, *splits.x_train.shape[1:]))
    try:
        model.fit(train_stream, epochs=config.epochs, initial_epoch=first_epoch,
                  steps_per_epoch=steps, validation_data=validation, callbacks=callbacks,
                  verbose=verbose, shuffle=False)  # the pipeline shuffles, by (seed, epoch)
    except RuntimeError as error:
        if "NaN or Inf loss" not in str(error):
            raise
        raise DivergenceError(
            f"{config.label}: the loss became NaN/inf in epoch {len(history.get('loss', [])) + 1}; "
            "lower learning_rate, add warmup_epochs (e.g. 5) or set clipnorm (e.g. 1.0). "
            + (f"The last good checkpoint is kept in {backup_dir}." if backup_dir else "")) from None
    test = data_module.eval_pipeline(splits.x_test, splits.y_test, config.batch_size,
                                     splits.mean, splits.std)
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    final = _batchnorm_values(model)
    result = results.Result(
        config=config.to_dict(), history=history,
        test_accuracy=float(test_accuracy), test_loss=float(test_loss),
        parameters=freeze.parameter_report(model),
        provenance=results.provenance(splits.source, time.perf_counter() - started,
                                      describe_device()),
        gamma={k: v[0] for k, v in final.items()}, beta={k: v[1] for k, v in final.items()},
        initial_gamma={k: v[0] for k, v in initial.items()},
        initial_beta={k: v[1] for k, v in initial.items()},
        moving_mean={k: v[2] for k, v in final.items()},
        moving_variance={k: v[3] for k, v in final.items()},
        output={"kernel": freeze.output_layer(model).kernel.numpy(),
                "bias": freeze.output_layer(model).bias.numpy()},
    )
    result.provenance["epochs_resumed_from"] = first_epoch
    result.provenance["train_seconds"] = round(sum(history.get("epoch_seconds", [])), 1)
    if folder is not None:
        result.save(folder)
        shutil.rmtree(backup_dir, ignore_errors=True)
    result.model = model
    return result


def _batchnorm_values(model) -> dict:
    """Per BN layer: (γ, β, moving mean, moving variance) as numpy copies."""
    return {layer.name: tuple(keras.ops.convert_to_numpy(v).copy() for v in
                              (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
            for layer in freeze.batchnorm_layers(model)}
