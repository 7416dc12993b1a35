"""A BatchNormalization layer that runs TensorFlow's fused kernel when training.

Keras 3's ``BatchNormalization`` on the TensorFlow backend composes the normalisation out of
elementwise ops.  TensorFlow has a fused kernel (one op forward, one op backward) that Keras 2 used;
Keras 3 cannot be asked to use it, hence this subclass.  How much it wins depends on TensorFlow's
CPU kernels (benchmarks/bench_step.py and profile_step.py, 2-core AVX2 EPYC, ResNet-20, batch 128):
with oneDNN's kernels (bnlib's default, see ``bnlib/runtime.py``) one BN layer's forward+backward
is 2.1-2.5x faster and a BN-only training step 1.27-1.36x faster than with Keras' layer; with
TensorFlow's Eigen kernels (TF_ENABLE_ONEDNN_OPTS=0) the fused gradient kernel is slow and the
step gains nothing.  See the README's performance section for the latest measured table.

Everything else is Keras' own layer: the same weights, the same configuration, the same
serialisation, the same inference path.  Outputs, gradients and moving statistics equal Keras'
layer (tests/test_batchnorm.py compares them); only the training-mode arithmetic is fused.
"""
from __future__ import annotations

from .runtime import keras, tf


@keras.saving.register_keras_serializable(package="bnlib")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with TensorFlow's fused kernel in training mode.

    The fused path is taken for 4-D channels-last inputs without a mask, renorm or
    synchronisation; anything else falls back to Keras' implementation.
    """

    def _can_fuse(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._can_fuse(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        # The fused kernel accepts float16/bfloat16 activations with float32 parameters, so
        # mixed precision needs no up-cast of the (large) activation tensor.
        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            tf.cast(self.gamma.value, tf.float32),
            tf.cast(self.beta.value, tf.float32),
            epsilon=self.epsilon,
            is_training=True,
        )
        # The fused kernel returns the Bessel-corrected variance; Keras' layer (and the moving
        # average it keeps) uses the biased one.  Keras 2 removed the correction the same way.
        # A static shape (the usual case) turns the correction into a constant: no shape ops.
        if x.shape[:-1].is_fully_defined():
            count = float(x.shape[:-1].num_elements())
        else:
            count = tf.cast(tf.reduce_prod(tf.shape(x, out_type=tf.int64)[:-1]), tf.float32)
        variance = variance * ((count - 1.0) / count)
        rate = 1.0 - float(self.momentum)
        self.moving_mean.assign_sub((self.moving_mean - mean) * rate)
        self.moving_variance.assign_sub((self.moving_variance - variance) * rate)
        return tf.cast(outputs, self.compute_dtype)
