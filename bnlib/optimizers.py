"""SGD and Adam with weight decay in the paper's form: an L2 term added to each gradient.

The paper's code is PyTorch, whose optimizers add ``weight_decay * w`` to the gradient before the
update (before the momentum step, for SGD).  Keras' own ``weight_decay`` argument is the decoupled
form instead (``w -= lr * weight_decay * w`` after the step, as AdamW): with SGD and momentum 0.9
the coupled form decays weights ten times faster at the same coefficient, since the momentum
buffer accumulates the L2 term (steady state: ``lr * weight_decay / (1 - momentum)`` per step).
Keras offers no coupled form, hence these two small subclasses.  The term is added in
``update_step``, which runs after the gradients of all replicas have been summed, so that under
tf.distribute it counts once, not once per device; gradient clipping comes before it, as with
``torch.nn.utils.clip_grad_norm_`` followed by ``optimizer.step()``.
"""
from __future__ import annotations

from .runtime import keras


class _CoupledWeightDecay:
    """Adds ``weight_decay * variable`` to the gradient of every variable the optimizer trains."""

    def __init__(self, *args, coupled_weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.coupled_weight_decay:
            decay = keras.ops.cast(self.coupled_weight_decay, gradient.dtype)
            gradient = gradient + decay * keras.ops.cast(variable, gradient.dtype)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


@keras.saving.register_keras_serializable(package="bnlib")
class SGD(_CoupledWeightDecay, keras.optimizers.SGD):
    """keras.optimizers.SGD with torch.optim.SGD's weight decay (``coupled_weight_decay``)."""


@keras.saving.register_keras_serializable(package="bnlib")
class Adam(_CoupledWeightDecay, keras.optimizers.Adam):
    """keras.optimizers.Adam with torch.optim.Adam's weight decay (``coupled_weight_decay``)."""


def describe(optimizer: keras.optimizers.Optimizer) -> str:
    """One line a result records: the optimizer and the form of its weight decay, e.g.
    ``bnlib.optimizers.SGD (momentum 0.9; weight decay 0.0001 as an L2 term on the gradient)``."""
    details = []
    if getattr(optimizer, "momentum", None):
        details.append(f"momentum {float(optimizer.momentum):g}")
    if getattr(optimizer, "coupled_weight_decay", 0.0):
        details.append(f"weight decay {optimizer.coupled_weight_decay:g} as an L2 term on the gradient")
    if optimizer.weight_decay:
        details.append(f"decoupled weight decay {optimizer.weight_decay:g}")
    if optimizer.global_clipnorm:
        details.append(f"gradients clipped to global norm {optimizer.global_clipnorm:g}")
    name = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    return f"{name} ({'; '.join(details)})" if details else name
