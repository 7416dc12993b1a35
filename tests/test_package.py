"""The package itself: `import bnlib` is light, TensorFlow loads on first use, names resolve."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bnlib


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter (this one has TensorFlow loaded already); its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_bnlib_does_not_import_tensorflow():
    # ... nor do the modules that read, tabulate and draw results (`python -m bnlib report`).
    out = run_python("import sys, bnlib; bnlib.results, bnlib.notebook, bnlib.analysis, bnlib.plots; "
                     "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    assert out.strip() == "[]"


RESULTS = str(Path(__file__).resolve().parents[1] / "results" / "cpu-sgd")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["report", "--help"], ["params", "--help"],
                                  ["report", RESULTS]])
def test_command_line_help_and_report_do_not_import_tensorflow(argv):
    out = run_python("import runpy, sys\n"
                     f"sys.argv = ['bnlib', *{argv!r}]\n"
                     "try:\n"
                     "    runpy.run_module('bnlib', run_name='__main__', alter_sys=True)\n"
                     "except SystemExit as exit:\n"
                     "    assert exit.code == 0, exit.code\n"
                     "print('TensorFlow imported:', 'tensorflow' in sys.modules)")
    assert ("usage: " in out or "resnet14-bn-sgd " in out) and out.strip().endswith("TensorFlow imported: False")


@pytest.mark.parametrize("argv", [["train", "--model", "resnet15"], ["train", "--policy", "bnn"],
                                  ["train", "--data", "/nowhere/cifar10.npz"], ["params", "vgg12"]])
def test_bad_input_fails_before_tensorflow_loads(argv):
    out = run_python("import runpy, sys\n"
                     f"sys.argv = ['bnlib', *{argv!r}]\n"
                     "try:\n"
                     "    runpy.run_module('bnlib', run_name='__main__', alter_sys=True)\n"
                     "except SystemExit as exit:\n"
                     "    print('exit', exit.code)\n"
                     "print('TensorFlow imported:', 'tensorflow' in sys.modules)")
    assert out.split("\n")[-3:] == ["exit 2", "TensorFlow imported: False", ""], out


def test_first_use_imports_tensorflow_quietly_with_bnlibs_settings():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    code = ("import os, sys, bnlib\n"
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], 'tensorflow' in sys.modules)\n"
            "bnlib.models.build('resnet14')\n"
            "print('tensorflow' in sys.modules, bnlib.runtime.onednn_enabled())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "False", "True", "True"]   # set at import; used at first use
    assert "oneDNN custom operations" not in proc.stderr, proc.stderr


def test_lazy_names_resolve():
    import bnlib.training

    assert callable(bnlib.train) and bnlib.train is bnlib.training.train  # the function, not its module
    for name in ("analysis", "data", "freeze", "models", "plots", "training", "widgets"):
        assert getattr(bnlib, name).__name__ == f"bnlib.{name}"
        assert name in dir(bnlib)
    with pytest.raises(AttributeError, match="no attribute 'resnet'"):
        bnlib.resnet
    with pytest.raises(AttributeError, match="no attribute 'torch'"):
        bnlib.runtime.torch


def test_tensorflow_is_imported_only_through_runtime():
    """Every module takes TensorFlow and Keras from bnlib.runtime (`from .runtime import keras, tf`),
    which applies bnlib's settings and keeps the import quiet; a plain `import keras` anywhere else
    would skip both whenever that module happens to load first.  (Keras' private `keras.src`
    modules may be imported inside functions that run after the public import.)"""
    pattern = re.compile(r"^\s*(import (keras|tensorflow)\b|from (keras|tensorflow)(?!\.src)\b.*)", re.MULTILINE)
    offenders = {path.name: [m.group(0).strip() for m in pattern.finditer(path.read_text())]
                 for path in sorted(Path(bnlib.__file__).parent.glob("*.py")) if path.name != "runtime.py"}
    assert not {name: lines for name, lines in offenders.items() if lines}
    assert pattern.search("def f():\n    import keras\n") and pattern.search("from tensorflow import nn")  # it can fail


def test_bfloat16_hardware_reads_the_cpu_flags(monkeypatch, tmp_path):
    """AMX, AVX-512 BF16 or none, from /proc/cpuinfo's flags; none where there is no such file."""
    import builtins

    from bnlib import runtime

    real_open = builtins.open
    for flags, expected in (("fpu avx512f avx512_bf16 amx_bf16 amx_tile", "AMX"),
                            ("fpu avx512f avx512_bf16", "AVX-512 BF16"), ("fpu avx2", "none")):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
            cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
        assert runtime.bfloat16_hardware() == expected
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
        tmp_path / "missing" if path == "/proc/cpuinfo" else path, *a, **k))
    assert runtime.bfloat16_hardware() == "none"


def test_describe_labels_each_result_with_its_data_epochs_precision_and_device():
    from bnlib import notebook
    from bnlib.config import RunConfig
    from bnlib.results import Result

    def result(precision):
        return Result(config=RunConfig(model="resnet20", precision=precision).to_dict(),
                      history={"loss": [2.0, 1.5]}, test_accuracy=0.5, test_loss=1.0, parameters={},
                      provenance={"data": {"description": "CIFAR-10 test copy", "train_used": 100,
                                           "test_used": 10}, "device": "CPU (2 cores, oneDNN on)",
                                  "tensorflow": "2.21.0"})

    plain, fast = notebook.describe([result("float32"), result("mixed_bfloat16")]).splitlines()
    assert "50.0%" in plain and "CIFAR-10 test copy, 100 train / 10 test images, 2 epochs, CPU (2 cores" in plain
    assert "float32" not in plain and "2 epochs, mixed_bfloat16, CPU (2 cores" in fast


def test_live_runs_checkpoint_outside_the_smoke_profile(monkeypatch):
    from bnlib import notebook

    monkeypatch.delenv("BNLIB_RUNS", raising=False)
    assert notebook.live_output_dir("smoke", "live") is None
    assert notebook.live_output_dir("paper", "live") == str(Path("runs") / "paper" / "live")
    monkeypatch.setenv("BNLIB_RUNS", "/content/drive/MyDrive/bnlib")
    assert notebook.live_output_dir("cpu", "r14") == "/content/drive/MyDrive/bnlib/cpu/r14"


def test_on_preset_keeps_the_series_and_drops_its_variants():
    from bnlib import notebook
    from bnlib.config import RunConfig
    from bnlib.results import Result

    def result(**overrides):
        config = RunConfig.preset("cpu", **{"model": "resnet20", "policy": "bn", "name": "x", **overrides}).to_dict()
        return Result(config=config, history={}, test_accuracy=0.4, test_loss=1.0, parameters={}, provenance={})

    assert notebook.on_preset(result()) and notebook.on_preset(result(), "cpu")
    assert notebook.on_preset(result(policy="all", model="resnet56", output_dir="elsewhere"))
    for variant in (dict(gamma_init="ones"), dict(bn_momentum=0.99), dict(schedule="constant"),
                    dict(validation_split=0.1), dict(seed=1)):
        assert not notebook.on_preset(result(**variant)), variant
    assert not notebook.on_preset(result(), "smoke")
