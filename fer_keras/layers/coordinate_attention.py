"""Coordinate attention (Hou et al., CVPR 2021), the CA-Net of MrCAR (Eq. 1-7)."""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.layers.batch_normalization import BatchNormalization
from fer_keras.serialization import register


@register
class CoordinateAttention(keras.layers.Layer):
    """Coordinate attention: channel attention factorised along height and width.

    The input ``x`` (``[B, H, W, C]``, channels last) is average-pooled along the width
    (``z^h``, ``[B, H, 1, C]``, Eq. 2) and along the height (``z^w``, ``[B, 1, W, C]``,
    Eq. 3). The two are concatenated along the spatial axis (``[B, H + W, 1, C]``), passed
    through a shared 1x1 convolution ``F_1`` to ``max(min_channels, C // reduction)``
    channels, batch normalisation and h-swish (``delta`` of Eq. 4; Hou et al.'s code uses
    h-swish, MrCAR only says "nonlinear activation"). The result is split back into
    ``f^h`` and ``f^w``, each mapped to ``C`` channels by its own 1x1 convolution and a
    sigmoid (Eq. 5-6), and the output is ``x * g^h * g^w`` (Eq. 7).

    As in the reference implementation the three 1x1 convolutions have biases and the
    batch normalisation uses PyTorch's defaults (momentum 0.1 there, 0.9 here; epsilon 1e-5).

    Args:
        reduction: int. Channel reduction ratio ``r`` of Eq. 4. Defaults to ``32``
            (Hou et al.).
        min_channels: int. Lower bound of the reduced width. Defaults to ``8`` (Hou et al.).
        kernel_initializer: str or initializer. For the three convolutions. Defaults to
            ``"glorot_uniform"``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor.
        training: bool. Batch-norm mode.

    Returns:
        A tensor of the input's shape.

    Example:

    >>> x = keras.random.normal((2, 6, 5, 16))
    >>> CoordinateAttention(reduction=4)(x).shape
    (2, 6, 5, 16)

    Reference:
        Q. Hou, D. Zhou, J. Feng, "Coordinate Attention for Efficient Mobile Network
        Design", CVPR 2021; J. Lan et al., "Expression Recognition Based on
        Multi-Regional Coordinate Attention Residuals" (MrCAR), IEEE Access 11, 2023,
        Sec. III-B-1, Eq. 1-7.
    """

    def __init__(self, reduction=32, min_channels=8, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"reduction must be a positive integer. Received: reduction={reduction}")
        if int(min_channels) < 1:
            raise ValueError(f"min_channels must be a positive integer. Received: min_channels={min_channels}")
        self.reduction = int(reduction)
        self.min_channels = int(min_channels)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"CoordinateAttention expects [B, H, W, C] with known C. Received: input_shape={input_shape}")
        channels = int(input_shape[-1])
        self.reduced_channels = max(self.min_channels, channels // self.reduction)
        common = dict(kernel_size=1, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)
        self.conv_reduce = keras.layers.Conv2D(self.reduced_channels, name="conv_reduce", **common)
        self.bn = BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn", dtype=self.dtype_policy)
        self.conv_h = keras.layers.Conv2D(channels, name="conv_h", **common)
        self.conv_w = keras.layers.Conv2D(channels, name="conv_w", **common)
        self.conv_reduce.build((None, None, 1, channels))
        self.bn.build((None, None, 1, self.reduced_channels))
        self.conv_h.build((None, None, 1, self.reduced_channels))
        self.conv_w.build((None, None, 1, self.reduced_channels))

    def call(self, inputs, training=None):
        height = ops.shape(inputs)[1]
        z_h = ops.mean(inputs, axis=2, keepdims=True)  # [B, H, 1, C]  Eq. 2
        z_w = ops.transpose(ops.mean(inputs, axis=1, keepdims=True), (0, 2, 1, 3))  # [B, W, 1, C]  Eq. 3
        f = ops.concatenate([z_h, z_w], axis=1)  # [B, H + W, 1, C]
        f = ops.hard_swish(self.bn(self.conv_reduce(f), training=training))  # Eq. 4
        f_h, f_w = f[:, :height], f[:, height:]
        g_h = ops.sigmoid(self.conv_h(f_h))  # [B, H, 1, C]  Eq. 5
        g_w = ops.transpose(ops.sigmoid(self.conv_w(f_w)), (0, 2, 1, 3))  # [B, 1, W, C]  Eq. 6
        return inputs * g_h * g_w  # Eq. 7

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "min_channels": self.min_channels,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
