"""γ/β statistics, the ablation, comparison tables, plots and the command line."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bnlib
from bnlib import analysis, cli, freeze, models, plots
from bnlib import training as train_module  # the module; `bnlib.train` is its train function
from bnlib.results import Result
from bnlib.runtime import keras


def fake_result(label="resnet8 bn", policy="bn", gamma_scale=1.0):
    rng = np.random.default_rng(0)
    gamma = {"bn_a": np.array([0.0, 0.01, 0.5, -0.02]) * gamma_scale, "bn_b": np.array([1.0, 0.2])}
    return Result(
        config={"model": "resnet14", "policy": policy, "name": label},
        history={"loss": [2.0, 1.5], "accuracy": [0.2, 0.4]}, test_accuracy=0.35, test_loss=1.6,
        parameters={"trainable": 1120, "total": 175258}, provenance={"data": {"description": "toy"}},
        gamma=gamma, beta={k: rng.normal(size=v.shape) for k, v in gamma.items()},
        initial_gamma={k: np.ones_like(v) for k, v in gamma.items()},
        initial_beta={k: np.zeros_like(v) for k, v in gamma.items()})


def test_all_gamma_and_all_initial_gamma_flatten_layer_after_layer():
    result = fake_result()
    result.initial_gamma = {"bn_a": np.arange(4.0), "bn_b": np.array([7.0, 8.0])}
    np.testing.assert_array_equal(result.all_gamma(), [0.0, 0.01, 0.5, -0.02, 1.0, 0.2])
    np.testing.assert_array_equal(result.all_initial_gamma(), [0.0, 1.0, 2.0, 3.0, 7.0, 8.0])
    result.gamma, result.initial_gamma = {}, {}   # a run that stored no BatchNorm arrays
    assert result.all_gamma().size == 0 and result.all_initial_gamma().size == 0


def test_fraction_below():
    result = fake_result()
    assert analysis.fraction_below(result, 0.05) == pytest.approx(3 / 6)
    assert analysis.fraction_below(result.gamma, 0.001) == pytest.approx(1 / 6)
    assert analysis.fraction_below(np.array([]), 0.1) != analysis.fraction_below(np.array([]), 0.1)  # nan


def test_layer_table_and_sweep():
    table = analysis.layer_table(fake_result(), 0.05)
    assert table.loc["bn_a", "|γ|<0.05"] == pytest.approx(0.75) and table.loc["bn_b", "channels"] == 2
    result = fake_result()   # bn_b: γ (1, 0.2) from (1, 1), β from zeros
    expected = np.linalg.norm([1.0, 0.2, *result.beta["bn_b"]]) / np.linalg.norm([1.0, 1.0, 0.0, 0.0])
    assert analysis.layer_table(result).loc["bn_b", "norm growth"] == pytest.approx(expected)
    sweep = analysis.threshold_sweep(fake_result(), thresholds=(0.05, 2.0))
    assert sweep.loc[0.05, "initial γ"] == 0 and sweep.loc[2.0, "trained γ"] == 1


def test_comparison_table_cites_the_paper():
    table = analysis.comparison_table([fake_result(), fake_result("full", policy="all")])
    assert table.loc["resnet8 bn", "test acc %"] == 35.0
    assert table.loc["resnet8 bn", "paper acc % (full CIFAR-10, 160 ep.)"] == "≈48"
    assert table.loc["full", "data"] == "toy" and table.loc["full", "precision"] == "float32"
    assert table.loc["resnet8 bn", "paper: switched off"] == analysis.PAPER_DISABLED_FRACTION
    assert table.loc["full", "paper: switched off"] == "", "the paper's third is for BN-only training"
    five_way = fake_result("five classes")
    five_way.output = {"kernel": np.zeros((64, 5)), "bias": np.zeros(5)}
    cifar100 = fake_result("cifar100")
    cifar100.config["dataset"] = "cifar100"
    table = analysis.comparison_table([five_way, cifar100])
    assert (table["paper acc % (full CIFAR-10, 160 ep.)"] == "").all(), "the paper's figure is for 10-way CIFAR-10"
    assert (table["paper: switched off"] == "").all()
    vgg = fake_result("vgg")
    vgg.config["model"] = "vgg11"
    assert analysis.comparison_table([vgg]).loc["vgg", "paper: switched off"] == "", "the paper's third is for ResNets"


def test_accuracy_difference_needs_two_standard_errors():
    a, b = fake_result("a"), fake_result("b")
    for result, accuracy in ((a, 0.50), (b, 0.48)):
        result.test_accuracy = accuracy
        result.provenance["data"]["test_used"] = 10_000
    assert analysis.standard_error(a) == pytest.approx(0.005)
    close = analysis.accuracy_difference(a, b)  # 2 points apart, s.e. of the difference 0.7
    assert close["difference"] == pytest.approx(2.0) and close["verdict"] == "higher"
    assert close["standard error"] == pytest.approx(100 * np.hypot(0.005, np.sqrt(0.48 * 0.52 / 1e4)))
    for result in (a, b):
        result.provenance["data"]["test_used"] = 1_000  # the same gap on a tenth of the images
    assert analysis.accuracy_difference(a, b)["verdict"] == "no clear difference"
    assert analysis.accuracy_difference(b, a, z=0.5)["verdict"] == "lower"
    table = analysis.difference_table({"a vs b": (a, b), "b vs a": (b, a)})
    assert table.loc["b vs a", "difference"] == pytest.approx(-2.0) and table["difference"].dtype == float
    assert list(table["verdict"]) == ["no clear difference"] * 2


def test_points_per_doubling_divides_by_the_doublings_of_the_bn_parameters():
    small, large = fake_result("r14"), fake_result("r56")
    small.parameters["batchnorm"], large.parameters["batchnorm"] = 1120, 4480   # two doublings
    small.test_accuracy, large.test_accuracy = 0.45, 0.56
    assert analysis.points_per_doubling(large, small) == pytest.approx(5.5)
    large.parameters["batchnorm"] = 2240   # one doubling: the whole gain
    assert analysis.points_per_doubling(large, small) == pytest.approx(11.0)
    with pytest.raises(ValueError, match="pass the larger network first"):
        analysis.points_per_doubling(small, large)


def test_gap_narrowing_is_bn_gain_minus_full_gain():
    shallow_bn, shallow_full, deep_bn, deep_full = (fake_result(n) for n in ("sb", "sf", "db", "df"))
    for result, accuracy in ((shallow_bn, 0.46), (shallow_full, 0.84), (deep_bn, 0.53), (deep_full, 0.85)):
        result.test_accuracy = accuracy
        result.provenance["data"]["test_used"] = 10_000
    step = analysis.gap_narrowing((shallow_bn, shallow_full), (deep_bn, deep_full))
    assert step["BN-only gains"] == pytest.approx(7.0) and step["full gains"] == pytest.approx(1.0)
    assert step["gap narrows by"] == pytest.approx(38.0 - 32.0)
    errors = [analysis.standard_error(r) for r in (shallow_bn, shallow_full, deep_bn, deep_full)]
    assert step["±"] == pytest.approx(100 * np.sqrt(np.sum(np.square(errors))))
    widening = analysis.gap_narrowing((deep_bn, deep_full), (shallow_bn, shallow_full))
    assert widening["gap narrows by"] == pytest.approx(-6.0)   # the other way round, it widens


def test_step_across_seeds_takes_means_and_the_least_favourable_pairing():
    shallow, deep = [fake_result("s0"), fake_result("s1")], [fake_result("d0"), fake_result("d1")]
    for result, accuracy in zip(shallow + deep, (0.449, 0.430, 0.562, 0.553)):
        result.test_accuracy = accuracy
    step = analysis.step_across_seeds(shallow, deep)
    assert step["mean step"] == pytest.approx(11.8)
    assert step["worst pairing"] == pytest.approx(55.3 - 44.9)   # the worse deep run, the better shallow one
    assert step["largest seed spread"] == pytest.approx(1.9)
    deep[1].test_accuracy = 0.440   # one deep run below the better shallow run: the pairing says so
    assert analysis.step_across_seeds(shallow, deep)["worst pairing"] == pytest.approx(-0.9)
    with pytest.raises(ValueError, match="at least one run of each"):
        analysis.step_across_seeds([], deep)


def test_ablation_zeroes_small_gamma_and_restores():
    keras_model = freeze.init_batchnorm(models.build("resnet8"), "normal", seed=0)
    x = np.random.default_rng(0).normal(size=(40, 32, 32, 3)).astype("float32")
    y = np.argmax(keras_model.predict(x, verbose=0), axis=1)  # baseline accuracy 1 by construction
    before = [layer.gamma.numpy().copy() for layer in freeze.batchnorm_layers(keras_model)]
    outcome = analysis.ablate_small_gamma(keras_model, x, y, threshold=0.3)
    assert outcome["baseline"] == 1.0 and "random_zeroed" in outcome
    assert 0.1 < outcome["fraction_zeroed"] < 0.4  # |N(0,1)| < 0.3: about 24%
    for layer, gamma in zip(freeze.batchnorm_layers(keras_model), before):
        np.testing.assert_array_equal(layer.gamma.numpy(), gamma)
    # every γ zeroed: each channel outputs its constant β, so every image gets the same class
    balanced = np.arange(40) % 10
    everything = analysis.ablate_small_gamma(keras_model, x, balanced, threshold=100.0, control_seed=None)
    assert everything["fraction_zeroed"] == 1.0 and everything["small_gamma_zeroed"] == pytest.approx(0.1)
    nothing = analysis.ablate_small_gamma(keras_model, x, y, threshold=0.0, control_seed=None)
    assert nothing["small_gamma_zeroed"] == 1.0 and nothing["fraction_zeroed"] == 0


def test_relu_activity_counts_positive_outputs_of_the_relus_fed_by_batchnorm():
    keras_model = models.build("resnet8")   # n = 1: the stem and each stage's first block
    assert list(analysis.relu_activity(keras_model, np.zeros((2, 32, 32, 3), "float32"))) == [
        "stem_bn", "stage1_block1_bn1", "stage2_block1_bn1", "stage3_block1_bn1"]
    x = np.random.default_rng(0).normal(size=(6, 32, 32, 3)).astype("float32")
    stem = keras_model.get_layer("stem_bn")
    stem.moving_mean.assign(np.zeros(16)), stem.moving_variance.assign(np.ones(16))
    stem.beta.assign(np.r_[np.full(8, -1e4), np.full(8, 1e4)])   # shut, then always on
    stem.gamma.assign(np.ones(16))
    activity = analysis.relu_activity(keras_model, x, batch_size=4)   # two batches, one short
    np.testing.assert_array_equal(activity["stem_bn"], np.r_[np.zeros(8), np.ones(8)])
    stem.beta.assign(np.zeros(16))   # a zero threshold: about half of the positions pass
    middle = analysis.relu_activity(keras_model, x)["stem_bn"]
    assert ((middle > 0.2) & (middle < 0.8)).all() and activity["stage1_block1_bn1"].shape == (16,)
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no ReLU fed directly by a BatchNorm"):
        analysis.relu_activity(head, np.zeros((1, 4), "float32"))


def test_plots_return_figures():
    result = fake_result()
    for figure in (plots.gamma_histogram(result), plots.learning_curves([result]),
                   plots.accuracy_vs_parameters([result, fake_result("all", "all")]),
                   plots.gamma_by_layer(result), plots.depth_sweep([result])):
        assert figure.axes
    # one line per policy, joined across depths; each point labelled with its depth
    runs = [fake_result(policy="bn"), fake_result(policy="bn"), fake_result(policy="all")]
    runs[1].config["model"], runs[1].parameters["trainable"] = "resnet20", 1568
    axes = plots.accuracy_vs_parameters(runs).axes[0]
    assert axes.get_legend_handles_labels()[1] == ["bn", "all", "chance"]
    assert list(axes.lines[0].get_xdata()) == [1120, 1568]
    assert [text.get_text() for text in axes.texts] == ["14", "20", "14"]


def test_gap_by_depth_draws_full_minus_bn_with_error_bars():
    pairs = {}
    for depth, bn, full in ((14, 0.45, 0.82), (56, 0.56, 0.84)):
        pairs[depth] = (fake_result(f"bn {depth}"), fake_result(f"full {depth}", "all"))
        for result, accuracy in zip(pairs[depth], (bn, full)):
            result.test_accuracy, result.provenance["data"]["test_used"] = accuracy, 10_000
    axes = plots.gap_by_depth({"ours": pairs}, {"the paper": [(14, 44.0), (866, 10.0)]}).axes[0]
    line = axes.lines[0]
    assert list(line.get_xdata()) == [14, 56]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [37.0, 28.0])
    bars = axes.containers[0].lines[2][0].get_segments()   # the error bars, depth 14 first
    error = analysis.accuracy_difference(pairs[14][1], pairs[14][0])["standard error"]
    np.testing.assert_allclose(bars[0][:, 1], [37.0 - error, 37.0 + error])
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["14", "56", "866"]
    assert axes.get_legend_handles_labels()[1] == ["ours", "the paper"]
    np.testing.assert_allclose(np.asarray(axes.lines[-1].get_ydata(), float), [44.0, 10.0])
    two = plots.gap_by_depth({"a": pairs, "b": pairs}).axes[0]   # the same gaps twice: spread sideways
    left, right = (np.asarray(bars.lines[0].get_xdata(), float) for bars in two.containers)
    np.testing.assert_allclose(left * right, [14 ** 2, 56 ** 2])   # symmetric about each depth
    assert (left < [14, 56]).all() and (right / left < 1.1).all()


def test_cli_flags_that_would_be_ignored_are_errors(capsys, monkeypatch):
    for argv, fragment in ((["--momentum", "0.5"], "--momentum only acts with --optimizer sgd"),
                           (["--lr-milestones", "4", "6"], "--lr-milestones only acts with --schedule step"),
                           (["--preset", "paper", "--schedule", "cosine", "--lr-decay", "0.2"],
                            "--lr-decay only acts with --schedule step")):
        assert cli.main(["train", *argv]) == 2, argv   # the cpu preset: Adam with a cosine decay
        assert fragment in capsys.readouterr().err
    args = cli.build_parser().parse_args(["train", "--data-path", "a.npz", "--data", "b.npz", "--out", "o"])
    assert (args.data_path, args.output_dir) == ("b.npz", "o")   # one option, two spellings


def test_cli_reports_divergence_on_one_line(capsys, monkeypatch):
    def diverge(config, **kwargs):
        raise train_module.DivergenceError("training diverged (NaN/inf); lower learning_rate")
    monkeypatch.setattr(train_module, "train", diverge)
    assert cli.main(["train", "--preset", "smoke"]) == 1
    assert capsys.readouterr().err == "error: training diverged (NaN/inf); lower learning_rate\n"


def test_cli_params_and_errors(capsys):
    assert cli.main(["params", "resnet14"]) == 0
    out = capsys.readouterr().out
    assert "175,258" in out and "1,120" in out and "random" in out
    assert cli.main(["params", "resnet15"]) == 2
    assert "14 or 20" in capsys.readouterr().err
    assert cli.main(["train", "--policy", "bnn"]) == 2
    assert "did you mean 'bn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "only the BatchNorm" in cli.build_parser().description


def test_cli_train_and_report(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--preset", "smoke", "--model", "resnet8", "--epochs", "1",
                     "--train-per-class", "3", "--test-per-class", "3", "--batch-size", "16",
                     "--data", str(tiny_npz), "--out", str(out), "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert bnlib.load_result(out).config["model"] == "resnet8"
    assert cli.main(["report", str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    report = capsys.readouterr().out
    assert "resnet8 bn" in report and "Frankle" in report and (tmp_path / "t.csv").exists()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run") and set(lines[1]) <= set("|-: ") and lines[2].startswith("| run ")
    # Two runs with the same name in different folders (two seeds of one experiment): rows by folder.
    shutil.copytree(out, tmp_path / "seed1" / "run")
    assert cli.main(["report", str(tmp_path), "--markdown"]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("|")]
    assert rows == ["run", "seed1/run"]
    # The same subfolder under two roots named on the command line: rows by root too.
    shutil.copytree(out, tmp_path / "again" / "run")
    assert cli.main(["report", str(tmp_path / "seed1"), str(tmp_path / "again"), "--markdown"]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("|")]
    assert rows == ["seed1/run", "again/run"]
    for own in (out, out / "result.json"):  # a result's own folder, or its result.json: its name
        assert cli.main(["report", str(own)]) == 0
        assert capsys.readouterr().out.splitlines()[2].startswith("run ")


def test_cli_output_piped_into_a_reader_that_stops_is_not_an_error():
    """`python -m bnlib report ... | head` must not end in a BrokenPipeError traceback."""
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(f"{sys.executable} -m bnlib report results/cpu/resnet14-bn | true",
                          shell=True, cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_load_all_orders_runs_by_depth_not_by_spelling(tmp_path):
    for name in ("resnet110-bn", "resnet14-bn-seed1", "resnet14-bn", "resnet20-bn", "wrn14-2-bn"):
        fake_result(name).save(tmp_path / name)
    assert [r.label for r in bnlib.load_all(tmp_path)] == [
        "resnet14-bn", "resnet14-bn-seed1", "resnet20-bn", "resnet110-bn", "wrn14-2-bn"]


def test_differs_from_names_the_fields_two_runs_differ_in_beyond_name_and_folder():
    run = fake_result("resnet14-bn")
    run.config = bnlib.RunConfig.preset("cpu", model="resnet14", name="resnet14-bn", output_dir="a").to_dict()
    twin = fake_result("resnet14-bn-seed1")
    twin.config = {**run.config, "name": "resnet14-bn-seed1", "output_dir": "b", "seed": 1}
    assert run.differs_from(twin) == twin.differs_from(run) == {"seed"}
    assert run.differs_from(run) == set()
    older = fake_result("older")   # a run that predates a field counts as its default
    older.config = {k: v for k, v in run.config.items() if k != "strategy"}
    assert older.differs_from(run) == set()
    older.config["bn_momentum"] = 0.99
    assert older.differs_from(run) == {"bn_momentum"}


def test_channel_closing_counts_scaled_away_and_shut_channels_and_who_shuts_them():
    result = fake_result()   # bn_a: γ 0, 0.01, 0.5, -0.02; bn_b: γ 1, 0.2
    result.beta = {"bn_a": np.array([0.0, -1.0, -2.0, 0.0]), "bn_b": np.array([-3.0, 0.5])}
    activity = {"bn_a": np.array([0.5, 0.0, 0.001, 0.2]), "bn_b": np.array([0.0, 0.9])}
    closing = analysis.channel_closing(result, activity)
    assert closing["|γ| < 0.05 %"] == pytest.approx(50)                    # 0, 0.01, -0.02 of six
    assert closing["on at < 1% of positions %"] == pytest.approx(50)       # 0.0, 0.001, 0.0
    assert closing["shut, |γ| ≥ 0.05 %"] == pytest.approx(100 / 3)         # γ 0.5 and 1
    assert closing["either %"] == pytest.approx(500 / 6)
    assert closing["shut with β < −2|γ| (of the shut) %"] == pytest.approx(100)   # -1 < -0.02, -2 < -1, -3 < -2
    assert closing["γ < 0 %"] == pytest.approx(100 / 6) and closing["channels"] == 6
    result.beta["bn_b"][0] = -1.0   # now above -2|γ| = -2: shut by its input, not by β alone
    assert analysis.channel_closing(result, activity)["shut with β < −2|γ| (of the shut) %"] == pytest.approx(200 / 3)
