"""Model builders by name: CIFAR ResNets, wide ResNets, VGG with BatchNorm, Keras-applications ResNets.

Names (case-insensitive):

* ``resnet<D>``: CIFAR ResNet of He et al. (2016) as in the paper's official code (open_lth):
  depth D = 6n + 2 (14, 20, 32, 44, 56, 110, 218, 434, 866, ...).
* ``wrn<D>-<k>``: the same network with every stage k times wider (WRN-14-2, WRN-14-4, ...).
* ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19``: VGG with BatchNorm for CIFAR (open_lth's layout).
* ``keras-resnet50``, ``keras-resnet101``, ``keras-resnet152``: ``keras.applications`` ResNets with
  random weights on 32x32 inputs (the seed article's models), their BatchNorm layers swapped for bnlib's.

Every builder is pure Keras (functional API), uses :class:`bnlib.batchnorm.BatchNorm` and returns an
uncompiled ``keras.Model`` whose last layer is the ``Dense`` classifier named ``output``.
"""
from __future__ import annotations

import sys

from .batchnorm import BatchNorm
from .names import (  # noqa: F401  (re-exported: models.parse_name, models.canonical_name, ...)
    EXAMPLE_NAMES, KERAS_RESNET_DEPTHS, VALID_RESNET_DEPTHS, VGG_DEPTHS, canonical_name,
    check_keras_resnet_depth, check_resnet_depth, check_vgg_depth, parse_name,
)
from .runtime import keras

VGG_LAYOUTS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}
KERAS_RESNETS = {
    50: keras.applications.ResNet50,
    101: keras.applications.ResNet101,
    152: keras.applications.ResNet152,
}
BN_MOMENTUM = 0.9  # PyTorch's default 0.1, written the Keras way (see freeze.set_bn_momentum)


def _batchnorm(name: str, momentum: float) -> BatchNorm:
    return BatchNorm(momentum=momentum, name=name)


def _conv(filters: int, kernel: int, stride: int, name: str) -> keras.layers.Conv2D:
    # He-normal fan-in init on convolutions, as PyTorch's kaiming_normal_ in open_lth.
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name,
    )


def cifar_resnet(depth: int, width: int = 1, num_classes: int = 10,
                 input_shape=(32, 32, 3), bn_momentum: float = BN_MOMENTUM,
                 name: str | None = None) -> keras.Model:
    """CIFAR ResNet-``depth`` (6n+2) with width multiplier ``width`` (16k, 32k, 64k filters)."""
    n = check_resnet_depth(depth)
    # Keras walks a functional graph recursively (in construction, cloning, saving); ResNet-866
    # has ~3,000 layers, past Python's default limit of 1,000 frames.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * depth + 1000))
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"Width multiplier must be a positive integer, got {width!r}; try 1, 2 or 4.")
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(16 * width, 3, 1, "stem_conv")(inputs)
    x = _batchnorm("stem_bn", bn_momentum)(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(n):
            prefix = f"stage{stage + 1}_block{block + 1}"
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = _conv(filters, 3, stride, f"{prefix}_conv1")(x)
            y = _batchnorm(f"{prefix}_bn1", bn_momentum)(y)
            y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
            y = _conv(filters, 3, 1, f"{prefix}_conv2")(y)
            y = _batchnorm(f"{prefix}_bn2", bn_momentum)(y)
            if stride != 1 or x.shape[-1] != filters:
                shortcut = _conv(filters, 1, stride, f"{prefix}_shortcut_conv")(x)
                shortcut = _batchnorm(f"{prefix}_shortcut_bn", bn_momentum)(shortcut)
            x = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
            x = keras.layers.ReLU(name=f"{prefix}_relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="output", dtype="float32")(x)
    default = f"resnet{depth}" if width == 1 else f"wrn{depth}-{width}"
    return keras.Model(inputs, outputs, name=name or default)


def vgg(depth: int, num_classes: int = 10, input_shape=(32, 32, 3),
        bn_momentum: float = BN_MOMENTUM) -> keras.Model:
    """VGG-``depth`` with BatchNorm after every convolution, for 32x32 inputs."""
    check_vgg_depth(depth)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    conv_index = 0
    for item in VGG_LAYOUTS[depth]:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"pool{conv_index}")(x)
            continue
        conv_index += 1
        x = _conv(item, 3, 1, f"conv{conv_index}")(x)
        x = _batchnorm(f"bn{conv_index}", bn_momentum)(x)
        x = keras.layers.ReLU(name=f"relu{conv_index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="output", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"vgg{depth}")


def keras_resnet(depth: int, num_classes: int = 10, input_shape=(32, 32, 3),
                 bn_momentum: float = BN_MOMENTUM) -> keras.Model:
    """keras.applications ResNet-50/101/152, random weights, with bnlib's BatchNorm layers.

    The application is built as Keras ships it, then cloned with each BatchNormalization replaced
    by :class:`BatchNorm` (same epsilon, the requested momentum).  Its classifier is renamed
    ``output``.
    """
    check_keras_resnet_depth(depth)
    base = KERAS_RESNETS[depth](weights=None, include_top=True, input_shape=input_shape,
                                classes=num_classes, classifier_activation=None)

    def swap(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config.update(momentum=bn_momentum)
            return BatchNorm.from_config(config)
        if layer.name == "predictions":
            config.update(name="output", dtype="float32")  # float32 logits under mixed precision
        return layer.__class__.from_config(config)

    return keras.models.clone_model(base, clone_function=swap)


def build(name: str, num_classes: int = 10, input_shape=(32, 32, 3),
          bn_momentum: float = BN_MOMENTUM) -> keras.Model:
    """Build a model by name (see the module docstring), uncompiled, with random weights."""
    family, depth, width = parse_name(name)
    if family == "resnet":
        return cifar_resnet(depth, 1, num_classes, input_shape, bn_momentum)
    if family == "wrn":
        return cifar_resnet(depth, width, num_classes, input_shape, bn_momentum)
    if family == "vgg":
        return vgg(depth, num_classes, input_shape, bn_momentum)
    return keras_resnet(depth, num_classes, input_shape, bn_momentum)
