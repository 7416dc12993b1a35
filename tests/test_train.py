"""Training end to end: the issue's acceptance run, schedules, results on disk."""
import importlib.util
import json
import shutil
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import bnlib
from bnlib import analysis, freeze, results, runtime
from bnlib import training as train_module  # the module; `bnlib.train` is its train function
from bnlib.config import RunConfig
from bnlib.runtime import tf
from bnlib.training import build_model, configure_runtime, learning_rate


def test_bn_only_resnet14_learns_on_the_exact_subset(cifar_subset, tmp_path):
    """BN-only ResNet-14, 5 epochs on the exact 4,000/1,000 CIFAR-10 subset: >= 25% test accuracy,
    every convolution kernel unchanged, a loadable result."""
    config = RunConfig.preset("smoke", model="resnet14", train_per_class=None, test_per_class=None,
                              epochs=5, data_path=cifar_subset, output_dir=str(tmp_path / "run"))
    result = bnlib.train(config, verbose=0)
    assert result.test_accuracy >= 0.25, result.test_accuracy
    configure_runtime(config)
    initial = build_model(config)  # the same seed rebuilds the same random convolutions
    for before, after in zip(freeze.conv_layers(initial), freeze.conv_layers(result.model)):
        np.testing.assert_array_equal(before.kernel.numpy(), after.kernel.numpy())
    np.testing.assert_array_equal(freeze.output_layer(initial).kernel.numpy(),
                                  freeze.output_layer(result.model).kernel.numpy())
    loaded = results.load(tmp_path / "run")
    assert loaded.test_accuracy == pytest.approx(result.test_accuracy)
    assert loaded.epochs_run == 5 and loaded.history["epoch"] == [1, 2, 3, 4, 5]
    assert loaded.provenance["data"]["description"] == "CIFAR-10 exact subset, 4,000/1,000 images"
    assert loaded.parameters["trainable"] == 1_120
    assert set(loaded.gamma) == {layer.name for layer in freeze.batchnorm_layers(result.model)}
    assert not np.allclose(loaded.all_gamma(), np.concatenate(list(loaded.initial_gamma.values())))
    # the saved arrays rebuild the trained network exactly
    rebuilt = analysis.rebuild_model(loaded)
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5)


def test_schedules():
    paper = RunConfig.preset("paper")
    assert [learning_rate(paper, e) for e in (0, 79, 80, 119, 120, 159)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    warm = paper.replace(warmup_epochs=4)
    assert [learning_rate(warm, e) for e in range(5)] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    cosine = RunConfig(schedule="cosine", epochs=10, learning_rate=1.0)
    assert learning_rate(cosine, 0) == 1.0 and learning_rate(cosine, 5) == pytest.approx(0.5)
    assert learning_rate(RunConfig(schedule="constant"), 150) == 0.1


def test_result_records_history_schedule_and_provenance(tiny_npz, tmp_path):
    config = RunConfig(model="resnet8", epochs=3, batch_size=32, schedule="step", lr_milestones=(2,),
                       learning_rate=0.05, data_path=str(tiny_npz), output_dir=str(tmp_path / "r"),
                       validation_split=0.2)
    result = bnlib.train(config, verbose=0)
    history = result.history
    assert history["learning_rate"] == pytest.approx([0.05, 0.05, 0.005])
    assert len(history["epoch_seconds"]) == 3 and "val_accuracy" in history
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["config"]["model"] == "resnet8" and record["format_version"] == results.FORMAT_VERSION
    for key in ("bnlib", "tensorflow", "keras", "device", "data", "wall_seconds", "source"):
        assert key in record["provenance"]
    assert record["provenance"]["cpu_bfloat16"] in ("AMX", "AVX-512 BF16", "none")
    # the optimizer and the form of its weight decay (RunConfig's default: 1e-4, PyTorch's form)
    assert record["provenance"]["optimizer"] == (
        "bnlib.optimizers.SGD (momentum 0.9; weight decay 0.0001 as an L2 term on the gradient)")
    # finished runs are returned, not re-trained; a new name is only a new label
    again = bnlib.train(config, verbose=0)
    assert again.model is None and again.test_accuracy == result.test_accuracy
    renamed = bnlib.train(config.replace(name="another label"), verbose=0)
    assert renamed.model is None and renamed.test_accuracy == result.test_accuracy


def test_step_decays_past_the_last_epoch_are_reported():
    short = RunConfig.preset("paper", epochs=30)   # the paper's milestones 80 and 120 never come
    with pytest.warns(UserWarning, match=r"lr_milestones \[80, 120\] fall at or after the last epoch "
                                         r"\(30\).*\(15, 22\) here"):
        train_module._warn_about_unused_milestones(short)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_module._warn_about_unused_milestones(RunConfig.preset("paper"))
        train_module._warn_about_unused_milestones(short.replace(schedule="cosine"))


def test_16_bit_compute_on_a_cpu_is_reported(monkeypatch):
    """mixed_float16 crawls on CPUs, mixed_bfloat16 is emulated on those without bfloat16 units:
    train() warns before it starts; float32, and bfloat16 on a CPU with AMX, pass silently."""
    assert not tf.config.list_physical_devices("GPU"), "this test describes a CPU-only machine"
    one_device = tf.distribute.get_strategy()
    with pytest.warns(UserWarning, match=r"precision='mixed_float16' is very slow on CPUs.*use "
                                         r"precision='float32', or 'mixed_bfloat16' on a CPU with AMX"):
        train_module._warn_about_slow_precision(RunConfig(precision="mixed_float16"), one_device)
    monkeypatch.setattr(train_module.runtime, "bfloat16_hardware", lambda: "none")
    with pytest.warns(UserWarning, match=r"no bfloat16 hardware.*use precision='float32' here"):
        train_module._warn_about_slow_precision(RunConfig(precision="mixed_bfloat16"), one_device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_module._warn_about_slow_precision(RunConfig(), one_device)
        monkeypatch.setattr(train_module.runtime, "bfloat16_hardware", lambda: "AMX")
        train_module._warn_about_slow_precision(RunConfig(precision="mixed_bfloat16"), one_device)


def test_a_network_passed_on_trains_every_epoch_and_is_marked(tiny_npz):
    """A network from a resumed run carries Keras' resume epoch (model._initial_epoch), which
    fit() would prefer to its own: the next run must still train all its epochs.  A network
    trained before is recorded as given, and analysis.rebuild_model refuses to re-create it."""
    config = RunConfig(model="resnet8", epochs=2, batch_size=32, schedule="constant", data_path=str(tiny_npz))
    configure_runtime(config)
    model = build_model(config)
    model._initial_epoch = 1   # what keras.callbacks.BackupAndRestore leaves on a network it resumed
    first = bnlib.train(config, verbose=0, model=model)
    assert first.history["epoch"] == [1, 2]
    assert first.provenance["initial_model"] == "seed"   # untrained and built for this config
    second = bnlib.train(config.replace(epochs=1), verbose=0, model=first.model)
    assert second.history["epoch"] == [1] and second.provenance["initial_model"] == "given"
    with pytest.raises(ValueError, match="cannot be re-created"):
        analysis.rebuild_model(second)


def _import_copy_of_results(folder):
    """Copy bnlib/results.py into ``folder``/bnlib and import the copy."""
    (folder / "bnlib").mkdir(parents=True, exist_ok=True)
    shutil.copy(results.__file__, folder / "bnlib" / "results.py")
    spec = importlib.util.spec_from_file_location(f"copied_results_{folder.name}", folder / "bnlib" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _commit_all(folder):
    _git(folder, "add", ".")
    _git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "bnlib")
    return _git(folder, "rev-parse", "--short", "HEAD")


def test_provenance_names_the_commit_bnlib_runs_from(tmp_path):
    repo = tmp_path / "repo"
    source_version = _import_copy_of_results(repo).source_version
    assert source_version() is None  # not a git checkout: an installed copy
    _git(repo, "init", "-q")
    commit = _commit_all(repo)
    assert source_version() == commit
    (repo / "notes.txt").write_text("outside bnlib/: not a change to the code")
    assert source_version() == commit
    (repo / "bnlib" / "results.py").write_text("# edited")
    assert source_version() == commit + "+modified"


def test_provenance_keeps_the_commit_of_import_time(tmp_path, monkeypatch):
    """Files edited while a run trains do not change what its result says it ran."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "bnlib").mkdir()
    shutil.copy(results.__file__, tmp_path / "bnlib" / "results.py")
    commit = _commit_all(tmp_path)
    module = _import_copy_of_results(tmp_path)   # the same file: the import sees a clean checkout
    (tmp_path / "bnlib" / "results.py").write_text("# edited during the run")
    assert module.source_version() == commit + "+modified"
    assert module.SOURCE_AT_IMPORT == commit
    monkeypatch.setattr(results, "SOURCE_AT_IMPORT", "abc1234")
    assert results.provenance({}, 1.0, "CPU")["source"] == "abc1234"


def test_policy_all_trains_convolutions(tiny_npz):
    config = RunConfig(model="resnet8", policy="all", epochs=1, batch_size=32, data_path=str(tiny_npz))
    result = bnlib.train(config, verbose=0)
    configure_runtime(config)
    initial = build_model(config)
    assert not np.array_equal(freeze.conv_layers(initial)[0].kernel.numpy(),
                              freeze.conv_layers(result.model)[0].kernel.numpy())
    assert result.parameters["trainable"] == result.parameters["total"]


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_and_xla_train_end_to_end(tiny_npz, precision):
    """The accelerator options (16-bit compute, XLA) run the same training on CPU: same frozen
    kernels, float32 γ/β, losses close to a float32 run without XLA, the global policy put back."""
    base = RunConfig(model="resnet8", epochs=2, batch_size=20, learning_rate=0.2, augment=False,
                     data_path=str(tiny_npz))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = bnlib.train(base.replace(precision=precision, xla=True), verbose=0)
    emulated = precision == "mixed_float16" or runtime.bfloat16_hardware() == "none"
    assert any("precision='mixed_" in str(w.message) for w in caught) == emulated  # this CPU: warned?
    assert keras.mixed_precision.global_policy().name == "float32"
    assert fast.model.jit_compile is True and fast.config["precision"] == precision
    assert freeze.conv_layers(fast.model)[0].compute_dtype == precision.removeprefix("mixed_")
    assert all(layer.gamma.dtype == "float32" for layer in freeze.batchnorm_layers(fast.model))
    reference = bnlib.train(base, verbose=0)
    assert reference.model.jit_compile is False
    assert fast.provenance["optimizer"] == reference.provenance["optimizer"]   # not the loss scaler
    np.testing.assert_allclose(fast.history["loss"], reference.history["loss"], rtol=0.02)
    initial = np.concatenate(list(fast.initial_gamma.values()))
    moved = np.abs(reference.all_gamma() - initial).max()
    assert moved > 0.01                                  # γ trained ...
    # ... alike: within a tenth of the move in float16 (observed: 1/29), a fifth in bfloat16, which
    # keeps 3 fewer mantissa bits (observed: 1/10)
    tolerance = moved / (10 if precision == "mixed_float16" else 5)
    np.testing.assert_allclose(fast.all_gamma(), reference.all_gamma(), atol=tolerance)
    for a, b in zip(freeze.conv_layers(fast.model), freeze.conv_layers(reference.model)):
        np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())   # frozen alike
