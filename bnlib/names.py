"""Model names: parse, check and spell them the one way results use, without TensorFlow.

A run's configuration is checked when it is made (``RunConfig``, ``python -m bnlib train``), so a
misspelt model fails in a fraction of a second instead of after TensorFlow has loaded.
:mod:`bnlib.models` builds the networks these names describe.
"""
from __future__ import annotations

import difflib
import re

VALID_RESNET_DEPTHS = (14, 20, 32, 44, 56, 110, 218, 434, 866)
VGG_DEPTHS = (11, 13, 16, 19)
KERAS_RESNET_DEPTHS = (50, 101, 152)
EXAMPLE_NAMES = (
    [f"resnet{d}" for d in VALID_RESNET_DEPTHS]
    + ["wrn14-2", "wrn14-4", "wrn20-4"]
    + [f"vgg{d}" for d in VGG_DEPTHS]
    + [f"keras-resnet{d}" for d in KERAS_RESNET_DEPTHS]
)
PATTERNS = {
    "resnet": r"resnet-?(\d+)",
    "wrn": r"wrn-?(\d+)-(-?\d+)",
    "vgg": r"vgg-?(\d+)",
    "keras-resnet": r"keras-resnet-?(\d+)",
}


def _nearest_depths(depth: int) -> str:
    below = 6 * max(1, (depth - 2) // 6) + 2
    return f"{below} or {below + 6}" if depth > below else f"{below}"


def check_resnet_depth(depth: int) -> int:
    """Return n (blocks per stage) for a depth 6n+2, or raise ValueError naming the nearest depths."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"ResNet depth {depth} is not of the form 6n+2 (n >= 1); "
            f"nearest valid depths: {_nearest_depths(depth)}."
        )
    return (depth - 2) // 6


def check_vgg_depth(depth: int) -> None:
    """Raise ValueError unless ``depth`` is one of VGG-11/13/16/19."""
    if depth not in VGG_DEPTHS:
        raise ValueError(f"VGG depth {depth} is unknown; choose one of {list(VGG_DEPTHS)}.")


def check_keras_resnet_depth(depth: int) -> None:
    """Raise ValueError unless ``depth`` is one of the keras.applications ResNets (50, 101, 152)."""
    if depth not in KERAS_RESNET_DEPTHS:
        raise ValueError(f"keras-resnet depth {depth} is unknown; choose 50, 101 or 152.")


def _check_depth_and_width(family: str, depth: int, width: int, name: str) -> None:
    if family in ("resnet", "wrn"):
        check_resnet_depth(depth)
    if family == "wrn" and width < 1:
        raise ValueError(f"Width multiplier in {name!r} must be positive; try wrn{depth}-2 or wrn{depth}-4.")
    if family == "vgg":
        check_vgg_depth(depth)
    if family == "keras-resnet":
        check_keras_resnet_depth(depth)


def parse_name(name: str) -> tuple[str, int, int]:
    """Split a model name into (family, depth, width); raise ValueError naming valid choices."""
    key = str(name).strip().lower().replace("_", "-")
    for family, pattern in PATTERNS.items():
        match = re.fullmatch(pattern, key)
        if match:
            depth = int(match.group(1))
            width = int(match.group(2)) if family == "wrn" else 1
            _check_depth_and_width(family, depth, width, name)
            return family, depth, width
    close = difflib.get_close_matches(key, EXAMPLE_NAMES, n=3, cutoff=0.5) or EXAMPLE_NAMES[:3]
    raise ValueError(
        f"Unknown model {name!r}; did you mean {', '.join(close)}? "
        "Valid: resnet<6n+2>, wrn<6n+2>-<k>, vgg11/13/16/19, keras-resnet50/101/152."
    )


def canonical_name(name: str) -> str:
    """The one spelling results and tables use: ``ResNet-14`` -> ``resnet14``, ``WRN_14_2`` ->
    ``wrn14-2``; raise ValueError naming valid choices."""
    family, depth, width = parse_name(name)
    return f"wrn{depth}-{width}" if family == "wrn" else f"{family}{depth}"
