"""bnlib: train only the BatchNorm layers of a network, and study what they learn.

The engine behind the "Only BatchNorm" book (Frankle, Schwab & Morcos, ICLR 2021).  Typical use::

    import bnlib
    config = bnlib.RunConfig.preset("cpu", model="resnet20", policy="bn", output_dir="runs/r20")
    result = bnlib.train(config)          # model.fit, checkpoints, a Result saved in output_dir
    bnlib.results.load("runs/r20")        # the same Result, back from disk
"""
__version__ = "0.1.0"

import os as _os

# TensorFlow's oneDNN CPU kernels are on by default only on CPUs with AVX-512-class features; on
# others (this project's AVX2 machines) TensorFlow uses its Eigen kernels, whose fused BatchNorm
# gradient is slow.  Measured with benchmarks/bench_step.py on a 2-core AVX2 EPYC, ResNet-20:
# oneDNN on makes BN-only training 1.35x faster than the seed article's set-up (1.0x with it off)
# and full training about 1.4x faster.  The variable is read once, when TensorFlow is imported,
# so this default only applies when bnlib is imported first; TF_ENABLE_ONEDNN_OPTS=0 turns it
# off.  Results record whether it was on (``provenance["device"]``).
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's C++ INFO lines (CPU feature notices and the like) are noise in notebooks and logs;
# warnings and errors still show.  TF_CPP_MIN_LOG_LEVEL=0 brings them back.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras without the oneDNN notice they write to stderr.

    The notice ("oneDNN custom operations are on ...", twice, with absl's pre-initialisation
    warning) is written straight to file descriptor 2 before TensorFlow's logging starts, so
    TF_CPP_MIN_LOG_LEVEL cannot silence it, and notebooks show it under their first cell.  Every
    other line written during the import is passed on to stderr unchanged.
    """
    import sys
    import tempfile

    if "tensorflow" in sys.modules:
        return
    noise = ("oneDNN custom operations are on", "before absl::InitializeLog() is called")
    sys.stderr.flush()
    saved = _os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        _os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (imports tensorflow)
        finally:
            sys.stderr.flush()
            _os.dup2(saved, 2)
            _os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(text in line for text in noise):
                    sys.stderr.write(line)
            sys.stderr.flush()


_import_tensorflow_quietly()

from .config import PRESETS, RunConfig  # noqa: E402
from . import data, freeze, models, results  # noqa: E402
from .results import Result, load_all  # noqa: E402
from .results import load as load_result  # noqa: E402
# Imported eagerly so that `bnlib.train` is the function even after `import bnlib.train`
# (a submodule import would otherwise rebind the package attribute to the module).
from .train import train  # noqa: E402

__all__ = ["PRESETS", "RunConfig", "Result", "data", "freeze", "models", "results", "train",
           "load_result", "load_all", "__version__"]
