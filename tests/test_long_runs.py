"""Long runs that survive: resume after SIGKILL, corrupt checkpoints, divergence, bad input,
atomic writes and determinism.

The runs are tiny (ResNet-8, 200 images, batch 32, 4 epochs) but take the real code path: model.fit
with the checkpoint callback, the seeded data stream, the result files.  Runs that must be killed,
or that compare TensorFlow processes, run in subprocesses (tests/run_helpers.py).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import bnlib
from bnlib import data as data_module
from bnlib import models, results
from bnlib import training as train_module  # the module; `bnlib.train` is its train function
from bnlib.config import RunConfig
from bnlib.data import DataError
from bnlib.results import ResultFormatError
from bnlib.training import BACKUP, LATEST, METADATA, DivergenceError, RunConflictError

from run_helpers import flat, run_script, start_script

EPOCHS = 4
TOLERANCE = dict(rtol=0, atol=1e-6)


def long_config(data, output_dir, **changes) -> dict:
    """The paper's recipe (SGD with momentum, weight decay, augmentation) shrunk: ResNet-8,
    200 images (7 steps an epoch, the last one partial), cosine decay after a 1-epoch warm-up."""
    return {**dict(model="resnet8", policy="bn", data_path=str(data), epochs=EPOCHS, batch_size=32,
                   optimizer="sgd", learning_rate=0.05, schedule="cosine", warmup_epochs=1,
                   deterministic=True, output_dir=output_dir and str(output_dir)), **changes}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def reference(data, runs):
    """An uninterrupted run, in its own process."""
    return run_script({"config": long_config(data, runs / "reference")})


@pytest.fixture(scope="module")
def killed(data, runs):
    """A run killed with SIGKILL in the middle of epoch 3, after epoch 2's checkpoint; returns
    (its folder, a pristine copy of it)."""
    folder, marker = runs / "killed", runs / "killed.marker"
    proc = start_script({"config": long_config(data, folder), "pause_epoch": 3,
                         "marker": str(marker)})
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached epoch 3"
        time.sleep(0.2)
    assert json.loads((folder / BACKUP / METADATA).read_text())["epoch"] == 2
    proc.kill()  # SIGKILL: no cleanup, no callbacks
    proc.communicate()
    assert proc.returncode == -9
    assert not (folder / results.RESULT_FILE).exists()
    snapshot = runs / "killed-snapshot"
    shutil.copytree(folder, snapshot)
    return folder, snapshot


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def assert_same_run(result, reference, tolerance=TOLERANCE):
    """Same history (epochs 1..N once each), same final γ/β, BN moving statistics, output layer
    and test accuracy, and where both runs kept their network, the same value of every weight."""
    history = result["history"] if isinstance(result, dict) else result.history
    assert history["epoch"] == list(range(1, EPOCHS + 1))
    assert {len(values) for values in history.values()} == {EPOCHS}
    for key in ("loss", "accuracy", "learning_rate"):
        np.testing.assert_allclose(history[key], reference["history"][key], rtol=1e-6)
    for name in ("gamma", "beta", "moving_mean", "moving_variance", "output"):
        mine = result[name] if isinstance(result, dict) else getattr(result, name)
        assert mine, f"the result has no {name}"
        np.testing.assert_allclose(flat(mine), flat(reference[name]), **tolerance)
    weights = result.get("weights") if isinstance(result, dict) else None
    if weights and reference.get("weights"):
        assert len(weights) == len(reference["weights"])
        for mine, theirs in zip(weights, reference["weights"]):
            np.testing.assert_allclose(mine, theirs, **tolerance)
    accuracy = result["test_accuracy"] if isinstance(result, dict) else result.test_accuracy
    assert accuracy == pytest.approx(reference["test_accuracy"], abs=1e-6)


# ------------------------------------------------------------------------------------ resuming

def test_reference_run(reference, data):
    config = RunConfig(**long_config(data, "unused"))
    assert reference["history"]["epoch"] == [1, 2, 3, 4]
    assert reference["provenance"]["epochs_resumed_from"] == 0
    # the warm-up and the cosine decay, epoch by epoch
    np.testing.assert_allclose(reference["history"]["learning_rate"],
                               [train_module.learning_rate(config, e) for e in range(EPOCHS)],
                               rtol=1e-6)
    assert np.all(np.isfinite(reference["history"]["loss"]))


def test_resume_after_sigkill_matches_uninterrupted_run(killed, reference, data):
    folder, _ = killed
    history = json.loads((folder / train_module.HISTORY_FILE).read_text())
    assert history["epoch"] == [1, 2]
    resumed = run_script({"config": long_config(data, folder)})  # the same command again
    assert resumed["provenance"]["epochs_resumed_from"] == 2
    # Equal to the uninterrupted run: the checkpoint holds the SGD momentum buffers (Keras 3's
    # save_weights includes the optimizer's variables) and the data stream restarts at epoch 3.
    assert_same_run(resumed, reference)
    assert (folder / results.RESULT_FILE).is_file() and not (folder / BACKUP).exists()
    saved = results.load(folder)
    assert saved.history["epoch"] == [1, 2, 3, 4]
    # a finished run is not trained again
    assert bnlib.train(RunConfig(**long_config(data, folder)), verbose=0).history == saved.history


def test_truncated_latest_checkpoint_resumes_from_previous(killed, reference, data, runs):
    folder = copy_run(killed[1], runs / "truncated")  # a run folder may move (output_dir differs)
    latest = folder / BACKUP / LATEST
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="corrupt; resuming from the previous one .epoch 1"):
        resumed = bnlib.train(RunConfig(**long_config(data, folder)), verbose=0)
    assert resumed.provenance["epochs_resumed_from"] == 1
    assert_same_run(resumed, reference)


def test_weights_newer_than_metadata_resume_from_the_weights(killed, reference, data, runs):
    """A kill between writing a checkpoint's weights and its metadata file: the weights say
    epoch 2, the metadata still epoch 1.  Resuming must not replay epoch 2 on top of them."""
    folder = copy_run(killed[1], runs / "metadata-behind")
    (folder / BACKUP / METADATA).write_text(json.dumps({"epoch": 1, "batch": 0}))
    resumed = bnlib.train(RunConfig(**long_config(data, folder)), verbose=0)
    assert resumed.provenance["epochs_resumed_from"] == 2
    assert_same_run(resumed, reference)


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(data, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    config = RunConfig(**long_config(data, folder, epochs=2))
    save_weights, calls = keras.Model.save_weights, []

    def crashing_save_weights(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:  # epoch 2's checkpoint: half a file, then the machine dies
            Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
            raise OSError("simulated crash while writing")
        return save_weights(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", crashing_save_weights)
    with pytest.raises(OSError, match="simulated crash"):
        bnlib.train(config, verbose=0)
    # the latest checkpoint is still the complete epoch-1 one, which a re-run resumes from
    assert train_module.checkpoint_epoch(folder / BACKUP) == 1
    assert json.loads((folder / BACKUP / METADATA).read_text())["epoch"] == 1


# ---------------------------------------------------------------------------------- divergence

def weights_in(checkpoint: Path) -> list[np.ndarray]:
    arrays = []
    with h5py.File(checkpoint, "r") as handle:
        handle.visititems(lambda name, item: arrays.append(item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


class BlowUpFromEpoch2(keras.callbacks.Callback):
    """Sets a learning rate that makes training diverge from the second epoch on (RunConfig
    refuses schedules that grow, so the test overrides bnlib's scheduler, which runs before it)."""

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= 1:
            self.model.optimizer.learning_rate.assign(self.rate)


@pytest.mark.parametrize("batch_size,rate", [
    (32, 1e6),     # 7 steps an epoch; lr 1e6 from epoch 2: NaN a few steps in
    (200, 1e39),   # one step an epoch; lr overflows float32 to inf in epoch 2: the weights turn
                   # NaN in the epoch's last step, while the loss of that step is still finite
])
def test_divergence_keeps_last_good_checkpoint(data, tmp_path, batch_size, rate):
    folder = tmp_path / "run"
    config = RunConfig(**long_config(data, folder, policy="all", schedule="constant", warmup_epochs=0,
                                     epochs=3, batch_size=batch_size, deterministic=False))
    with pytest.raises(DivergenceError) as caught:
        bnlib.train(config, verbose=0, callbacks=[BlowUpFromEpoch2(rate)])
    message = str(caught.value)
    assert "\n" not in message
    for words in ("epoch 2", "learning_rate", "warmup_epochs", "clipnorm", "overwrite=True",
                  f"last good checkpoint (epoch 1) stays in {folder / BACKUP}"):
        assert words in message, message
    assert train_module.checkpoint_epoch(folder / BACKUP) == 1
    assert all(np.isfinite(a).all() for a in weights_in(folder / BACKUP / LATEST) if a.dtype.kind == "f")
    assert json.loads((folder / train_module.HISTORY_FILE).read_text())["epoch"] == [1]
    assert not (folder / results.RESULT_FILE).exists()


def test_warmup_schedule_and_clipnorm(data):
    config = RunConfig(learning_rate=0.1, warmup_epochs=4, schedule="step", lr_milestones=(6,),
                       epochs=8)
    lrs = [train_module.learning_rate(config, epoch) for epoch in range(8)]
    np.testing.assert_allclose(lrs, [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.01, 0.01])
    cosine = config.replace(schedule="cosine")
    assert train_module.learning_rate(cosine, 4) == pytest.approx(0.1)   # warm-up ends at the peak
    assert train_module.learning_rate(cosine, 7) < 0.1
    for optimizer in ("sgd", "adam"):
        made = train_module.make_optimizer(RunConfig(optimizer=optimizer, clipnorm=0.5))
        assert made.global_clipnorm == 0.5
    assert train_module.make_optimizer(RunConfig()).global_clipnorm is None

    class Probe(keras.callbacks.Callback):
        """Record what fit actually trains with, then stop before the first step."""

        def on_train_begin(self, logs=None):
            self.clipnorm = self.model.optimizer.global_clipnorm
            raise KeyboardInterrupt

    probe = Probe()
    with pytest.raises(KeyboardInterrupt):
        bnlib.train(RunConfig(**long_config(data, None, clipnorm=0.5)), verbose=0, callbacks=[probe])
    assert probe.clipnorm == 0.5


@pytest.mark.slow
def test_deep_bn_only_resnet_stays_finite(data):
    """ResNet-110, BN-only, the paper's SGD recipe (lr 0.1, momentum 0.9): a few steps stay finite."""
    config = RunConfig.preset("paper", model="resnet110", policy="bn", data_path=str(data),
                              epochs=2, batch_size=32, train_per_class=7, test_per_class=2)
    result = bnlib.train(config, verbose=0)
    assert result.history["epoch"] == [1, 2]
    assert np.isfinite(result.history["loss"]).all()
    assert np.isfinite(flat(result.gamma)).all() and np.isfinite(flat(result.beta)).all()
    assert not np.array_equal(flat(result.gamma), flat(result.initial_gamma))  # it did train


# --------------------------------------------------------------------------------- bad input

def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


@pytest.mark.parametrize("fields,expected", [
    (dict(model="resnet15"), ["6n+2", "14 or 20"]),
    (dict(model="resnet4"), ["6n+2", "nearest valid depths: 8"]),
    (dict(model="wrn14-0"), ["Width", "wrn14-2"]),
    (dict(model="vgg12"), ["VGG depth 12", "11, 13, 16, 19"]),
    (dict(model="keras-resnet34"), ["keras-resnet depth 34", "50, 101 or 152"]),
    (dict(model="resnt20"), ["Unknown model", "resnet20"]),
    (dict(policy="bn_only"), ["Unknown policy", "choose one of"]),
    (dict(gamma_init="unifrom"), ["did you mean 'uniform'"]),
    (dict(beta_init="one"), ["Unknown beta_init", "zeros"]),
    (dict(strategy="mirror"), ["did you mean 'mirrored'"]),
])
def test_bad_names_fail_at_once(fields, expected):
    with pytest.raises(ValueError) as caught:
        RunConfig(**fields)
    message = one_line(caught)
    for words in expected:
        assert words in message, message
    if "model" in fields:
        with pytest.raises(ValueError) as built:
            models.build(fields["model"])
        assert one_line(built) == message


def save_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
              "y_train": np.arange(20) % 10, "x_test": rng.integers(0, 256, (10, 32, 32, 3),
                                                                     dtype=np.uint8),
              "y_test": np.arange(10) % 10}
    np.savez(path, **{**arrays, **changes})
    return path


@pytest.mark.parametrize("changes,expected", [
    (dict(x_train=np.zeros((20, 3, 32, 32), np.uint8)), ["x_train has shape (20, 3, 32, 32)",
                                                         "channels last"]),
    (dict(x_test=np.zeros((10, 32, 32, 3), np.float32)), ["x_test has dtype float32", "uint8"]),
    (dict(y_train=np.arange(20) % 11), ["y_train must hold integer labels in [0, 10)",
                                         "right dataset"]),
    (dict(y_test=np.arange(9)), ["y_test has 9 labels for 10 images"]),
])
def test_malformed_dataset_files(tmp_path, changes, expected):
    path = save_npz(tmp_path / "bad.npz", **changes)
    with pytest.raises(DataError) as caught:
        data_module.load("cifar10", path)
    message = one_line(caught)
    for words in expected:
        assert words in message, message


def test_malformed_dataset_fails_through_train(tmp_path):
    path = save_npz(tmp_path / "bad.npz", y_train=np.arange(20) % 11)
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        bnlib.train(RunConfig(model="resnet8", data_path=str(path), epochs=1, batch_size=10),
                    verbose=0)


def test_tarball_with_wrong_checksum(tmp_path):
    import tarfile

    inner = tmp_path / "cifar-10-batches-py"
    inner.mkdir()
    (inner / "readme.html").write_text("not CIFAR")
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(inner, arcname=inner.name)
    with pytest.raises(DataError) as caught:
        data_module.load("cifar10", tarball)
    message = one_line(caught)
    assert f"has md5 {data_module.md5sum(tarball)}" in message
    assert data_module.TARBALLS["cifar10"][1] in message and "download it again" in message


def test_batch_size_larger_than_the_data(data):
    with pytest.raises(DataError) as caught:
        bnlib.train(RunConfig(model="resnet8", data_path=str(data), batch_size=512, epochs=1),
                    verbose=0)
    assert "batch_size 512 is larger than the 200 training images" in one_line(caught)


def small_result(accuracy=0.5) -> results.Result:
    return results.Result(config=RunConfig(model="resnet8").to_dict(),
                          history={"loss": [2.0], "epoch": [1]}, test_accuracy=accuracy,
                          test_loss=2.0, parameters={}, provenance={},
                          gamma={"bn": np.ones(4, np.float32)}, beta={"bn": np.zeros(4, np.float32)})


def test_result_from_a_newer_format(tmp_path):
    small_result().save(tmp_path)
    record = json.loads((tmp_path / results.RESULT_FILE).read_text())
    record["format_version"] = results.FORMAT_VERSION + 1
    (tmp_path / results.RESULT_FILE).write_text(json.dumps(record))
    with pytest.raises(ResultFormatError) as caught:
        results.load(tmp_path)
    message = one_line(caught)
    assert f"result format {results.FORMAT_VERSION + 1}" in message and "update bnlib: git pull" in message


def test_result_without_a_format_version(tmp_path):
    small_result().save(tmp_path)
    record = json.loads((tmp_path / results.RESULT_FILE).read_text())
    del record["format_version"]
    (tmp_path / results.RESULT_FILE).write_text(json.dumps(record))
    with pytest.raises(ResultFormatError) as caught:
        results.load(tmp_path)
    assert "no valid format_version (None)" in one_line(caught) and "re-run" in one_line(caught)


def layered_result() -> results.Result:
    """Three BN layers of different widths, every kind of array different, the output layer."""
    rng = np.random.default_rng(0)
    layers = {"stem_bn": 3, "block_bn": 5, "shortcut_bn": 2}
    kinds = {kind: {name: rng.normal(size=n).astype(np.float32) for name, n in layers.items()}
             for kind in results.PER_LAYER}
    output = {"kernel": rng.normal(size=(2, 10)).astype(np.float32), "bias": np.zeros(10, np.float32)}
    return results.Result(config=RunConfig(model="resnet8").to_dict(), history={"loss": [2.0], "epoch": [1]},
                          test_accuracy=0.5, test_loss=2.0, parameters={}, provenance={}, output=output, **kinds)


def assert_same_arrays(loaded, saved):
    for kind in (*results.PER_LAYER, "output"):
        assert list(getattr(loaded, kind)) == list(getattr(saved, kind)), kind   # names, in order
        for name, values in getattr(saved, kind).items():
            np.testing.assert_array_equal(getattr(loaded, kind)[name], values)


def test_result_arrays_round_trip(tmp_path):
    saved = layered_result()
    saved.save(tmp_path)
    with np.load(tmp_path / results.ARRAYS_FILE) as arrays:   # format 2: one array per kind
        assert sorted(arrays.files) == sorted([*results.PER_LAYER, "output/kernel", "output/bias"])
    assert_same_arrays(results.load(tmp_path), saved)


def test_result_of_format_1_still_loads(tmp_path):
    """Format 1 (one array per layer and kind, results written before 2026-11-26) reads the same."""
    saved = layered_result()
    arrays = {f"{kind}/{name}": values for kind in (*results.PER_LAYER, "output")
              for name, values in getattr(saved, kind).items()}
    np.savez_compressed(tmp_path / results.ARRAYS_FILE, **arrays)
    (tmp_path / results.RESULT_FILE).write_text(json.dumps({
        "format_version": 1, "config": saved.config, "history": saved.history, "test_accuracy": 0.5,
        "test_loss": 2.0, "parameters": {}, "provenance": {}, "layers": list(saved.gamma)}))
    assert_same_arrays(results.load(tmp_path), saved)


def test_result_arrays_that_do_not_match_the_layers(tmp_path):
    layered_result().save(tmp_path)
    record = json.loads((tmp_path / results.RESULT_FILE).read_text())
    record["channels"][1] += 1
    (tmp_path / results.RESULT_FILE).write_text(json.dumps(record))
    with pytest.raises(ResultFormatError) as caught:
        results.load(tmp_path)
    assert "names 11 channels" in one_line(caught) and "re-run" in one_line(caught)
    del record["channels"]
    (tmp_path / results.RESULT_FILE).write_text(json.dumps(record))
    with pytest.raises(ResultFormatError) as caught:
        results.load(tmp_path)
    assert "lists no channel counts" in one_line(caught)


def test_output_folder_of_another_run(killed, data, runs):
    """A folder holding another run's checkpoint: refused, or discarded with overwrite=True."""
    folder = copy_run(killed[1], runs / "other-run")
    other = RunConfig(**long_config(data, folder, learning_rate=0.02, epochs=1, warmup_epochs=0))
    with pytest.raises(RunConflictError) as caught:
        bnlib.train(other, verbose=0)
    message = one_line(caught)
    assert "differs in epochs, learning_rate, warmup_epochs" in message and "overwrite=True" in message
    assert train_module.checkpoint_epoch(folder / BACKUP) == 2  # untouched
    fresh = bnlib.train(other, verbose=0, overwrite=True)
    assert fresh.provenance["epochs_resumed_from"] == 0  # not epoch 2 of the other run
    assert fresh.history["epoch"] == [1]
    assert json.loads((folder / train_module.RUN_FILE).read_text())["learning_rate"] == 0.02


def test_a_run_folder_trained_on_other_data_is_refused(killed, reference, data, runs):
    """The same configuration on other pixels (a changed $BNLIB_CIFAR10, or another file of the
    same name) neither resumes an interrupted run nor returns a finished one; overwrite=True
    discards the folder and records the new data."""
    arrays = dict(np.load(data))
    arrays["x_train"][0, 0, 0, 0] ^= 1
    other_data = runs / "other-pixels" / Path(data).name   # the same file name elsewhere
    other_data.parent.mkdir()
    np.savez(other_data, **arrays)
    interrupted = copy_run(killed[1], runs / "interrupted-other-data")
    finished = copy_run(runs / "reference", runs / "finished-other-data")
    run_file = json.loads((finished / train_module.RUN_FILE).read_text())
    del run_file["data"]   # as written before bnlib recorded it: the result's provenance says
    (finished / train_module.RUN_FILE).write_text(json.dumps(run_file))
    for folder in (interrupted, finished):
        with pytest.raises(RunConflictError) as caught:
            bnlib.train(RunConfig(**long_config(other_data, folder)), verbose=0)
        message = one_line(caught)
        assert "trained on other data" in message and "$BNLIB_CIFAR10" in message, message
    assert train_module.checkpoint_epoch(interrupted / BACKUP) == 2   # untouched
    fresh = bnlib.train(RunConfig(**long_config(other_data, interrupted)), verbose=0, overwrite=True)
    assert fresh.provenance["epochs_resumed_from"] == 0
    recorded = json.loads((interrupted / train_module.RUN_FILE).read_text())["data"]
    assert recorded == train_module.data_identity(fresh.provenance["data"])
    assert recorded["train_sha256"] != reference["provenance"]["data"]["train_sha256"]


def test_a_run_folder_may_move_with_its_data_file(tmp_path):
    """A clone elsewhere finds its runs: the same data file name in another folder is the same
    data, as is another output folder; another file name is another run."""
    config = RunConfig(model="resnet8", data_path="/old/clone/.cache/cifar10-classes-0-4.npz",
                       output_dir=str(tmp_path / "old"))
    train_module._prepare_output(config, overwrite=False)
    moved = config.replace(data_path="/new/clone/.cache/cifar10-classes-0-4.npz", output_dir=str(tmp_path / "old"))
    assert train_module._prepare_output(moved, overwrite=False) == tmp_path / "old"
    for other in (config.replace(data_path="/old/clone/.cache/cifar10-classes-5-9.npz"),
                  config.replace(data_path=None)):
        with pytest.raises(RunConflictError, match="differs in data_path"):
            train_module._prepare_output(other, overwrite=False)


def test_a_run_folder_of_an_earlier_bnlib_resumes(tmp_path):
    """A folder written before ``precision`` replaced ``mixed_precision`` (every committed result's
    folder) is the same run as the translated setting, and another run for any other precision;
    its result loads with the new field too."""
    config = RunConfig(model="resnet8", output_dir=str(tmp_path))
    old = {k: v for k, v in config.to_dict().items() if k != "precision"}
    (tmp_path / train_module.RUN_FILE).write_text(json.dumps({**old, "mixed_precision": False}))
    assert train_module._prepare_output(config, overwrite=False) == tmp_path
    (tmp_path / train_module.RUN_FILE).write_text(json.dumps({**old, "mixed_precision": False}))
    with pytest.raises(RunConflictError, match="differs in precision"):
        train_module._prepare_output(config.replace(precision="mixed_bfloat16"), overwrite=False)
    saved = layered_result()
    saved.config = {k: v for k, v in saved.config.items() if k != "precision"} | {"mixed_precision": True}
    saved.save(tmp_path)
    loaded = results.load(tmp_path)
    assert loaded.config["precision"] == "mixed_float16" and "mixed_precision" not in loaded.config


class HalfWritten:
    """A file handle that dies after writing half of what it is first given."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(bytes(data)[: len(data) // 2])
        self.handle.flush()
        raise OSError("simulated crash while writing")

    def __getattr__(self, name):
        return getattr(self.handle, name)


@pytest.mark.parametrize("crash_in", [results.ARRAYS_FILE, results.RESULT_FILE])
def test_result_writes_are_atomic(tmp_path, monkeypatch, crash_in):
    """A crash in the middle of writing leaves the previous complete result (or none), never a
    partial file."""
    atomic_write = results.atomic_write

    def crashing_atomic_write(path, write):
        if Path(path).name == crash_in:
            return atomic_write(path, lambda handle: write(HalfWritten(handle)))
        return atomic_write(path, write)

    first = tmp_path / "first"
    small_result(accuracy=0.25).save(first)
    monkeypatch.setattr(results, "atomic_write", crashing_atomic_write)
    for folder in (tmp_path / "new", first):
        with pytest.raises(OSError, match="simulated crash"):
            small_result(accuracy=0.75).save(folder)
    monkeypatch.undo()
    assert not (tmp_path / "new" / results.RESULT_FILE).exists()
    assert results.load(first).test_accuracy == 0.25  # the earlier result, complete
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary files left behind


# ------------------------------------------------------------------------------- determinism

def test_a_deterministic_run_switches_op_determinism_off_again(data):
    """Op determinism (slower ops) is process-wide: train() must not leave it on for the
    notebook cells after a deterministic run, nor switch it off when the user had it on."""
    from tensorflow.python.framework import config as tf_config

    config = bnlib.RunConfig(**long_config(data, None, epochs=1, warmup_epochs=0))
    assert not tf_config.is_op_determinism_enabled()
    bnlib.train(config, verbose=0)
    assert not tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        bnlib.train(config, verbose=0)
        assert tf_config.is_op_determinism_enabled()
    finally:
        tf_config.disable_op_determinism()


def test_deterministic_runs_are_bit_identical(reference, data, runs):
    again = run_script({"config": long_config(data, runs / "reference-again")})
    for name in ("gamma", "beta"):
        assert np.array_equal(flat(again[name]), flat(reference[name])), name
    for key in ("loss", "accuracy", "learning_rate", "epoch"):
        assert again["history"][key] == reference["history"][key], key
    assert again["test_accuracy"] == reference["test_accuracy"]
    first, second = results.load(runs / "reference"), results.load(runs / "reference-again")
    for name in ("moving_mean", "moving_variance"):
        assert np.array_equal(flat(getattr(first, name)), flat(getattr(second, name))), name
