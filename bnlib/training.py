"""Turn a RunConfig into a Result: model.fit with Keras callbacks, checkpoints, resume, strategies.

One training path for every profile (smoke, cpu, article, paper): the profiles change sizes, never
code.  With an ``output_dir`` a run checkpoints every epoch (Keras' BackupAndRestore) and keeps its
per-epoch history on disk, so re-running the same command after an interruption continues from
the last complete epoch and ends with the same history and weights as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from . import data as data_module
from . import freeze, models, optimizers, results, runtime
from .config import RunConfig, upgrade
from .runtime import keras, tf

BACKUP = "backup"
LATEST = "latest.weights.h5"          # Keras BackupAndRestore's names, in BACKUP
METADATA = "training_metadata.json"
HISTORY_FILE = "history.json"
RUN_FILE = "run_config.json"
# Fields that may differ when resuming: a run folder can move (e.g. onto Google Drive), and a
# name is only a label.
MOVABLE_FIELDS = ("output_dir", "name")
# What identifies the data a run folder was trained on (recorded under "data" in RUN_FILE): the
# pixels' fingerprint and the images each split used, not the file's path, which may move.
DATA_IDENTITY = ("dataset", "train_sha256", "n_train", "n_test", "train_used", "test_used",
                 "validation_used")


def _same_setting(key: str, old, new) -> bool:
    """Whether a run folder's recorded setting ``key`` allows resuming with ``new``.  A data file
    may move with its repository (a clone elsewhere, chapter 6's class-split archives in
    ``.cache``): the same file name in another folder counts as the same data."""
    if key in MOVABLE_FIELDS or old == new:
        return True
    return key == "data_path" and bool(old) and bool(new) and Path(old).name == Path(new).name


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


class RunConflictError(ValueError):
    """The output folder holds a different run's checkpoint."""


# ------------------------------------------------------------------------------------ building

def build_model(config: RunConfig, num_classes: int = 10) -> keras.Model:
    """The configured model with its γ/β initialisation and freezing policy applied (uncompiled)."""
    model = models.build(config.model, num_classes=num_classes, bn_momentum=config.bn_momentum)
    freeze.init_batchnorm(model, config.gamma_init, config.beta_init, seed=config.seed)
    model = freeze.apply_policy(model, config.policy, seed=config.seed)
    model._bnlib_initialisation = _initialisation(config)  # untrained, as the seed makes it
    return model


def _initialisation(config: RunConfig) -> tuple:
    """What fixes a network's initial weights: analysis.rebuild_model re-creates them from it."""
    return config.model, config.seed, config.gamma_init, config.beta_init, config.bn_momentum


def make_optimizer(config: RunConfig) -> keras.optimizers.Optimizer:
    """SGD with momentum or Adam.  Weight decay is the paper's (PyTorch's) L2 term on the gradient,
    see bnlib.optimizers, and so applies only to what the optimizer trains."""
    common = dict(learning_rate=learning_rate(config, 0),
                  coupled_weight_decay=config.weight_decay,
                  global_clipnorm=config.clipnorm)
    if config.optimizer == "sgd":
        return optimizers.SGD(momentum=config.momentum, **common)
    return optimizers.Adam(**common)


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
        # A TPU reached over the network (a Cloud TPU node, named by $TPU_NAME or
        # $COLAB_TPU_ADDR), then one attached to this machine (a TPU VM, as Colab's TPU
        # runtimes are); without a TPU both fail within seconds.
        for address in (None, "local"):
            try:
                resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
                tf.config.experimental_connect_to_cluster(resolver)
                tf.tpu.experimental.initialize_tpu_system(resolver)
                return tf.distribute.TPUStrategy(resolver)
            except (ValueError, RuntimeError, tf.errors.NotFoundError):
                pass
        if name == "tpu":
            raise ValueError("strategy 'tpu' found no TPU (on Colab: Runtime → Change runtime type "
                             "→ TPU); use 'auto' or 'default' elsewhere.")
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs TF_CONFIG describing the cluster; "
                             "see the README section on several machines.")
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            if "program startup" not in str(error):
                raise
            raise ValueError("strategy 'multiworker' must be created before TensorFlow runs any "
                             "op: call bnlib.train first in a fresh process.") from None
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the output folder: always, except on the non-chief workers of
    a multi-worker cluster (the chief is task ``chief``, else ``worker`` 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and not has_chief and (resolver.task_id or 0) == 0


def _cluster_sum(strategy: tf.distribute.Strategy, values: list,
                 chief_only: bool = False) -> list[int]:
    """The sum of ``values`` (small integers) over every replica in the cluster; with
    ``chief_only``, the chief's values on every worker (only replica 0, the chief's first device,
    contributes), so that the workers follow the chief's decisions."""
    local = tf.constant([float(v) for v in values], tf.float32)

    def contribution():
        if not chief_only:
            return local
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        return tf.where(first, local, tf.zeros_like(local))

    total = strategy.reduce("SUM", strategy.run(contribution), axis=None)
    return [int(round(v)) for v in total.numpy()]


@contextlib.contextmanager
def _multiworker_keras_fixes(strategy: tf.distribute.Strategy):
    """Work around Keras 3's two failures under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    tensorflow/tensorflow#72388; seen up to Keras 3.15): ``fit`` passes a whole (x, y) batch to one
    ``strategy.reduce`` to learn its shapes, and ``reduce_per_replica`` reduces scalar step outputs
    (loss, metrics) along axis 0.  Both raise; here the shapes come from a local batch and scalars
    are averaged over all replicas, for the duration of the block only."""
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
        from keras.src import tree

        original_reduce = tf_trainer.reduce_per_replica
        original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        multi_worker = tf_trainer._collective_all_reduce_multi_worker(strategy)
    except (ImportError, AttributeError):  # a Keras whose internals moved: nothing to patch
        multi_worker = False
    if not multi_worker:
        yield
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean"):
            return original_reduce(values, strategy, reduction)
        return tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None)
            if isinstance(v, tf.distribute.DistributedValues) else v, values)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = original_build


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


class StopOnNonFiniteWeights(keras.callbacks.Callback):
    """Raise at the end of an epoch whose weights are not all finite, before its checkpoint.

    TerminateOnNaN watches the loss, which is computed before each update: weights that turn
    NaN in an epoch's last step would otherwise be saved as that epoch's checkpoint.
    """

    def on_epoch_end(self, epoch, logs=None):
        for variable in self.model.weights:
            if not np.isfinite(keras.ops.convert_to_numpy(variable)).all():
                raise RuntimeError(f"NaN or Inf weights in {variable.path} after epoch {epoch + 1}.")


class Backup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore keeping two checkpoints (the latest and the previous one), written
    only by the process that owns the output folder, and crash-safe: the weights go to a temporary
    file renamed into place, with their epoch stored inside, so a kill at any moment leaves a
    latest checkpoint whose weights and epoch agree (see :func:`_restored_epoch`)."""

    def __init__(self, backup_dir: Path, write: bool = True):
        super().__init__(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)
        self.write = write

    def _save_model(self):
        if not self.write:
            return
        import h5py

        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for path in (LATEST, METADATA):   # the previous checkpoint, also copied then renamed
            if (folder / path).exists():
                shutil.copyfile(folder / path, folder / f"partial.{path}.bkp")
                os.replace(folder / f"partial.{path}.bkp", folder / f"{path}.bkp")
        partial = folder / f"partial.{LATEST}"
        self.model.save_weights(partial, overwrite=True)
        with h5py.File(partial, "a") as handle:
            handle.attrs["epoch"] = self._current_epoch
        os.replace(partial, folder / LATEST)
        _write_metadata(folder / METADATA, self._current_epoch)


# ------------------------------------------------------------------------------ checkpoints

def data_identity(source: dict) -> dict:
    """The fields of a data source (``Splits.source``, a result's ``provenance["data"]``) that
    identify the data a run was trained and tested on."""
    return {key: source[key] for key in DATA_IDENTITY if key in source}


def _recorded_data(folder: Path, existing: dict) -> dict | None:
    """The data identity a run folder records: in its RUN_FILE, or for folders written before
    bnlib recorded it there, in its result's provenance; None when neither says."""
    if "data" in existing:
        return existing["data"]
    result_file = folder / results.RESULT_FILE
    if result_file.is_file():
        provenance = json.loads(result_file.read_text()).get("provenance", {})
        return data_identity(provenance.get("data", {})) or None
    return None


def _prepare_output(config: RunConfig, overwrite: bool, write: bool = True,
                    data: dict | None = None) -> Path | None:
    """Create the output folder; refuse one holding a different run (another configuration, or
    other ``data``: see :func:`data_identity`) unless ``overwrite``.  With ``write=False`` (a
    non-chief worker) only check, and change nothing."""
    if not config.output_dir:
        return None
    folder = Path(config.output_dir)
    run_file = folder / RUN_FILE
    wanted = config.to_dict()
    if data is not None:
        wanted["data"] = data
    if run_file.is_file():
        existing = upgrade(json.loads(run_file.read_text()))  # a folder of an earlier bnlib
        recorded = _recorded_data(folder, existing)
        existing.pop("data", None)
        changed = sorted(k for k in (set(existing) | set(wanted)) - {"data"}
                         if not _same_setting(k, existing.get(k), wanted.get(k)))
        # Compare only what both record: an older record may lack a field.
        other_data = data is not None and recorded is not None and any(
            recorded[key] != data[key] for key in set(recorded) & set(data))
        if other_data and not overwrite:
            raise RunConflictError(
                f"{folder} was trained on other data ({_describe_data(recorded)}, not "
                f"{_describe_data(data)}); point data_path or $BNLIB_CIFAR10 back at that data, "
                "choose another output folder, or pass overwrite=True (--overwrite) to discard it.")
        if changed and not overwrite:
            raise RunConflictError(
                f"{folder} holds a different run (differs in {', '.join(changed)}); choose "
                "another output folder or pass overwrite=True (--overwrite) to discard it.")
        changed = changed or other_data
        if changed and write:
            for name in (BACKUP, HISTORY_FILE, results.RESULT_FILE, results.ARRAYS_FILE):
                path = folder / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(wanted, indent=1)
        results.atomic_write(run_file, lambda handle: handle.write(text.encode()))
    return folder


def _describe_data(identity: dict) -> str:
    """A short label for a data identity: its training images and pixel fingerprint."""
    used = identity.get("train_used", identity.get("n_train", "?"))
    return f"{used} training images, pixels sha256 {str(identity.get('train_sha256', '?'))[:12]}"


def _write_metadata(path: Path, epoch: int) -> None:
    text = json.dumps({"epoch": int(epoch), "batch": 0})
    results.atomic_write(path, lambda handle: handle.write(text.encode()))


def checkpoint_epoch(backup_dir: Path, name: str = LATEST) -> int | None:
    """The epoch a checkpoint file holds (None if missing, truncated or corrupt)."""
    try:
        import h5py

        with h5py.File(Path(backup_dir) / name, "r") as handle:
            handle.visit(lambda item: None)
            epoch = handle.attrs.get("epoch")
        if epoch is None:  # written by Keras' own BackupAndRestore: the epoch is in the metadata
            metadata = METADATA + name[len(LATEST):]
            epoch = json.loads((Path(backup_dir) / metadata).read_text())["epoch"]
        return int(epoch)
    except Exception:
        return None


def _restored_epoch(backup_dir: Path) -> int:
    """The epoch a resumed run starts at; falls back to the previous checkpoint if the latest
    one is truncated or corrupt (with a warning), so BackupAndRestore then loads a good one.
    The metadata file BackupAndRestore reads is rewritten to the epoch the weights hold."""
    latest, previous = backup_dir / LATEST, backup_dir / f"{LATEST}.bkp"
    if not latest.exists():
        return 0
    epoch = checkpoint_epoch(backup_dir)
    if epoch is None:
        epoch = checkpoint_epoch(backup_dir, previous.name) if previous.exists() else None
        if epoch is None:
            warnings.warn(f"Checkpoint in {backup_dir} is corrupt and no earlier one is readable; "
                          "starting from scratch.", stacklevel=3)
            shutil.rmtree(backup_dir)
            return 0
        warnings.warn(f"Latest checkpoint in {backup_dir} is corrupt; resuming from the previous "
                      f"one (epoch {epoch}).", stacklevel=3)
        shutil.copyfile(previous, backup_dir / f"partial.{LATEST}")
        os.replace(backup_dir / f"partial.{LATEST}", latest)
    try:
        recorded = json.loads((backup_dir / METADATA).read_text())["epoch"]
    except Exception:
        recorded = None
    if recorded != epoch:
        _write_metadata(backup_dir / METADATA, epoch)
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
    keras.mixed_precision.set_global_policy(config.precision)


@contextlib.contextmanager
def configured_runtime(config: RunConfig):
    """:func:`configure_runtime` for the duration of a block, then the process-wide settings it
    changes (precision policy, op determinism) put back, so that a deterministic or
    mixed-precision run or build in a notebook does not change the cells after it.  Models built
    inside keep their precision."""
    policy_before = keras.mixed_precision.global_policy()
    determinism_before = runtime.op_determinism_enabled()
    try:
        configure_runtime(config)
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy_before)
        if config.deterministic and not determinism_before:
            runtime.disable_op_determinism()


def train(config: RunConfig, verbose: int | str = 2, overwrite: bool = False,
          callbacks: list | None = None, model: keras.Model | None = None) -> results.Result:
    """Train as ``config`` says and return the Result (also saved in ``config.output_dir``).

    Re-running with the same config and output folder resumes an interrupted run, or returns the
    saved result of a finished one; either only on the data the folder was trained on (the data
    is loaded first, to check).  ``verbose=2`` prints one line per epoch.  Pass ``model`` to
    continue training a network you already have (e.g. ``previous.model``, for BN-only then full
    training) instead of building ``config.model``: ``config.policy`` is applied to it and its
    weights are kept (one device only).  A finished run returned from its folder has no model
    (``result.model is None``); ``analysis.rebuild_model`` re-creates BN-only networks.
    """
    _warn_about_unused_milestones(config)
    started = time.perf_counter()
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.  Only the chief writes
    # the output folder; the other workers read it (to resume) and follow the chief's decisions.
    strategy = make_strategy(config.strategy) if config.strategy == "multiworker" else None
    chief = is_chief(strategy)
    # The data is loaded first, so that a folder trained on other data is refused rather than
    # resumed or returned (a changed $BNLIB_CIFAR10 leaves the configuration unchanged).
    splits = data_module.prepare(config)
    folder = _prepare_output(config, overwrite, write=chief, data=data_identity(splits.source))
    finished = folder is not None and (folder / results.RESULT_FILE).is_file()
    if strategy is not None:
        finished = bool(_cluster_sum(strategy, [finished], chief_only=True)[0])
    if finished:
        return results.load(folder)
    with configured_runtime(config):
        return _train(config, folder, splits, strategy, chief, verbose, callbacks or [], started, model)


def _warn_about_unused_milestones(config: RunConfig) -> None:
    """A step decay at or after the last epoch never happens: say so (it may be intended, as for
    the first epochs of a long schedule), since the learning rate then differs from the recipe's."""
    unused = [m for m in config.lr_milestones if m >= config.epochs] if config.schedule == "step" else []
    if unused:
        scaled = (config.epochs // 2, config.epochs * 3 // 4)
        example = (f" (the paper decays at half and three quarters of the epochs: {scaled} here)"
                   if 0 < scaled[0] < scaled[1] else "")
        warnings.warn(f"{config.label}: lr_milestones {unused} fall at or after the last epoch "
                      f"({config.epochs}), so those decays never happen; scale them to the run{example} "
                      "unless you mean to run only the start of a longer schedule.", stacklevel=3)


def _warn_about_slow_precision(config: RunConfig, strategy) -> None:
    """16-bit compute pays only on hardware built for it: say so when a CPU would run it instead
    (not a GPU, nor a TPU, which ``strategy="auto"`` finds only when it makes the strategy)."""
    if (config.precision == "float32" or isinstance(strategy, tf.distribute.TPUStrategy)
            or tf.config.list_physical_devices("GPU")):
        return
    if config.precision == "mixed_float16":
        warnings.warn(f"{config.label}: precision='mixed_float16' is very slow on CPUs (a fully trained "
                      "ResNet-20 step ran about 250x slower than in float32 on the book's Xeon); use "
                      "precision='float32', or 'mixed_bfloat16' on a CPU with AMX.", stacklevel=4)
    elif runtime.bfloat16_hardware() == "none":
        warnings.warn(f"{config.label}: this CPU has no bfloat16 hardware (AMX or AVX-512 BF16), so "
                      "precision='mixed_bfloat16' runs emulated; it pays on CPUs with AMX: use "
                      "precision='float32' here.", stacklevel=4)


def _train(config, folder, splits, strategy, chief, verbose, extra_callbacks, started,
           model=None) -> results.Result:
    strategy = strategy or make_strategy(config.strategy)
    _warn_about_slow_precision(config, strategy)
    # A network passed in counts as the seed's own only while it is untrained and built for this
    # configuration; otherwise its result records that it started elsewhere.
    given_model = (model is not None
                   and getattr(model, "_bnlib_initialisation", None) != _initialisation(config))
    with strategy.scope():
        if model is None:
            model = build_model(config, splits.num_classes)
        else:
            freeze.apply_policy(model, config.policy, seed=config.seed)
        if strategy.num_replicas_in_sync > 1:
            # Statistics of the global batch, as on one device (Keras' default is per-device
            # statistics), so the result does not depend on how many devices share a batch.
            for layer in freeze.batchnorm_layers(model):
                layer.synchronized = True
        model.compile(optimizer=make_optimizer(config),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=config.xla)
    initial = _batchnorm_values(model)
    backup_dir = folder / BACKUP if folder else None
    first_epoch = _restored_epoch(backup_dir) if backup_dir and chief else 0
    if config.strategy == "multiworker":
        first_epoch = _cluster_sum(strategy, [first_epoch], chief_only=True)[0]
        unseen = bool(first_epoch) and checkpoint_epoch(backup_dir) != first_epoch
        if _cluster_sum(strategy, [unseen])[0]:
            raise ValueError(f"A worker cannot read the chief's checkpoint in {backup_dir}; put "
                             "output_dir on storage that every worker reads (a shared disk, GCS).")
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
        keras.callbacks.TerminateOnNaN(raise_error=True),
        StopOnNonFiniteWeights(),  # before the history and the checkpoint of a bad epoch
        *extra_callbacks,
        HistoryFile(folder / HISTORY_FILE if folder and chief else None, history),
    ]
    if backup_dir:
        callbacks.append(Backup(backup_dir, write=chief))
    model.build((None, *splits.x_train.shape[1:]))
    # Keras' BackupAndRestore leaves the epoch it resumed from on the model (model._initial_epoch),
    # and fit() prefers it to its initial_epoch argument: a model passed on from a resumed run
    # would silently skip epochs of this one.  Keras re-sets it when this run itself resumes.
    model._initial_epoch = None
    try:
        with _multiworker_keras_fixes(strategy):
            if first_epoch < config.epochs:
                model.fit(train_stream, epochs=config.epochs, initial_epoch=first_epoch,
                          steps_per_epoch=steps, validation_data=validation, callbacks=callbacks,
                          verbose=verbose, shuffle=False)  # the pipeline shuffles, by (seed, epoch)
            else:  # stopped after the last checkpoint, before the result was saved
                with strategy.scope():
                    model.optimizer.build(model.trainable_variables)
                model.load_weights(backup_dir / LATEST)
            test = data_module.eval_pipeline(splits.x_test, splits.y_test, config.batch_size,
                                             splits.mean, splits.std)
            test_loss, test_accuracy = model.evaluate(test, verbose=0)
    except RuntimeError as error:
        if "NaN or Inf" not in str(error):
            raise
        kept = checkpoint_epoch(backup_dir) if backup_dir else None
        raise DivergenceError(
            f"{config.label}: training diverged (NaN/inf) in epoch {len(history.get('loss', [])) + 1} "
            f"at learning rate {learning_rate(config, len(history.get('loss', []))):g}; lower "
            "learning_rate, add a warm-up (warmup_epochs=5) or clip gradients (clipnorm=1.0), and "
            "re-run with overwrite=True (--overwrite)"
            + (f"; until then the last good checkpoint (epoch {kept}) stays in {backup_dir}." if kept
               else "; it diverged before the first checkpoint." if backup_dir else ".")) from None
    final = _batchnorm_values(model)
    result = results.Result(
        config=config.to_dict(), history=history,
        test_accuracy=float(test_accuracy), test_loss=float(test_loss),
        parameters=freeze.parameter_report(model),
        provenance=results.provenance(splits.source, time.perf_counter() - started,
                                      runtime.describe_device()),
        gamma={k: v[0] for k, v in final.items()}, beta={k: v[1] for k, v in final.items()},
        initial_gamma={k: v[0] for k, v in initial.items()},
        initial_beta={k: v[1] for k, v in initial.items()},
        moving_mean={k: v[2] for k, v in final.items()},
        moving_variance={k: v[3] for k, v in final.items()},
        output={"kernel": freeze.output_layer(model).kernel.numpy(),
                "bias": freeze.output_layer(model).bias.numpy()},
    )
    # Mixed precision wraps the optimizer in a LossScaleOptimizer: describe the one inside.
    result.provenance["optimizer"] = optimizers.describe(getattr(model.optimizer, "inner_optimizer",
                                                                 model.optimizer))
    result.provenance["epochs_resumed_from"] = first_epoch
    result.provenance["initial_model"] = "given" if given_model else "seed"  # see rebuild_model

    result.provenance["train_seconds"] = round(sum(history.get("epoch_seconds", [])), 1)
    if folder is not None and chief:
        result.save(folder)
        shutil.rmtree(backup_dir, ignore_errors=True)
    model._bnlib_initialisation = None  # trained now
    result.model = model
    return result


def _batchnorm_values(model) -> dict:
    """Per BN layer: (γ, β, moving mean, moving variance) as numpy copies."""
    return {layer.name: tuple(keras.ops.convert_to_numpy(v).copy() for v in
                              (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
            for layer in freeze.batchnorm_layers(model)}
