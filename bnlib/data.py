"""CIFAR-10/100: where the arrays come from, and the tf.data pipelines that feed training.

Sources, in order: an explicit path; the environment variable ``BNLIB_CIFAR10`` (``BNLIB_CIFAR100``)
naming such a path; the Keras cache (``~/.keras/datasets``); Keras' download.  A path may be

* a ``.npz`` pixel archive with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8, NHWC);
* a ``.npz`` JPEG archive (``train_jpeg``/``train_offsets``/...; the offline copy this project
  ships), decoded with Pillow;
* an extracted ``cifar-10-batches-py`` (``cifar-100-python``) folder;
* the official tarball ``cifar-10-python.tar.gz`` (``cifar-100-python.tar.gz``), whose md5 is checked.

Every load returns a :class:`Dataset` that says where its pixels came from (``source``), so results
can state which data they used.  The training pipeline is a pure function of (seed, epoch): the
same seed gives the same order and augmentation, and a resumed run sees exactly the batches the
uninterrupted one would have seen.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ENV_VARS = {"cifar10": "BNLIB_CIFAR10", "cifar100": "BNLIB_CIFAR100"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
TARBALLS = {
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
}
# sha256 of x_train's bytes for the offline copies described in shared/data/README.md.
KNOWN_PIXELS = {
    "bac45b45504ed1289a3f437be4bfbefece248abbc094a428a0b4dfab00e776ae":
        "CIFAR-10 exact subset, 4,000/1,000 images",
    "5aaf8a2cf2e577ff4dbb15e4f368840fab5aca1812bcc69682005f8dc661d466":
        "CIFAR-10, JPEG-q75 offline copy (lossy)",
}


class DataError(ValueError):
    """The data could not be found or is malformed; the message names the fix."""


@dataclass
class Dataset:
    """CIFAR arrays (uint8 NHWC images, int labels) and a description of their origin."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        return self.source.get("description", "unknown")


def load(dataset: str = "cifar10", path: str | os.PathLike | None = None) -> Dataset:
    """Load CIFAR-10 or CIFAR-100 from the first source that has it (see module docstring)."""
    path, how = locate(dataset, path)
    if path is not None:
        return _finish(_load_path(path, dataset), dataset, {"kind": how, "path": str(path)})
    env = ENV_VARS[dataset]
    cached = _keras_cache_folder(dataset)
    if cached is not None:
        return _finish(_load_batches_folder(cached, dataset), dataset,
                       {"kind": "keras cache", "path": str(cached), "original": True})
    try:
        return _finish(_keras_download(dataset), dataset,
                       {"kind": "keras download", "original": True})
    except Exception as error:  # no network, proxy, SSL...: one clear message instead
        raise DataError(
            f"{dataset} not found and the download failed ({type(error).__name__}). Provide it by "
            f"(1) passing a path (data_path= / --data), (2) setting ${env} to a .npz archive, an "
            f"extracted batches folder or the official tarball, or (3) placing the extracted "
            f"folder in the Keras cache (~/.keras/datasets)."
        ) from None


def locate(dataset: str = "cifar10", path: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The path a load would read (explicit, else ``$BNLIB_CIFAR10``/``100``) and how it was named.

    ``(None, "")`` when neither names one (the Keras cache and download come next).  Cheap and
    TensorFlow-free, so the command line checks the data before it loads TensorFlow.
    """
    if dataset not in NUM_CLASSES:
        raise DataError(f"Unknown dataset {dataset!r}; choose cifar10 or cifar100.")
    env = ENV_VARS[dataset]
    if path is None and os.environ.get(env):
        path, how = os.environ[env], f"${env}"
    elif path is not None:
        how = "explicit path"
    else:
        return None, ""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"Data path {path} ({how}) does not exist; point data_path (--data) or "
                        f"${env} at a .npz, a batches folder or the official tarball.")
    return path, how


def _load_path(path: Path, dataset: str) -> dict:
    if path.is_dir():
        inner = path / TARBALLS[dataset][2]
        return _load_batches_folder(inner if inner.is_dir() else path, dataset)
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.name.endswith((".tar.gz", ".tgz")):
        return _load_tarball(path, dataset)
    raise DataError(f"Cannot read {path}: expected a .npz archive, an extracted "
                    f"{TARBALLS[dataset][2]} folder or {TARBALLS[dataset][0]}.")


def _load_npz(path: Path) -> dict:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:
        raise DataError(f"{path} is not a readable .npz archive ({error}); re-create it.") from None
    keys = set(archive.files)
    if {"x_train", "y_train", "x_test", "y_test"} <= keys:
        arrays = {k: archive[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        if "parent" in keys:  # a class subset written by bnlib.beyond.task_config
            arrays["parent"] = str(archive["parent"])
        return arrays
    if {"train_jpeg", "train_offsets", "test_jpeg", "test_offsets", "y_train", "y_test"} <= keys:
        return {
            "x_train": decode_jpegs(archive["train_jpeg"], archive["train_offsets"]),
            "y_train": archive["y_train"],
            "x_test": decode_jpegs(archive["test_jpeg"], archive["test_offsets"]),
            "y_test": archive["y_test"],
        }
    raise DataError(f"{path} lacks the keys x_train, y_train, x_test, y_test (found "
                    f"{sorted(keys)}); save the arrays under those names with numpy.savez.")


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Decode concatenated JPEG files (``blob[offsets[i]:offsets[i+1]]``) into uint8 NHWC."""
    from PIL import Image

    data = blob.tobytes()
    return np.stack([np.asarray(Image.open(io.BytesIO(data[a:b])).convert("RGB"))
                     for a, b in zip(offsets[:-1], offsets[1:])])


def _unpickle(handle) -> dict:
    return pickle.load(handle, encoding="latin1")


def _batch_arrays(batch: dict, label_key: str):
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[label_key])


def _batch_names(dataset: str):
    if dataset == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"
    return ["train"], ["test"], "fine_labels"


def _load_batches_folder(folder: Path, dataset: str) -> dict:
    train_names, test_names, label_key = _batch_names(dataset)
    missing = [n for n in train_names + test_names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder} is not an extracted {TARBALLS[dataset][2]} folder (missing "
                        f"{', '.join(missing)}); extract {TARBALLS[dataset][0]} there.")

    def read(names):
        parts = []
        for name in names:
            with open(folder / name, "rb") as handle:
                parts.append(_batch_arrays(_unpickle(handle), label_key))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    (x_train, y_train), (x_test, y_test) = read(train_names), read(test_names)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_tarball(path: Path, dataset: str, expected_md5: str | None = None) -> dict:
    expected = expected_md5 or TARBALLS[dataset][1]
    actual = md5sum(path)
    if actual != expected:
        raise DataError(f"{path} has md5 {actual}, expected {expected}: the download is corrupt "
                        f"or not the official {TARBALLS[dataset][0]}; download it again.")
    train_names, test_names, label_key = _batch_names(dataset)
    folder = TARBALLS[dataset][2]
    with tarfile.open(path, "r:gz") as tar:
        def read(names):
            parts = [_batch_arrays(_unpickle(tar.extractfile(f"{folder}/{n}")), label_key)
                     for n in names]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        (x_train, y_train), (x_test, y_test) = read(train_names), read(test_names)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _keras_cache_folder(dataset: str) -> Path | None:
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
    inner = TARBALLS[dataset][2]
    for candidate in (home / f"{inner}-target" / inner, home / inner):
        if candidate.is_dir():
            return candidate
    return None


def _keras_download(dataset: str) -> dict:
    from .runtime import keras

    module = keras.datasets.cifar10 if dataset == "cifar10" else keras.datasets.cifar100
    (x_train, y_train), (x_test, y_test) = module.load_data()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _finish(arrays: dict, dataset: str, source: dict) -> Dataset:
    num_classes = NUM_CLASSES[dataset]
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], np.asarray(arrays[f"y_{split}"]).reshape(-1)
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise DataError(f"x_{split} has shape {x.shape}; CIFAR images must be N x 32 x 32 x 3 "
                            "(channels last) — transpose or re-export the archive.")
        if x.dtype != np.uint8:
            raise DataError(f"x_{split} has dtype {x.dtype}; store raw pixels as uint8 0-255.")
        if len(y) != len(x):
            raise DataError(f"y_{split} has {len(y)} labels for {len(x)} images; they must match.")
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
            raise DataError(f"y_{split} must hold integer labels in [0, {num_classes}); found "
                            f"{y.dtype} in [{y.min()}, {y.max()}] — is this the right dataset?")
        arrays[f"y_{split}"] = y.astype(np.int64)
    parent = arrays.pop("parent", None)
    fingerprint = hashlib.sha256(arrays["x_train"].tobytes()).hexdigest()
    if fingerprint in KNOWN_PIXELS:
        description = KNOWN_PIXELS[fingerprint]
    elif parent:
        description = f"class subset ({Path(str(source.get('path'))).name}) of: {parent}"
    elif source.get("original"):
        description = f"{dataset.upper().replace('CIFAR', 'CIFAR-')} (original, via {source['kind']})"
    else:
        description = f"{dataset} archive {source.get('path')} (pixels not verified against the original)"
    source.update(dataset=dataset, description=description, train_sha256=fingerprint,
                  n_train=int(len(arrays["x_train"])), n_test=int(len(arrays["x_test"])))
    return Dataset(num_classes=num_classes, source=source, **arrays)


# ---------------------------------------------------------------------------------------- subsets

def class_balanced_subset(x: np.ndarray, y: np.ndarray, per_class: int):
    """The first ``per_class`` images of every class, in their original order."""
    counts = np.bincount(y)
    if per_class > counts.min():
        raise DataError(f"Asked for {per_class} images per class but class {int(counts.argmin())} "
                        f"has only {int(counts.min())}; use at most {int(counts.min())}.")
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(len(counts))]))
    return x[keep], y[keep]


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0):
    """Hold out a seeded random ``fraction`` of (x, y): returns (x_train, y_train, x_val, y_val)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    if not 0 < n_val < len(x):
        raise DataError(f"validation_split={fraction} holds out {n_val} of {len(x)} training images; "
                        f"use a fraction between {1 / len(x):.2g} (one image) and "
                        f"{1 - 1 / len(x):.4g}, or 0 for no validation set.")
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return x[train], y[train], x[val], y[val]


def channel_stats(x: np.ndarray):
    """Per-channel mean and std of uint8 images, on the 0-1 scale."""
    scaled = x.reshape(-1, 3).astype(np.float64) / 255.0
    return scaled.mean(axis=0).astype(np.float32), scaled.std(axis=0).astype(np.float32)


# ------------------------------------------------------------------------------------- pipelines

def _normalise(images, mean, std):
    from .runtime import tf

    return (tf.cast(images, tf.float32) / 255.0 - mean) / std


def _augment(image, seed):
    """The paper's augmentation: 4-pixel zero pad, random 32x32 crop, random horizontal flip."""
    from .runtime import tf

    padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=seeds[0])
    return tf.image.stateless_random_flip_left_right(image, seed=seeds[1])


def train_pipeline(x, y, batch_size: int, mean, std, augment: bool = True, seed: int = 0,
                   first_epoch: int = 0, epochs: int = 1):
    """Batches for epochs ``first_epoch .. epochs-1``, each epoch a function of (seed, epoch) only.

    Shuffling and augmentation use stateless random ops seeded by (seed, epoch, position), so the
    stream is reproducible and can be restarted at any epoch.  The final partial batch is kept.
    """
    from .runtime import tf

    if batch_size > len(x):
        raise DataError(f"batch_size {batch_size} is larger than the {len(x)} training images; "
                        f"use batch_size <= {len(x)}.")
    images, labels = tf.constant(x), tf.constant(y)
    n = len(x)
    mean, std = tf.constant(mean), tf.constant(std)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        positions = tf.data.Dataset.from_tensor_slices(order).enumerate()

        def example(position, index):
            image = tf.gather(images, index)
            if augment:
                image = _augment(image, tf.stack([epoch * n + position, tf.constant(seed, tf.int64)]))
            return image, tf.gather(labels, index)

        examples = positions.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return examples.batch(batch_size)  # batches never straddle two epochs

    stream = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    stream = stream.map(lambda a, b: (_normalise(a, mean, std), b),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return stream.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


def eval_pipeline(x, y, batch_size: int, mean, std):
    """Batches of (normalised images, labels) in order, for evaluation."""
    from .runtime import tf

    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    stream = stream.map(lambda a, b: (_normalise(a, mean, std), b),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return stream.prefetch(tf.data.AUTOTUNE)


@dataclass
class Splits:
    """The arrays a run uses after subsetting and the validation split, with normalisation stats."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    num_classes: int
    source: dict

    def normalised_test_images(self) -> np.ndarray:
        """The test images as the network sees them in evaluation: on the 0-1 scale, normalised with
        the training images' channel statistics, float32 (what :func:`eval_pipeline` feeds it)."""
        return ((self.x_test.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)


def prepare(config) -> Splits:
    """Load the data named by a RunConfig and apply its subset and validation split."""
    data = load(config.dataset, config.data_path)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if config.train_per_class:
        x_train, y_train = class_balanced_subset(x_train, y_train, config.train_per_class)
    if config.test_per_class:
        x_test, y_test = class_balanced_subset(x_test, y_test, config.test_per_class)
    x_val = y_val = None
    if config.validation_split:
        x_train, y_train, x_val, y_val = split_validation(
            x_train, y_train, config.validation_split, config.seed)
    mean, std = channel_stats(x_train)
    source = dict(data.source, train_used=int(len(x_train)), test_used=int(len(x_test)),
                  validation_used=int(0 if x_val is None else len(x_val)))
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, mean, std, data.num_classes, source)
