"""bnlib: train only the BatchNorm layers of a network, and study what they learn.

The engine behind the "Only BatchNorm" book (Frankle, Schwab & Morcos, ICLR 2021).  Typical use::

    import bnlib
    config = bnlib.RunConfig.preset("cpu", model="resnet20", policy="bn", output_dir="runs/r20")
    result = bnlib.train(config)          # model.fit, checkpoints, a Result saved in output_dir
    bnlib.results.load("runs/r20")        # the same Result, back from disk
"""
__version__ = "0.2.1"

# First, before anything imports TensorFlow: its process settings (oneDNN, log level), see runtime.py.
from . import runtime  # noqa: E402,F401
from .config import PRESETS, RunConfig  # noqa: E402
from . import data, freeze, models, results  # noqa: E402
from .results import Result, load_all  # noqa: E402
from .results import load as load_result  # noqa: E402
# Imported eagerly so that `bnlib.train` is the function even after `import bnlib.train`
# (a submodule import would otherwise rebind the package attribute to the module).
from .train import train  # noqa: E402

__all__ = ["PRESETS", "RunConfig", "Result", "data", "freeze", "models", "results", "runtime", "train",
           "load_result", "load_all", "__version__"]
