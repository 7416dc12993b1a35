"""Shared pytest configuration and fixtures."""
import os
import pickle
import tarfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# bnlib first, before any test module imports TensorFlow, so that the suite runs with bnlib's
# TensorFlow defaults (oneDNN CPU kernels on, see bnlib/runtime.py), as users do.
import bnlib  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "site: builds the Jupyter Book and checks every page in headless Chromium "
        "(slow; run with -m site)",
    )


def seconds_per_file(reports, suffix=".ipynb"):
    """Seconds per test file whose name ends with `suffix`: its setup, calls and teardowns summed."""
    totals = {}
    for report in reports:
        path = report.nodeid.split("::")[0]
        if path.endswith(suffix):
            totals[path] = totals.get(path, 0.0) + report.duration
    return totals


def pytest_terminal_summary(terminalreporter):
    """After the run, the seconds each notebook took under nbval (kernel start and every cell)."""
    reports = [report for group in terminalreporter.stats.values() for report in group
               if hasattr(report, "duration") and hasattr(report, "nodeid")]
    totals = seconds_per_file(reports)
    if totals:
        terminalreporter.write_sep("=", "seconds per notebook (kernel start and every cell)")
        for path, seconds in sorted(totals.items()):
            terminalreporter.write_line(f"{seconds:8.1f} s  {path}")


def make_arrays(n_train=60, n_test=30, num_classes=10, seed=0):
    """Random CIFAR-shaped arrays; labels cycle so every class is present."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % num_classes).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % num_classes).astype(np.uint8),
    }


@pytest.fixture
def tiny_npz(tmp_path):
    """A tiny CIFAR-10 pixel archive in the real .npz format."""
    path = tmp_path / "tiny-cifar10.npz"
    np.savez(path, **make_arrays())
    return path


def write_batches_folder(folder, arrays, dataset="cifar10"):
    """Write arrays as the official python-pickle batches: CIFAR-10's 5 train batches and
    test_batch with "labels", or CIFAR-100's train and test with "fine_labels" (and the 20
    superclasses' "coarse_labels", which bnlib does not use)."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, x, y):
        data = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        labels = list(map(int, y))
        batch = ({"data": data, "labels": labels} if dataset == "cifar10" else
                 {"data": data, "fine_labels": labels, "coarse_labels": [label // 5 for label in labels]})
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)

    if dataset == "cifar100":
        dump("train", arrays["x_train"], arrays["y_train"])
        dump("test", arrays["x_test"], arrays["y_test"])
        return folder
    parts = np.array_split(np.arange(len(arrays["x_train"])), 5)
    for i, part in enumerate(parts, start=1):
        dump(f"data_batch_{i}", arrays["x_train"][part], arrays["y_train"][part])
    dump("test_batch", arrays["x_test"], arrays["y_test"])
    return folder


def write_tarball(path, arrays, inner="cifar-10-batches-py", dataset="cifar10"):
    folder = write_batches_folder(path.parent / "staging" / inner, arrays, dataset)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=inner)
    return path


@pytest.fixture
def cifar_subset():
    """The exact CIFAR-10 subset, only through configuration ($BNLIB_CIFAR10); skipped otherwise."""
    path = os.environ.get("BNLIB_CIFAR10")
    if not path or not os.path.exists(path):
        pytest.skip("set BNLIB_CIFAR10 to the exact CIFAR-10 subset (.ci/run does)")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200 tiny training images in the real .npz format (tests of long runs and distribution)."""
    from run_helpers import write_tiny_cifar

    return write_tiny_cifar(tmp_path_factory.mktemp("data") / "tiny.npz")
