"""The Result record: what a run produced, in a small self-describing format on disk.

A result is a folder holding ``result.json`` (config, per-epoch history, final accuracy, parameter
counts, provenance) and ``batchnorm.npz`` (every BN layer's final γ, β and moving statistics, their
initial values, and the output layer; one array per kind, the layers in the order and with the
channel counts that ``result.json`` lists under ``layers`` and ``channels``).  With the seed in the
config, that is enough to rebuild a trained BN-only network exactly (``analysis.rebuild_model``):
its convolutions never left their random initialisation.  Both are written atomically (write to a
temporary file, then rename), the JSON last, so a folder with a ``result.json`` always holds a
complete result.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# 1 (bnlib 0.1): batchnorm.npz holds one array per layer and kind; 2 (bnlib 0.2): one array per
# kind, all layers together.
FORMAT_VERSION = 2
PER_LAYER = ("gamma", "beta", "initial_gamma", "initial_beta", "moving_mean", "moving_variance")
RESULT_FILE = "result.json"
ARRAYS_FILE = "batchnorm.npz"


class ResultFormatError(ValueError):
    """A result file that this version of bnlib cannot read; the message names the fix."""


@dataclass
class Result:
    """A finished run.  ``history`` maps a metric name to one value per epoch."""

    config: dict
    history: dict
    test_accuracy: float
    test_loss: float
    parameters: dict
    provenance: dict
    gamma: dict = field(default_factory=dict)   # layer name -> final γ
    beta: dict = field(default_factory=dict)    # layer name -> final β
    initial_gamma: dict = field(default_factory=dict)
    initial_beta: dict = field(default_factory=dict)
    moving_mean: dict = field(default_factory=dict)      # BN statistics, for rebuilding the model
    moving_variance: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)           # final output layer ("kernel", "bias")
    path: str | None = None
    model: object = field(default=None, repr=False, compare=False)  # in-session only, never saved

    @property
    def label(self) -> str:
        return self.config.get("name") or f"{self.config['model']} {self.config['policy']}"

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def differs_from(self, other: "Result") -> set[str]:
        """The configuration fields in which this run differs from ``other``, beyond its name and
        output folder: ``run.differs_from(twin) == {"seed"}`` says the two are one experiment but for
        the seed (:func:`config_differences`)."""
        return config_differences(self.config, other.config)

    def all_gamma(self) -> np.ndarray:
        """Every trained γ of the network, layer after layer, as one flat array."""
        return _flat(self.gamma)

    def all_initial_gamma(self) -> np.ndarray:
        """Every γ at initialisation, in the same order as :meth:`all_gamma`."""
        return _flat(self.initial_gamma)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the result into ``folder`` atomically; returns the path of result.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / ARRAYS_FILE, lambda handle: np.savez_compressed(handle, **self._arrays()))
        record = {
            "format_version": FORMAT_VERSION,
            "config": self.config,
            "history": self.history,
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "parameters": self.parameters,
            "provenance": self.provenance,
            "layers": list(self.gamma),
            "channels": [int(np.size(g)) for g in self.gamma.values()],
        }
        text = json.dumps(_plain(record), indent=1, sort_keys=False)
        atomic_write(folder / RESULT_FILE, lambda handle: handle.write(text.encode()))
        self.path = str(folder)
        return folder / RESULT_FILE

    def _arrays(self) -> dict:
        """What ``batchnorm.npz`` holds: per kind, every layer's values in one array, in the
        order of ``layers`` (one array per layer, format 1, cost ~300 bytes of zip and npy
        headers each: most of the file for deep networks); the output layer as it is."""
        arrays = {kind: np.concatenate([np.asarray(values[layer], np.float32).ravel() for layer in self.gamma])
                  for kind in PER_LAYER if (values := getattr(self, kind))}
        arrays.update({f"output/{k}": np.asarray(v, np.float32) for k, v in self.output.items()})
        return arrays


def config_differences(config: dict, other: dict) -> set[str]:
    """The fields in which two run configurations differ, beyond the run's name and output folder.
    Both are read as RunConfigs, so a field that one of them predates counts as its default."""
    from .config import RunConfig

    mine, theirs = (RunConfig.from_dict(values).to_dict() for values in (config, other))
    return {key for key in mine if mine[key] != theirs[key]} - {"name", "output_dir"}


def _flat(per_layer: dict) -> np.ndarray:
    return np.concatenate([a.ravel() for a in per_layer.values()]) if per_layer else np.array([])


def atomic_write(path: Path, write) -> None:
    """Call ``write(binary_handle)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile makes 0600; results are for sharing
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _plain(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to strings JSON can hold."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def load(path: str | os.PathLike) -> Result:
    """Load a result from its folder or its result.json."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    json_path = folder / RESULT_FILE
    if not json_path.is_file():
        raise ResultFormatError(f"No {RESULT_FILE} in {folder}; pass a folder written by bnlib.train.")
    try:
        record = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise ResultFormatError(f"{json_path} is not valid JSON ({error}); re-run to regenerate it.") from None
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultFormatError(f"{json_path} has no valid format_version ({version!r}); it was not "
                                "written by bnlib.train: re-run the training to regenerate it.")
    if version > FORMAT_VERSION:
        raise ResultFormatError(
            f"{json_path} has result format {version!r}, newer than this bnlib reads "
            f"({FORMAT_VERSION}); update bnlib: git pull in the book's clone, then pip install -e . there.")
    arrays = _read_arrays(folder / ARRAYS_FILE, record) if (folder / ARRAYS_FILE).is_file() else {}
    from .config import upgrade as upgrade_config  # here, like provenance's: this module imports alone
    return Result(config=upgrade_config(record["config"]), history=record["history"],
                  test_accuracy=record["test_accuracy"], test_loss=record["test_loss"],
                  parameters=record["parameters"], provenance=record["provenance"],
                  path=str(folder), **arrays)


def _read_arrays(path: Path, record: dict) -> dict:
    """The per-layer arrays of ``batchnorm.npz``: {kind: {layer: values}} and the output layer."""
    layers = record.get("layers", [])
    split = {kind: {} for kind in (*PER_LAYER, "output")}
    with np.load(path) as arrays:
        if record["format_version"] < 2:
            for key in arrays.files:
                kind, layer = key.split("/", 1)
                split[kind][layer] = arrays[key]
            return {kind: ({k: values[k] for k in layers if k in values} if kind != "output" else values)
                    for kind, values in split.items()}
        if "channels" not in record:
            raise ResultFormatError(f"{path.parent / RESULT_FILE} lists no channel counts for {path.name}; "
                                    "re-run to regenerate the result.")
        bounds = np.cumsum([0, *record["channels"]])
        for key in arrays.files:
            kind, _, name = key.partition("/")
            if kind == "output":
                split[kind][name] = arrays[key]
                continue
            values = arrays[key]
            if len(values) != bounds[-1] or len(layers) != len(bounds) - 1:
                raise ResultFormatError(f"{path} holds {len(values)} {kind} values where {path.parent / RESULT_FILE} "
                                        f"names {bounds[-1]} channels; re-run to regenerate the result.")
            split[kind] = {layer: values[a:b] for layer, a, b in zip(layers, bounds[:-1], bounds[1:])}
    return split


def load_all(root: str | os.PathLike) -> list[Result]:
    """Every result under ``root`` (searched recursively), in the natural order of their folders:
    numbers compare as numbers, so resnet14 comes before resnet110 and seed2 before seed10."""
    root = Path(root)
    return [load(p) for p in sorted(root.rglob(RESULT_FILE), key=lambda p: natural_key(p.parent.relative_to(root)))]


def natural_key(path: str | os.PathLike) -> tuple:
    """Sort key of a folder path, part by part, each with its runs of digits read as numbers:
    resnet14-bn/ -> (("resnet", 14, "-bn"),); a name sorts before its longer variants (…-seed1)."""
    return tuple(tuple(int(piece) if piece.isdecimal() else piece for piece in re.split(r"(\d+)", part))
                 for part in Path(path).parts)


def provenance(data_source: dict, wall_seconds: float, device: str) -> dict:
    """Versions, hardware and data of a run."""
    from .runtime import bfloat16_hardware, keras, tf

    from . import __version__

    return {
        "bnlib": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "device": device,
        "cpu": _cpu_name(),
        "cpu_bfloat16": bfloat16_hardware(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "source": SOURCE_AT_IMPORT,
        "data": data_source,
        "wall_seconds": round(wall_seconds, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def source_version() -> str | None:
    """The git commit bnlib runs from, with ``+modified`` when its files differ from it (e.g.
    ``1ac459b+modified``); None when bnlib is not in a git checkout (an installed wheel)."""
    package = Path(__file__).resolve().parent
    def git(*args):
        return subprocess.run(["git", "-C", str(package.parent), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != package.parent:
            return None  # bnlib installed inside some other repository's folder
        commit = git("rev-parse", "--short", "HEAD")
        modified = git("status", "--porcelain", "--", str(package))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+modified" if modified else "")


# Read once, when bnlib is imported: a run's code is what its process loaded, whatever happens to
# the files while it trains (a long run outlives many commits).
SOURCE_AT_IMPORT = source_version()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
