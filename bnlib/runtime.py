"""TensorFlow process settings bnlib relies on, made before TensorFlow is imported.

* oneDNN CPU kernels on by default (``TF_ENABLE_ONEDNN_OPTS``): with them bnlib's fused BatchNorm
  is fast on CPUs (see below and the README's performance section);
* TensorFlow's C++ INFO lines off by default (``TF_CPP_MIN_LOG_LEVEL=1``), its oneDNN notice dropped;
* what the run happened on, for every result's provenance; op determinism switched back off.

``import bnlib`` imports this module first and TensorFlow not at all, so that ``import bnlib`` and
``python -m bnlib --help`` take a fraction of a second instead of TensorFlow's seconds.  bnlib's
modules take TensorFlow and Keras from here (``from .runtime import keras, tf``): the first such
access imports them, once, quietly and after the settings above.
"""
from __future__ import annotations

import os
import sys
import tempfile

# TensorFlow's oneDNN CPU kernels are on by default only on CPUs with AVX-512-class features; on
# others (this project's AVX2 machines) TensorFlow uses its Eigen kernels, whose fused BatchNorm
# gradient is slow.  Measured with benchmarks/bench_step.py on an idle 2-core AVX2 EPYC: with
# oneDNN, BN-only training is 1.27-1.36x faster (ResNet-20 and ResNet-56, several runs) than the
# seed article's set-up (1.01x / 1.06x with Eigen), and every variant's step is about 1.5-2x
# faster.  The variable is read once, when TensorFlow is imported, so this default only applies
# when bnlib is imported first; TF_ENABLE_ONEDNN_OPTS=0 turns it off.  Results record whether it
# was on (``provenance["device"]``, from describe_device).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's C++ INFO lines (CPU feature notices and the like) are noise in notebooks and logs;
# warnings and errors still show.  TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras without the oneDNN notice they write to stderr.

    The notice ("oneDNN custom operations are on ...", twice, with absl's pre-initialisation
    warning) is written straight to file descriptor 2 before TensorFlow's logging starts, so
    TF_CPP_MIN_LOG_LEVEL cannot silence it, and notebooks show it under their first cell.  Every
    other line written during the import is passed on to stderr unchanged.
    """
    if "tensorflow" in sys.modules:
        return
    noise = ("oneDNN custom operations are on", "before absl::InitializeLog() is called")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # no stderr at all (a detached process): nothing to keep clean
        import keras  # noqa: F401
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (imports tensorflow)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(text in line for text in noise):
                    sys.stderr.write(line)
            sys.stderr.flush()


def __getattr__(name: str):
    """``tf`` and ``keras``, imported on first access (PEP 562), quietly, after the settings above."""
    if name not in ("tf", "keras"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    return {"tf": tf, "keras": keras}[name]


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels."""
    _import_tensorflow_quietly()
    try:  # TensorFlow has no public accessor for this.
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def describe_device() -> str:
    """``1 x GPU <name>`` or ``CPU (<n> cores, oneDNN on|off)``: the device a result records."""
    _import_tensorflow_quietly()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x GPU {details.get('device_name', '')}".strip()
    return f"CPU ({os.cpu_count()} cores, oneDNN {'on' if onednn_enabled() else 'off'})"


def bfloat16_hardware() -> str:
    """What the CPU offers for bfloat16 arithmetic: ``AMX`` (matrix units, Intel Xeon since
    Sapphire Rapids: a mixed-bfloat16 step ran 1.6-1.85x faster there), ``AVX-512 BF16`` (conversions
    and dot products only), or ``none`` (bfloat16 is emulated in software)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((set(line.split(":", 1)[1].split()) for line in handle
                          if line.startswith("flags")), set())
    except OSError:
        flags = set()
    return "AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else "none"


# TensorFlow exports enable_op_determinism but neither its query nor its inverse.
def op_determinism_enabled() -> bool:
    _import_tensorflow_quietly()
    from tensorflow.python.framework import config as tf_config
    return tf_config.is_op_determinism_enabled()


def disable_op_determinism() -> None:
    _import_tensorflow_quietly()
    from tensorflow.python.framework import config as tf_config
    tf_config.disable_op_determinism()
