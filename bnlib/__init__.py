"""bnlib: train only the BatchNorm layers of a network, and study what they learn.

The engine behind the "Only BatchNorm" book (Frankle, Schwab & Morcos, ICLR 2021).  Typical use::

    import bnlib
    config = bnlib.RunConfig.preset("cpu", model="resnet20", policy="bn", output_dir="runs/r20")
    result = bnlib.train(config)          # model.fit, checkpoints, a Result saved in output_dir
    bnlib.results.load("runs/r20")        # the same Result, back from disk

``import bnlib`` does not import TensorFlow: the modules that need it (models, freeze, training, ...)
load on first use, so the command line's ``--help`` and the result readers answer at once.
"""
import importlib

__version__ = "0.3.1"

# First, before anything imports TensorFlow: its process settings (oneDNN, log level), see runtime.py.
from . import runtime  # noqa: E402,F401
from .config import PRESETS, RunConfig  # noqa: E402
from . import results  # noqa: E402  (eager: it notes the source version bnlib was imported from)
from .results import Result, load_all  # noqa: E402
from .results import load as load_result  # noqa: E402

_LAZY_MODULES = ("analysis", "batchnorm", "beyond", "data", "freeze", "models", "notebook", "optimizers",
                 "plots", "training", "widgets")

__all__ = ["PRESETS", "RunConfig", "Result", "data", "freeze", "models", "results", "runtime", "train",
           "load_result", "load_all", "__version__"]


def __getattr__(name: str):
    """``bnlib.models``, ``bnlib.train`` and the like, imported on first access (PEP 562)."""
    if name == "train":
        # The function, from the module named `training` so that no submodule shadows it.
        from .training import train
        return train
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)  # the import binds it here too
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY_MODULES, "train"})
