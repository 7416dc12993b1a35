"""Helpers for tests that train in subprocesses (tests/test_long_runs.py, tests/test_distribute.py).

A subprocess gives every run a fresh TensorFlow, which kill-and-resume, logical devices and
multi-worker clusters need: logical devices and collective ops must be configured before
TensorFlow initialises.  ``run_script`` runs :data:`SCRIPT` with a JSON argument and returns what
it printed after ``RESULT``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# argv[1]: {"config": RunConfig fields, "logical_cpus": n, "pause_epoch": e, "marker": path,
#           "record_writes": folder}.  Prints one line "RESULT {...}".
SCRIPT = r'''
import json, os, sys, time
args = json.loads(sys.argv[1])
sys.path.insert(0, args["repo"])
if args.get("logical_cpus"):  # before anything initialises TensorFlow
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * args["logical_cpus"])
import keras
import bnlib
from bnlib import results

writes = []
if args.get("record_writes"):  # every file this process writes under that folder
    watched = os.path.abspath(args["record_writes"])
    atomic_write, save_weights = results.atomic_write, keras.Model.save_weights
    def record(path):
        if os.path.abspath(str(path)).startswith(watched):
            writes.append(str(path))
    def recording_atomic_write(path, write):
        record(path)
        return atomic_write(path, write)
    def recording_save_weights(self, filepath, *a, **k):
        record(filepath)
        return save_weights(self, filepath, *a, **k)
    results.atomic_write = recording_atomic_write
    keras.Model.save_weights = recording_save_weights

class Pause(keras.callbacks.Callback):
    """Announce, then wait in the middle of epoch `pause_epoch` (1-based) to be killed there."""
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == args.get("pause_epoch") and batch == 1:
            open(args["marker"], "w").close()
            time.sleep(600)

result = bnlib.train(bnlib.RunConfig(**args["config"]), verbose=0, callbacks=[Pause()])
print("RESULT " + json.dumps({
    "gamma": {k: v.tolist() for k, v in result.gamma.items()},
    "beta": {k: v.tolist() for k, v in result.beta.items()},
    "moving_mean": {k: v.tolist() for k, v in result.moving_mean.items()},
    "moving_variance": {k: v.tolist() for k, v in result.moving_variance.items()},
    "output": {k: v.tolist() for k, v in result.output.items()},
    "weights": [w.ravel().tolist() for w in result.model.get_weights()] if result.model else None,
    "history": result.history,
    "test_accuracy": result.test_accuracy,
    "provenance": result.provenance,
    "path": result.path,
    "replicas": result.model.distribute_strategy.num_replicas_in_sync if result.model else None,
    "writes": writes,
}))
'''


def script_env(**extra) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def start_script(args: dict, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps({**args, "repo": str(REPO)})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env(**env))


def finish_script(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """Wait for a script; return its RESULT (with its stderr under "stderr") or fail loudly."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(f"script timed out\n{stdout[-3000:]}\n{stderr[-3000:]}") from None
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{stdout[-3000:]}\n{stderr[-5000:]}"
    return {**json.loads(lines[-1][len("RESULT "):]), "stderr": stderr}


def run_script(args: dict, timeout: float = 300, **env) -> dict:
    return finish_script(start_script(args, **env), timeout)


def flat(values: dict) -> np.ndarray:
    """Concatenate a {layer: array} mapping (γ or β) in layer order."""
    return np.concatenate([np.ravel(np.asarray(v, np.float32)) for v in values.values()])


def write_tiny_cifar(path: Path, per_class: int = 20, test_per_class: int = 10, seed: int = 0) -> Path:
    """A small CIFAR-10-shaped .npz whose classes differ in colour, so training makes progress."""
    rng = np.random.default_rng(seed)

    def make(per):
        y = np.tile(np.arange(10), per)
        x = rng.integers(0, 200, (len(y), 32, 32, 3)).astype(np.int64)
        x[..., 0] += 5 * y[:, None, None]
        return x.astype(np.uint8), y.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = make(per_class), make(test_per_class)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
