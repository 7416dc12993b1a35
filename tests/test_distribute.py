"""Several devices: MirroredStrategy on two logical CPUs and MultiWorkerMirroredStrategy with two
worker processes on loopback give the one-device result, and only the chief writes.

Logical devices and collective ops must be configured before TensorFlow initialises, so every
distributed run is a subprocess (tests/run_helpers.py).  BatchNorm layers use the statistics of
the global batch when a batch is split across devices (bnlib.train synchronises them), which is
what makes the results match one device: with per-device statistics (Keras' default) γ differs
by ~1e-2 here.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

import bnlib
from bnlib import results
from bnlib.config import RunConfig
from bnlib.training import BACKUP, is_chief, make_strategy

from run_helpers import REPO, finish_script, flat, run_script, script_env, start_script

TOLERANCE = dict(rtol=0, atol=1e-3)


def short_config(data, output_dir=None, **changes) -> dict:
    """Two epochs of ResNet-8 on 200 images, batch 32 (16 per device), SGD with momentum."""
    return {**dict(model="resnet8", policy="bn", data_path=str(data), epochs=2, batch_size=32,
                   learning_rate=0.02, schedule="constant", augment=False, deterministic=True,
                   output_dir=output_dir and str(output_dir)), **changes}


@pytest.fixture(scope="module")
def one_device(data):
    result = bnlib.train(RunConfig(**short_config(data)), verbose=0)
    assert result.model.distribute_strategy.num_replicas_in_sync == 1
    return {"gamma": result.gamma, "beta": result.beta, "history": result.history}


def assert_matches(result, reference):
    for name in ("gamma", "beta"):
        np.testing.assert_allclose(flat(result[name]), flat(reference[name]), **TOLERANCE)
    np.testing.assert_allclose(result["history"]["loss"], reference["history"]["loss"], rtol=1e-4)


@pytest.mark.slow
def test_mirrored_two_logical_cpus_matches_one_device(data, one_device):
    result = run_script({"config": short_config(data, strategy="mirrored"), "logical_cpus": 2})
    assert result["replicas"] == 2
    assert result["history"]["epoch"] == [1, 2]
    assert_matches(result, one_device)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_multiworker_two_processes(data, one_device, tmp_path):
    folder = tmp_path / "run"  # on a disk both workers see, as a shared disk or bucket would be
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    args = {"config": short_config(data, folder, strategy="multiworker"),
            "record_writes": str(folder)}
    workers = [start_script(args, TF_CONFIG=json.dumps({"cluster": cluster,
                                                          "task": {"type": "worker", "index": i}}))
               for i in range(2)]
    try:
        chief, other = [finish_script(worker, timeout=400) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert chief["replicas"] == other["replicas"] == 2
    for name in ("gamma", "beta"):  # the workers hold the same model
        assert np.array_equal(flat(chief[name]), flat(other[name])), name
    assert chief["history"]["loss"] == other["history"]["loss"]
    assert_matches(chief, one_device)
    # only the chief wrote the folder: checkpoints, history, result
    assert other["writes"] == [] and other["path"] is None
    assert any(path.endswith(results.RESULT_FILE) for path in chief["writes"])
    assert any("backup" in path for path in chief["writes"])
    saved = results.load(folder)
    assert saved.history["epoch"] == [1, 2] and not (folder / BACKUP).exists()
    np.testing.assert_array_equal(flat(saved.gamma), flat(chief["gamma"]))


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG") as caught:
        make_strategy("multiworker")
    assert "\n" not in str(caught.value)


STRATEGY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from bnlib.training import make_strategy
from bnlib.runtime import tf
if tf.config.list_logical_devices("TPU") or len(tf.config.list_logical_devices("GPU")) > 1:
    print("SKIP"); sys.exit()
replicas = make_strategy("auto").num_replicas_in_sync
try:
    make_strategy("tpu")
    error = None
except ValueError as caught:
    error = str(caught)
print("RESULT " + json.dumps({"replicas": replicas, "error": error}))
"""


def test_auto_and_tpu_strategies_without_a_tpu():
    """No TPU here (and at most one GPU): 'auto' falls back to one device, 'tpu' is a one-line
    error naming the fix.  In a fresh interpreter, since looking for a TPU connects TensorFlow
    to a (here missing) cluster."""
    done = subprocess.run([sys.executable, "-c", STRATEGY_SCRIPT, str(REPO)], capture_output=True,
                          text=True, timeout=300, env=script_env())
    assert done.returncode == 0, done.stderr[-3000:]
    if done.stdout.strip() == "SKIP":
        pytest.skip("this machine has a TPU or several GPUs")
    found = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert found["replicas"] == 1
    assert found["error"] and "\n" not in found["error"]
    assert "found no TPU (on Colab: Runtime → Change runtime type → TPU)" in found["error"]


def resolver(task_type, task_id, jobs):
    spec = types.SimpleNamespace(as_dict=lambda: {job: ["host:1"] for job in jobs})
    return types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(
        task_type=task_type, task_id=task_id, cluster_spec=lambda: spec))


@pytest.mark.parametrize("strategy,chief", [
    (None, True),                                       # one process
    (types.SimpleNamespace(), True),                    # a strategy without a cluster
    (resolver("worker", 0, ["worker"]), True),          # worker 0 leads a chief-less cluster
    (resolver("worker", 1, ["worker"]), False),
    (resolver("chief", 0, ["chief", "worker"]), True),
    (resolver("worker", 0, ["chief", "worker"]), False),
])
def test_only_the_chief_writes(strategy, chief):
    assert is_chief(strategy) is chief
