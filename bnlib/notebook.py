"""What every notebook of the book needs at the top: the profile switch, versions, the results.

A notebook runs in one of the presets of :mod:`bnlib.config`: ``smoke`` (seconds, what CI and the
site build run), ``cpu`` (minutes), ``paper`` (the paper's full schedule, for a GPU).  One variable
picks it, overridable by the environment variable ``BNLIB_PROFILE``; the default is ``paper`` when
a GPU is present and ``smoke`` otherwise.  The code path is the same in every profile.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from .config import PRESETS, _check_choice

REPOSITORY = "https://github.com/only-batchnorm/only-batchnorm"


def profile(default: str | None = None) -> str:
    """The profile for this session: $BNLIB_PROFILE, else ``default``, else by hardware."""
    from .runtime import tf

    chosen = os.environ.get("BNLIB_PROFILE") or default
    if chosen is None:
        chosen = "paper" if tf.config.list_physical_devices("GPU") else "smoke"
    _check_choice("profile (BNLIB_PROFILE)", chosen, tuple(PRESETS))
    return chosen


def live_output_dir(profile_name: str, name: str) -> str | None:
    """Where a notebook's live run keeps its checkpoints, so that running the cell again resumes it.

    None in ``smoke`` (seconds of work, and the site build must really train every time); else
    ``$BNLIB_RUNS/<profile>/<name>``, by default under ``runs/`` beside the notebook.  On Colab point
    BNLIB_RUNS at a Google Drive folder, or a disconnect loses the local disk and the run with it.
    """
    if profile_name == "smoke":
        return None
    return str(Path(os.environ.get("BNLIB_RUNS") or "runs") / profile_name / name)


def versions() -> str:
    """One line: bnlib, TensorFlow, Keras, Python, device."""
    from . import __version__
    from .runtime import describe_device, keras, tf

    return (f"bnlib {__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"Python {platform.python_version()}, {describe_device()}")


def results_root() -> Path:
    """The repository's results/ folder, found from the working directory upwards."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir() and (folder / "bnlib").is_dir():
            return folder / "results"
    raise FileNotFoundError("No results/ folder above the working directory; run the notebook "
                            "from a clone of the repository (the Colab setup cell makes one).")


def on_preset(result, preset: str = "cpu") -> bool:
    """Whether ``result`` ran the preset's recipe unchanged, whatever its network and policy: a
    member of that profile's committed series, not one of its variants (another γ initialisation,
    BN momentum, schedule, validation split, ...).  Keys a result predates count as the default."""
    from .config import RunConfig
    from .results import config_differences

    return config_differences(result.config, RunConfig.preset(preset).to_dict()) <= {"model", "policy"}


def describe(results) -> str:
    """Provenance lines for a list of results: run, accuracy, data, images, epochs, precision
    where not float32, device."""
    lines = []
    for result in results:
        data = result.provenance.get("data", {})
        precision = result.config.get("precision", "float32")
        lines.append(f"{result.label:<28} test acc {100 * result.test_accuracy:5.1f}%  | "
                     f"{data.get('description')}, {data.get('train_used')} train / "
                     f"{data.get('test_used')} test images, {result.epochs_run} epochs, "
                     f"{'' if precision == 'float32' else precision + ', '}"
                     f"{result.provenance.get('device')}, TF {result.provenance.get('tensorflow')}")
    return "\n".join(lines)
