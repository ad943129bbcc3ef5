"""Batch normalisation whose training step is one fused kernel on the TensorFlow backend."""

from __future__ import annotations


import keras

from fer_keras.serialization import register


@register
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a fused training path.

    It keeps Keras' class name on purpose: Keras stores the weights of a model's layer list
    under each layer's snake-cased class name (``layers/batch_normalization_3``), so models
    saved with Keras' layer (the shipped MrCAR) load into this one unchanged, and back.

    Keras 3 normalises with ``ops.moments`` and element-wise arithmetic, and under mixed
    bfloat16 first casts every input to float32 and back. On a 2-core CPU that costs about a
    quarter of MrCAR's busy step time (``benchmarks/profile_step.py``: Mul, SquaredDifference,
    Sum, Tile, Sub, AddN and their gradients). When training on the TensorFlow backend with
    4-D channels-last inputs (no mask, renorm or synchronisation) this layer calls
    ``tf.compat.v1.nn.fused_batch_norm`` instead: one ``FusedBatchNormV3`` forward and one
    ``FusedBatchNormGradV3`` backward, in the input's own dtype (bfloat16 stays bfloat16;
    statistics are float32 inside the kernel). The normalisation is the same (batch mean and
    biased variance; the kernel's Bessel-corrected variance is converted back for the moving
    average), so weights, configs and inference are those of Keras' layer. This is the one
    place a fer_keras layer calls ``tf`` directly; any other backend, or any other case,
    takes Keras' path.

    Args:
        As ``keras.layers.BatchNormalization``.

    Reference:
        S. Ioffe, C. Szegedy, "Batch Normalization", ICML 2015, Algorithm 1.
    """

    def _fused(self, inputs, training, mask) -> bool:
        return bool(
            training and self.trainable and mask is None and keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
            and self.axis in (-1, 3) and not self.renorm and not self.synchronized
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(inputs, scale, offset, epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(tf.cast(self.moving_mean, "float32") * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(tf.cast(self.moving_variance, "float32") * momentum + variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)
