"""bnlib.beyond: class-split tasks, transfer models, BN-only warm-up and pruning by |γ|."""
import shutil

import keras
import numpy as np
import pytest

import bnlib
from bnlib import beyond, data, freeze, models
from bnlib.config import RunConfig


def tiny_config(tiny_npz, **overrides):
    fields = dict(model="resnet8", policy="bn", epochs=1, batch_size=16, optimizer="adam",
                  learning_rate=0.01, weight_decay=0.0, schedule="constant", augment=False,
                  data_path=str(tiny_npz))
    return RunConfig(**{**fields, **overrides})


def test_class_split_keeps_order_and_relabels():
    x = np.arange(10).reshape(10, 1)
    y = np.array([5, 0, 7, 5, 9, 1, 7, 0, 2, 9])
    xs, ys = beyond.class_split(x, y, (7, 5))
    assert xs.ravel().tolist() == [0, 2, 3, 6]      # original order, only classes 5 and 7
    assert ys.tolist() == [1, 0, 1, 0]              # 7 -> 0, 5 -> 1
    with pytest.raises(ValueError, match="No images of class"):
        beyond.class_split(x, y, (3,))
    with pytest.raises(ValueError, match="distinct"):
        beyond.class_split(x, y, (5, 5))


def test_task_config_writes_a_loadable_split(tiny_npz, tmp_path):
    parent = data.load("cifar10", tiny_npz)
    config = beyond.task_config(tiny_config(tiny_npz, train_per_class=4), beyond.TASK_B,
                                tmp_path, name="task B")
    assert config.name == "task B" and config.data_path != str(tiny_npz)
    splits = data.prepare(config)
    assert sorted(set(splits.y_train.tolist())) == [0, 1, 2, 3, 4]
    assert len(splits.x_train) == 4 * 5             # train_per_class applies within the split
    assert len(splits.x_test) == int(np.isin(parent.y_test, beyond.TASK_B).sum())
    # the images are the parent's images of classes 5-9, in order (5 -> 0, ..., 9 -> 4)
    expected = parent.x_train[parent.y_train == 6][:4]
    np.testing.assert_array_equal(splits.x_train[splits.y_train == 1], expected)
    assert beyond.parent_description(config) == parent.description
    # and the data description every result records names the parent data
    assert parent.description in splits.source["description"]
    assert splits.source["description"].startswith("class subset")


def test_transfer_model_copies_weights_and_is_independent():
    source = models.build("resnet8")
    freeze.batchnorm_layers(source)[0].moving_mean.assign(np.full(16, 0.25, "float32"))
    copy = beyond.transfer_model(source, 5, seed=1)
    assert copy.output_shape == (None, 5)
    assert freeze.output_layer(copy).kernel.shape == (64, 5)
    assert beyond.kernels_equal(beyond.conv_kernels(source), beyond.conv_kernels(copy))
    np.testing.assert_array_equal(freeze.batchnorm_layers(copy)[0].moving_mean.numpy(), 0.25)
    freeze.conv_layers(copy)[0].kernel.assign(np.zeros((3, 3, 3, 16), "float32"))
    freeze.batchnorm_layers(copy)[0].gamma.assign(np.zeros(16, "float32"))
    assert not beyond.kernels_equal(beyond.conv_kernels(source), beyond.conv_kernels(copy))
    assert np.all(freeze.batchnorm_layers(source)[0].gamma.numpy() == 1.0)


def test_bn_only_fine_tuning_changes_only_batchnorm(tiny_npz, tmp_path):
    base = beyond.task_config(tiny_config(tiny_npz), beyond.TASK_A, tmp_path / "a", policy="all")
    source = bnlib.train(base, verbose=0, model=beyond.build(base, 5))
    before = beyond.conv_kernels(source.model)
    target = beyond.task_config(tiny_config(tiny_npz), beyond.TASK_B, tmp_path / "b", policy="bn")
    model = beyond.transfer_model(source.model, 5)
    head = freeze.output_layer(model).kernel.numpy().copy()
    tuned = bnlib.train(target, verbose=0, model=model)
    assert tuned.parameters["trainable"] == tuned.parameters["batchnorm"]
    assert beyond.kernels_equal(before, beyond.conv_kernels(tuned.model))   # convolutions frozen
    np.testing.assert_array_equal(head, freeze.output_layer(tuned.model).kernel.numpy())
    assert not np.allclose(tuned.all_gamma(), np.concatenate(list(tuned.initial_gamma.values())))
    assert beyond.kernels_equal(before, beyond.conv_kernels(source.model))  # source untouched


def test_warm_start_runs_bn_then_full_for_the_same_epochs(tiny_npz):
    config = tiny_config(tiny_npz, epochs=2)
    with pytest.raises(ValueError, match="bn_epochs"):
        beyond.warm_start(config, bn_epochs=2)
    runs = beyond.warm_start(config, bn_epochs=1)
    assert runs.scratch.epochs_run == 2 and runs.bn_then_full.epochs_run == 2
    assert runs.rest_only.epochs_run == 1 and runs.rest_only.parameters["trainable"] == runs.scratch.parameters["total"]
    assert all(np.array_equal(runs.rest_only.initial_gamma[k], runs.scratch.initial_gamma[k])
               for k in runs.scratch.initial_gamma), "the rest-only run starts from the same network"
    assert runs.bn_then_full.history["epoch"] == [1.0, 2.0]
    assert runs.bn_stage.parameters["trainable"] == runs.bn_stage.parameters["batchnorm"]
    assert runs.bn_then_full.parameters["trainable"] == runs.bn_then_full.parameters["total"]
    assert runs.bn_stage_kept_convolutions
    # the second stage continued the BN stage's network object, which started from the seed's
    # initialisation (the scratch run's too); full training then moved its convolutions
    assert runs.bn_then_full.model is runs.bn_stage.model
    initial = beyond.build(config, 10)
    start = {layer.name: layer.gamma.numpy() for layer in freeze.batchnorm_layers(initial)}
    assert all(np.array_equal(runs.bn_then_full.initial_gamma[k], start[k]) for k in start)
    assert all(np.array_equal(runs.scratch.initial_gamma[k], start[k]) for k in start)
    trained = beyond.conv_kernels(runs.bn_then_full.model)
    assert not beyond.kernels_equal(beyond.conv_kernels(initial), trained)


def test_building_leaves_process_wide_settings_as_they_were(tiny_npz):
    """beyond.build (and so warm_start and transfer) seeds and configures like bnlib.train, and
    like it puts op determinism and the precision policy back: a later run must not inherit them."""
    from tensorflow.python.framework import config as tf_config

    model = beyond.build(tiny_config(tiny_npz, deterministic=True, precision="mixed_float16"), 10)
    assert freeze.conv_layers(model)[0].compute_dtype == "float16"   # built as configured ...
    assert not tf_config.is_op_determinism_enabled()                  # ... settings put back
    assert keras.mixed_precision.global_policy().name == "float32"


def test_saved_warm_start_resumes_each_stage_and_loads_back(tiny_npz, tmp_path):
    config = tiny_config(tiny_npz, epochs=2, deterministic=True)
    first = beyond.warm_start(config, bn_epochs=1, output_dir=tmp_path / "warm")
    assert sorted(p.name for p in (tmp_path / "warm").iterdir()) == sorted(beyond.WARM_START_RUNS)
    assert first.bn_stage_kept_convolutions
    # Interrupted after the BN stage: the rerun rebuilds that stage's network from its result
    # and trains the second stage again, to the same weights as the first time.
    shutil.rmtree(tmp_path / "warm" / "bn-then-full")
    again = beyond.warm_start(config, bn_epochs=1, output_dir=tmp_path / "warm")
    assert again.bn_stage_kept_convolutions is None  # loaded, not checked in this session
    for key in first.bn_then_full.gamma:
        np.testing.assert_allclose(again.bn_then_full.gamma[key], first.bn_then_full.gamma[key], atol=1e-5)
    loaded = beyond.load_warm_start(tmp_path / "warm")
    assert loaded.bn_then_full.history["epoch"] == [1.0, 2.0]
    assert [r.test_accuracy for r in loaded.results] == [r.test_accuracy for r in again.results]


def test_saved_transfer_resumes_from_the_source_weights_and_loads_back(tiny_npz, tmp_path):
    config = tiny_config(tiny_npz, deterministic=True)
    work, out = tmp_path / "work", tmp_path / "transfer"
    first = beyond.transfer(config, work, output_dir=out)
    assert set(first.runs) == set(beyond.TRANSFER_RUNS) and first.results[0] is first.source
    assert (work / beyond.SOURCE_WEIGHTS).is_file()
    assert first.runs["fine-tune: bn"].parameters["trainable"] == first.runs["fine-tune: bn"].parameters["batchnorm"]
    np.testing.assert_array_equal(  # the BN fine-tuning started from the source's trained γ
        np.concatenate([g.ravel() for g in first.runs["fine-tune: bn"].initial_gamma.values()]),
        first.source.all_gamma())
    shutil.rmtree(out / "fine-tune-all")
    again = beyond.transfer(config, work, output_dir=out)  # the source comes from its saved weights
    np.testing.assert_allclose(again.runs["fine-tune: all"].all_gamma(),
                               first.runs["fine-tune: all"].all_gamma(), atol=1e-5)
    loaded = beyond.load_transfer(out)
    assert (loaded.source_task, loaded.target_task) == (beyond.TASK_A, beyond.TASK_B)
    assert {k: r.test_accuracy for k, r in loaded.runs.items()} == {k: r.test_accuracy for k, r in again.runs.items()}
    shutil.rmtree(out / "fine-tune-output")
    (work / beyond.SOURCE_WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="delete .*source to train the source again"):
        beyond.transfer(config, work, output_dir=out)


def test_channels_to_zero():
    gamma = np.array([0.5, -0.01, 0.2, 0.03, -0.9])
    assert beyond.channels_to_zero(gamma, 0.4).tolist() == [False, True, False, True, False]
    assert not beyond.channels_to_zero(gamma, 0.0).any()
    mask = beyond.channels_to_zero(gamma, 0.6, "random", np.random.default_rng(0))
    assert mask.sum() == 3
    with pytest.raises(ValueError):
        beyond.channels_to_zero(gamma, 1.5)


def test_prune_by_gamma_zeroes_the_smallest_and_restores():
    keras.utils.set_random_seed(0)
    model = freeze.init_batchnorm(models.build("resnet8"), "uniform", seed=0)
    layers = freeze.batchnorm_layers(model)
    for layer in layers:  # half of every layer's channels already switched off
        gamma = layer.gamma.numpy()
        gamma[: gamma.size // 2] = 0.0
        layer.gamma.assign(gamma)
    saved = [layer.gamma.numpy().copy() for layer in layers]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)   # labels the network gets 100% right
    table = beyond.prune_by_gamma(model, x, y, fractions=(0.0, 0.5), repeats=2)
    assert table.loc[0.0, "smallest |γ| zeroed"] == 1.0 == table.loc[0.0, "random zeroed (mean)"]
    # zeroing the smallest half zeroes exactly the channels that were already zero
    assert table.loc[0.5, "smallest |γ| zeroed"] == 1.0
    assert table.loc[0.5, "random zeroed (mean)"] < 1.0
    assert table.loc[0.5, "channels zeroed"] == sum(g.size // 2 for g in saved)
    for layer, gamma in zip(layers, saved):
        np.testing.assert_array_equal(layer.gamma.numpy(), gamma)


def test_chain_joins_histories():
    first = bnlib.Result(config={"model": "resnet8", "policy": "bn"}, history={"loss": [3.0], "epoch": [1.0]},
                         test_accuracy=0.1, test_loss=3.0, parameters={}, provenance={},
                         initial_gamma={"a": np.zeros(2)})
    second = bnlib.Result(config={"model": "resnet8", "policy": "all"},
                          history={"loss": [2.0, 1.0], "epoch": [1.0, 2.0]}, test_accuracy=0.5,
                          test_loss=1.0, parameters={}, provenance={}, initial_gamma={"a": np.ones(2)})
    joined = beyond.chain(first, second, "both")
    assert joined.history == {"loss": [3.0, 2.0, 1.0], "epoch": [1.0, 2.0, 3.0]}
    assert joined.label == "both" and joined.test_accuracy == 0.5 and joined.epochs_run == 3
    np.testing.assert_array_equal(joined.initial_gamma["a"], np.zeros(2))
    assert second.history["loss"] == [2.0, 1.0]   # inputs unchanged


def test_plot_pruning_draws_one_panel_per_table():
    import pandas as pd

    table = pd.DataFrame({"fraction": [0.0, 0.5], "smallest |γ| zeroed": [0.4, 0.3],
                          "random zeroed (mean)": [0.4, 0.1], "random zeroed (min)": [0.4, 0.05],
                          "random zeroed (max)": [0.4, 0.15]}).set_index("fraction")
    fig = beyond.plot_pruning({"a": table, "b": table}, "title")
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "b"
    assert list(fig.axes[0].lines[0].get_ydata()) == [40.0, 30.0]
