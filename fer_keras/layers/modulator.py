"""ResFace's channel-spatial modulator (Sec. 3.2, Fig. 4, Eq. 3.1-3.2)."""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.layers.batch_normalization import BatchNormalization
from fer_keras.serialization import register


@register
class ChannelSpatialModulator(keras.layers.Layer):
    """Channel-spatial modulator: ``x * sigmoid(Z_channel(x) + Z_spatial(x))``.

    Two parallel branches read the stage-2 features ``x`` (``[B, H, W, C]``):

    - channel (``Z_channel``, ``[B, 1, 1, C]``): global average pool, FC to
      ``C // reduction``, BN, ReLU, FC back to ``C``;
    - spatial (``Z_spatial``, ``[B, H, W, 1]``): 1x1 convolution to ``C // reduction``,
      BN, ReLU, two 3x3 convolutions with dilation ``dilation`` (each BN, ReLU), and a
      1x1 convolution to one channel.

    Both are broadcast to ``[B, H, W, C]`` and summed; the heatmap is the sigmoid of the
    sum (Eq. 3.1) and the output is ``x * Z`` (Eq. 3.2). The layers, BN placement, biases
    and defaults (``reduction=16``, ``dilation=4``) are those of BAM (Park et al. 2018,
    the paper's [37]) and of EfficientFace's modulator, which Fig. 4 follows ("one GAP
    layer and two FC layers", "two 1x1 layers and two 3x3 layers"); BN uses PyTorch's
    defaults (momentum 0.1 there, 0.9 here; epsilon 1e-5).

    The combination follows Eq. 3.1, not its sources: EfficientFace computes
    ``x * sigmoid(Z_channel * Z_spatial)`` (a product inside the sigmoid) and BAM
    ``x * (1 + sigmoid(Z_channel + Z_spatial))`` (a residual gate); ResFace sums and gates
    without the residual. ``heatmap`` returns ``Z`` so tests and plots can read it.

    Args:
        reduction: int. Width ratio of both branches' bottlenecks (``C // reduction``
            channels; ``C`` must be at least ``reduction``). Defaults to ``16`` (BAM,
            EfficientFace).
        dilation: int. Dilation of the two 3x3 convolutions. Defaults to ``4`` (BAM,
            EfficientFace).
        kernel_initializer: str or initializer. For every FC and convolution. Defaults to
            ``"glorot_uniform"``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor with ``C >= reduction``.
        training: bool. Batch-norm mode.

    Returns:
        A tensor of the input's shape.

    Example:

    >>> ChannelSpatialModulator()(keras.random.normal((2, 28, 28, 128))).shape
    (2, 28, 28, 128)

    Reference:
        Z. Qu, D. Niu, "Leveraging ResNet and label distribution in advanced intelligent
        systems for facial expression recognition", Math. Biosci. Eng. 2023 (ResFace), Sec. 3.2, Fig. 4,
        Eq. 3.1-3.2; J. Park, S. Woo, J.-Y. Lee, I. S. Kweon, "BAM: Bottleneck Attention
        Module", BMVC 2018; Z. Zhao, Q. Liu, F. Zhou, "Robust Lightweight Facial Expression
        Recognition Network with Label Distribution Training", AAAI 2021 (EfficientFace).
    """

    def __init__(self, reduction=16, dilation=4, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"reduction must be a positive integer. Received: reduction={reduction}")
        if int(dilation) < 1:
            raise ValueError(f"dilation must be a positive integer. Received: dilation={dilation}")
        self.reduction = int(reduction)
        self.dilation = int(dilation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _bn(self, name, width, rank):
        bn = BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=self.dtype_policy)
        bn.build((None,) * (rank - 1) + (width,))
        return bn

    def _conv(self, filters, kernel_size, name, in_channels, dilation=1):
        conv = keras.layers.Conv2D(
            filters, kernel_size, padding="same", dilation_rate=dilation,
            kernel_initializer=self.kernel_initializer, name=name, dtype=self.dtype_policy,
        )
        conv.build((None, None, None, in_channels))
        return conv

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"ChannelSpatialModulator expects [B, H, W, C] with known C. Received: input_shape={input_shape}")
        channels = int(input_shape[-1])
        if channels < self.reduction:
            raise ValueError(
                f"ChannelSpatialModulator needs at least reduction={self.reduction} channels. Received: input_shape={input_shape}"
            )
        mid = self.reduced_channels = channels // self.reduction
        dense = dict(kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)
        self.channel_fc1 = keras.layers.Dense(mid, name="channel_fc1", **dense)
        self.channel_fc2 = keras.layers.Dense(channels, name="channel_fc2", **dense)
        self.channel_fc1.build((None, channels))
        self.channel_fc2.build((None, mid))
        self.channel_bn = self._bn("channel_bn", mid, rank=2)
        self.spatial_reduce = self._conv(mid, 1, "spatial_reduce", channels)
        self.spatial_reduce_bn = self._bn("spatial_reduce_bn", mid, rank=4)
        self.spatial_dilated = [self._conv(mid, 3, f"spatial_dilated_{i}", mid, self.dilation) for i in range(2)]
        self.spatial_dilated_bns = [self._bn(f"spatial_dilated_{i}_bn", mid, rank=4) for i in range(2)]
        self.spatial_out = self._conv(1, 1, "spatial_out", mid)

    def _channel(self, inputs, training):
        z = self.channel_fc1(ops.mean(inputs, axis=(1, 2)))
        z = self.channel_fc2(ops.relu(self.channel_bn(z, training=training)))
        return z[:, None, None, :]  # [B, 1, 1, C]

    def _spatial(self, inputs, training):
        z = ops.relu(self.spatial_reduce_bn(self.spatial_reduce(inputs), training=training))
        for conv, bn in zip(self.spatial_dilated, self.spatial_dilated_bns):
            z = ops.relu(bn(conv(z), training=training))
        return self.spatial_out(z)  # [B, H, W, 1]

    def heatmap(self, inputs, training=None):
        """``Z`` of Eq. 3.1: ``sigmoid(Z_channel + Z_spatial)``, shape ``[B, H, W, C]``."""
        if not self.built:
            self.build(tuple(inputs.shape))
        return ops.sigmoid(self._channel(inputs, training) + self._spatial(inputs, training))

    def call(self, inputs, training=None):
        return inputs * self.heatmap(inputs, training=training)  # Eq. 3.2

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "dilation": self.dilation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
