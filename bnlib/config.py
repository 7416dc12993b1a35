"""RunConfig: one frozen record describing a training run, and the named presets.

A preset is data (a dict of field overrides), not code: ``RunConfig.preset("cpu", model="resnet56")``.
Every field is validated on construction, so a typo fails at once with a message naming the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from dataclasses import dataclass

from .names import canonical_name

POLICIES = ("all", "bn", "bn+output", "output", "gamma", "beta", "none", "random")
GAMMA_INITS = ("ones", "uniform", "normal", "he_normal")
BETA_INITS = ("zeros", "normal")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "constant", "cosine")
DATASETS = ("cifar10", "cifar100")
STRATEGIES = ("default", "auto", "mirrored", "multiworker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # Keras mixed-precision policy names
# Fields of earlier bnlib versions, as found in result files and run folders: old name -> new value.
LEGACY_FIELDS = {"mixed_precision": ("precision", lambda on: "mixed_float16" if on else "float32")}

# One line per field, for --help and the docs.
FIELD_HELP = {
    "model": "resnet<6n+2> (14, 20, 32, 56, 110, ... 866), wrn<6n+2>-<k>, vgg11/13/16/19, keras-resnet50/101/152",
    "policy": "what trains: bn (γ and β only), all, bn+output, output, gamma, beta, none, random",
    "gamma_init": "initial γ: uniform (U[0,1), the paper's code), ones (Keras), normal, he_normal (the TF2 article)",
    "beta_init": "initial β: zeros or normal",
    "bn_momentum": "BN moving-average momentum, Keras convention (0.9 = PyTorch's 0.1; Keras' default 0.99 lags)",
    "dataset": "cifar10 or cifar100",
    "data_path": "a .npz, an extracted batches folder or the official tarball (else $BNLIB_CIFAR10, Keras cache, download)",
    "train_per_class": "use only the first N training images of each class",
    "test_per_class": "use only the first N test images of each class",
    "validation_split": "fraction of the training images held out and evaluated every epoch",
    "augment": "4-pixel pad + random crop + horizontal flip",
    "optimizer": "sgd (with momentum) or adam",
    "learning_rate": "initial learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay on the trained parameters, added to their gradients (PyTorch's form, as in the paper)",
    "schedule": "step (x lr_decay at lr_milestones), cosine, or constant",
    "lr_milestones": "epochs at which the step schedule decays the learning rate",
    "lr_decay": "factor of each step decay",
    "warmup_epochs": "linear learning-rate warm-up over this many epochs",
    "clipnorm": "clip gradients to this global norm",
    "epochs": "number of epochs",
    "batch_size": "images per step (global, across devices)",
    "seed": "seed for initialisation, data order and augmentation",
    "deterministic": "bit-reproducible on CPU (TensorFlow op determinism; slower)",
    "precision": "float32; mixed_bfloat16 (CPUs with AMX, TPUs, recent GPUs: steps 1.6-1.85x faster on the book's Xeons); mixed_float16 (GPUs; very slow on CPUs)",
    "xla": "compile with XLA (for GPUs; 1.5-2.2x slower on the book's CPUs)",
    "strategy": "default, auto (TPU, else all GPUs, else one device), mirrored, multiworker (TF_CONFIG), tpu",
    "output_dir": "folder for checkpoints and the result; re-running resumes",
    "name": "label used in tables and plots",
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Defaults are the paper's CIFAR-10 BN-only setting."""

    model: str = "resnet20"
    policy: str = "bn"
    gamma_init: str = "uniform"       # the official code's default: gamma ~ U[0, 1)
    beta_init: str = "zeros"
    bn_momentum: float = 0.9          # PyTorch's 0.1 in Keras terms; Keras' own default is 0.99
    dataset: str = "cifar10"
    data_path: str | None = None      # None: $BNLIB_CIFAR10 / $BNLIB_CIFAR100, Keras cache, download
    train_per_class: int | None = None   # class-balanced subset of the training set
    test_per_class: int | None = None
    validation_split: float = 0.0     # held out of the training set; evaluated each epoch
    augment: bool = True              # 4-pixel pad + random 32x32 crop + horizontal flip
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9             # SGD momentum
    weight_decay: float = 1e-4        # L2 on trained weights, PyTorch's coupled form
    schedule: str = "step"
    lr_milestones: tuple[int, ...] = (80, 120)
    lr_decay: float = 0.1
    warmup_epochs: int = 0            # linear learning-rate warm-up
    clipnorm: float | None = None     # gradient clipping by global norm
    epochs: int = 160
    batch_size: int = 128
    seed: int = 0
    deterministic: bool = False       # bit-reproducible on CPU (tf op determinism)
    precision: str = "float32"        # or a Keras mixed-precision policy: compute in 16 bits
    xla: bool = False
    strategy: str = "default"
    output_dir: str | None = None     # where checkpoints and the result go
    name: str | None = None           # a label for tables; defaults to model/policy

    def __post_init__(self):
        for field in dataclasses.fields(self):  # NumPy numbers -> Python ones (JSON, comparisons)
            value = getattr(self, field.name)
            kind = str(field.type).removesuffix(" | None")
            if kind == "int" and _is_integer(value):
                object.__setattr__(self, field.name, int(value))
            elif kind == "float" and _is_real(value):
                object.__setattr__(self, field.name, float(value))
            elif kind == "bool" and not isinstance(value, bool):
                raise ValueError(f"{field.name} must be True or False, got {value!r}.")
        _check_choice("policy", self.policy, POLICIES)
        _check_choice("gamma_init", self.gamma_init, GAMMA_INITS)
        _check_choice("beta_init", self.beta_init, BETA_INITS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        object.__setattr__(self, "model", canonical_name(self.model))
        _check_positive("epochs", self.epochs, integer=True)
        _check_positive("batch_size", self.batch_size, integer=True)
        if not _is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}.")
        _check_positive("learning_rate", self.learning_rate)
        for name in ("train_per_class", "test_per_class"):
            value = getattr(self, name)
            if value is not None:
                _check_positive(name, value, integer=True)
        _check_range("bn_momentum", self.bn_momentum, 0.0, 1.0, "0.9 matches PyTorch's default momentum 0.1")
        _check_range("validation_split", self.validation_split, 0.0, 1.0, "try 0.1")
        _check_range("momentum", self.momentum, 0.0, 1.0, "the paper's is 0.9")
        _check_range("weight_decay", self.weight_decay, 0.0, math.inf, "the paper's is 1e-4")
        if not (_is_real(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}; the paper's step "
                             "schedule multiplies the learning rate by 0.1 at each milestone.")
        if not _is_integer(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be an integer from 0 to epochs - 1 ({self.epochs - 1}), "
                             f"got {self.warmup_epochs!r}: the warm-up must end before the training does.")
        if self.clipnorm is not None and not (_is_real(self.clipnorm) and 0 < self.clipnorm < math.inf):
            raise ValueError(f"clipnorm must be positive or None, got {self.clipnorm!r}; try 1.0.")
        object.__setattr__(self, "lr_milestones", _milestones(self.lr_milestones))

    @property
    def label(self) -> str:
        return self.name or f"{self.model} {self.policy}"

    @classmethod
    def preset(cls, preset_name: str, /, **overrides) -> "RunConfig":
        """A named preset (``paper``, ``article``, ``cpu``, ``smoke``) with field overrides."""
        _check_choice("preset", preset_name, tuple(PRESETS))
        fields = {**PRESETS[preset_name], **overrides}
        return cls.from_dict(fields)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Build from a dict (e.g. a result file's config); unknown keys are an error, the
        fields of earlier bnlib versions are translated (:func:`upgrade`)."""
        values = upgrade(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            hint = difflib.get_close_matches(unknown[0], known, n=1)
            raise ValueError(f"Unknown RunConfig field(s) {unknown}"
                             + (f"; did you mean {hint[0]!r}?" if hint else "."))
        return cls(**values)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["lr_milestones"] = list(self.lr_milestones)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def upgrade(values: dict) -> dict:
    """A config dict with the fields of earlier bnlib versions renamed (``mixed_precision: true``
    became ``precision: "mixed_float16"``), so that old result files and run folders still load
    and resume."""
    values = dict(values)
    for old, (new, convert) in LEGACY_FIELDS.items():
        if old in values and new not in values:
            values[new] = convert(values.pop(old))
    return values


def _check_choice(field_name: str, value, choices: tuple) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"Unknown {field_name} {value!r}; {hint}choose one of: {', '.join(choices)}.")


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


def _check_positive(field_name: str, value, integer: bool = False) -> None:
    valid = _is_integer(value) if integer else _is_real(value) and value < math.inf
    if not valid or value <= 0:
        kind = "a positive integer" if integer else "a positive finite number"
        raise ValueError(f"{field_name} must be {kind}, got {value!r}.")


def _check_range(field_name: str, value, low: float, high: float, hint: str) -> None:
    """``low <= value < high``, else a one-line error with a hint."""
    if not (_is_real(value) and low <= value < high):
        allowed = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g})"
        raise ValueError(f"{field_name} must be {allowed}, got {value!r}; {hint}.")


def _milestones(values) -> tuple[int, ...]:
    """lr_milestones as a tuple of increasing positive epochs, or a one-line error."""
    try:
        milestones = tuple(values)
    except TypeError:
        milestones = None
    if milestones is None or not all(_is_integer(m) for m in milestones) or \
            any(m <= 0 for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise ValueError(f"lr_milestones must be increasing positive epochs, e.g. (80, 120); got {values!r}.")
    return tuple(int(m) for m in milestones)


# The presets. `paper`: Frankle et al. (2021), appendix: SGD momentum 0.9, lr 0.1 divided by 10 at
# epochs 80 and 120, 160 epochs, batch 128, weight decay 1e-4, standard augmentation.
# `article`: the seed TF2 article: Adam lr 0.01, batch 1024, 50 epochs, no augmentation, γ he_normal.
# `cpu` and `smoke`: short runs for a 2-core CPU (minutes) and CI (seconds): the paper's networks,
# batch size, augmentation and γ initialisation, but not its optimizer: Adam with a cosine decay,
# which gets furthest in few epochs, on fewer images (cpu: 10,000 training images, the full test
# set, 8 epochs).  Same code path as `paper`.
PRESETS: dict[str, dict] = {
    "paper": dict(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                  schedule="step", lr_milestones=(80, 120), lr_decay=0.1, epochs=160,
                  batch_size=128, augment=True, gamma_init="uniform"),
    "article": dict(optimizer="adam", learning_rate=0.01, weight_decay=0.0, schedule="constant",
                    epochs=50, batch_size=1024, augment=False, gamma_init="he_normal",
                    model="keras-resnet50"),
    "cpu": dict(optimizer="adam", learning_rate=0.01, weight_decay=0.0, schedule="cosine",
                epochs=8, batch_size=128, augment=True, gamma_init="uniform",
                train_per_class=1000),
    "smoke": dict(optimizer="adam", learning_rate=0.01, weight_decay=0.0, schedule="constant",
                  epochs=2, batch_size=128, augment=False, gamma_init="uniform",
                  model="resnet14", train_per_class=100, test_per_class=50),
}
