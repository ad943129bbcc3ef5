"""MrCAR's coordinate attention residual block (``CARBlock``) and its down-sampling form
(``DSBlock``), Fig. 4 of Lan et al., IEEE Access 2023.

Fig. 4, as the text describes it: a 1x1 convolution reduces the channels (BN, ReLU); two
parallel branches, a 1x1 and a 3x3 convolution; their outputs are concatenated; coordinate
attention; a 1x1 convolution restores the width; the shortcut is added; ReLU. For stride 2
"the 1x1 convolution at step size 2" is replaced by "a 1x1 convolution at step size 1 and
a maximum pooling of size 3x3 at step size 2".

Where the paper is silent we chose (and ``tests/layers/test_car_block.py`` pins):

- Widths. Table 1 gives only the block outputs (128, 256, 512). The bottleneck width is
  ``filters // bottleneck_ratio`` (ResNet's 4), and *each* branch has that width, so the
  concatenation (and the coordinate attention) has ``2 * filters // bottleneck_ratio``
  channels; the 1x1 expansion maps it to ``filters``.
- BN/ReLU. Every convolution is followed by BN; the reduce and the two branch
  convolutions by ReLU too; the expansion is followed by BN only (ReLU after the add, as
  in ResNet v1 and as Fig. 4's text says). Convolutions have no bias (BN follows).
- Down-sampling. In a ResNet v1 down-sampling bottleneck both the main path's first 1x1
  and the projection shortcut's 1x1 have stride 2; both are replaced: the main path is
  1x1 reduce (stride 1) - BN - ReLU - 3x3 max-pool stride 2 - branches, and the shortcut
  is a 3x3 max-pool stride 2 (then a projection if the width changes). Pooling uses
  ``"same"`` padding, so 22 -> 11 -> 6 -> 3 as in Table 1.
- Shortcut. Identity when the width and resolution match; when the width changes
  (every ``CARBlock`` of Table 1: 64 -> 128, 128 -> 256, 256 -> 512) a 1x1 convolution + BN
  projection. A ``DSBlock`` of Table 1 keeps its width, so its shortcut is the max-pool
  alone: no parameters ("it also does not increase the complexity of the network").
"""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.layers.batch_normalization import BatchNormalization
from fer_keras.layers.coordinate_attention import CoordinateAttention
from fer_keras.serialization import register


class _CoordinateAttentionResidual(keras.layers.Layer):
    """Shared implementation; ``strides`` is fixed by the public subclasses."""

    strides = 1

    def __init__(
        self,
        filters,
        bottleneck_ratio=4,
        use_attention=True,
        reduction=32,
        min_channels=8,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters}")
        if int(bottleneck_ratio) < 1 or int(filters) // int(bottleneck_ratio) < 1:
            raise ValueError(
                f"bottleneck_ratio must be a positive integer not larger than filters. "
                f"Received: bottleneck_ratio={bottleneck_ratio}"
            )
        self.filters = int(filters)
        self.bottleneck_ratio = int(bottleneck_ratio)
        self.use_attention = bool(use_attention)
        self.reduction = int(reduction)
        self.min_channels = int(min_channels)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bottleneck_channels = self.filters // self.bottleneck_ratio

    def _conv(self, filters, kernel_size, name):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name=name,
            dtype=self.dtype_policy,
        )

    def _bn(self, name):
        return BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=self.dtype_policy)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{type(self).__name__} expects [B, H, W, C] with known C. Received: input_shape={input_shape}")
        in_channels = int(input_shape[-1])
        mid = self.bottleneck_channels
        self.reduce_conv, self.reduce_bn = self._conv(mid, 1, "reduce_conv"), self._bn("reduce_bn")
        self.branch1_conv, self.branch1_bn = self._conv(mid, 1, "branch1x1_conv"), self._bn("branch1x1_bn")
        self.branch3_conv, self.branch3_bn = self._conv(mid, 3, "branch3x3_conv"), self._bn("branch3x3_bn")
        self.expand_conv, self.expand_bn = self._conv(self.filters, 1, "expand_conv"), self._bn("expand_bn")
        self.reduce_conv.build((None, None, None, in_channels))
        self.reduce_bn.build((None, None, None, mid))
        for conv, bn in ((self.branch1_conv, self.branch1_bn), (self.branch3_conv, self.branch3_bn)):
            conv.build((None, None, None, mid))
            bn.build((None, None, None, mid))
        self.attention = None
        if self.use_attention:
            self.attention = CoordinateAttention(self.reduction, self.min_channels, name="coordinate_attention", dtype=self.dtype_policy)
            self.attention.build((None, None, None, 2 * mid))
        self.expand_conv.build((None, None, None, 2 * mid))
        self.expand_bn.build((None, None, None, self.filters))
        self.pool = self.shortcut_pool = None
        if self.strides != 1:
            self.pool = keras.layers.MaxPooling2D(3, self.strides, padding="same", name="pool", dtype=self.dtype_policy)
            self.shortcut_pool = keras.layers.MaxPooling2D(3, self.strides, padding="same", name="shortcut_pool", dtype=self.dtype_policy)
        self.shortcut_conv = self.shortcut_bn = None
        if in_channels != self.filters:
            self.shortcut_conv, self.shortcut_bn = self._conv(self.filters, 1, "shortcut_conv"), self._bn("shortcut_bn")
            self.shortcut_conv.build((None, None, None, in_channels))
            self.shortcut_bn.build((None, None, None, self.filters))

    def call(self, inputs, training=None):
        x = ops.relu(self.reduce_bn(self.reduce_conv(inputs), training=training))
        if self.pool is not None:
            x = self.pool(x)
        b1 = ops.relu(self.branch1_bn(self.branch1_conv(x), training=training))
        b3 = ops.relu(self.branch3_bn(self.branch3_conv(x), training=training))
        x = ops.concatenate([b1, b3], axis=-1)
        if self.attention is not None:
            x = self.attention(x, training=training)
        x = self.expand_bn(self.expand_conv(x), training=training)
        shortcut = inputs
        if self.shortcut_pool is not None:
            shortcut = self.shortcut_pool(shortcut)
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_bn(self.shortcut_conv(shortcut), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        s = self.strides
        height = None if height is None else -(-height // s)
        width = None if width is None else -(-width // s)
        return (batch, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "bottleneck_ratio": self.bottleneck_ratio,
                "use_attention": self.use_attention,
                "reduction": self.reduction,
                "min_channels": self.min_channels,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


_ARGS_DOC = """
    Args:
        filters: int. Output channels (Table 1: 128, 256, 512).
        bottleneck_ratio: int. The reduce convolution and each branch have
            ``filters // bottleneck_ratio`` channels (the concatenation twice that).
            Defaults to ``4`` (ResNet bottleneck; the paper gives no width).
        use_attention: bool. Apply coordinate attention after the concatenation; ``False``
            is the MrCAR-CA ablation of Table 6. Defaults to ``True``.
        reduction: int. Coordinate attention reduction ratio. Defaults to ``32``.
        min_channels: int. Coordinate attention minimum width. Defaults to ``8``.
        kernel_initializer: str or initializer. For every convolution except the
            attention's. Defaults to ``"he_normal"``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor.
        training: bool. Batch-norm mode.
"""


@register
class CARBlock(_CoordinateAttentionResidual):
    __doc__ = (
        """Coordinate attention residual block, stride 1 (MrCAR's CARblock).

    ``1x1 reduce-BN-ReLU -> [1x1-BN-ReLU || 3x3-BN-ReLU] -> concat -> coordinate attention
    -> 1x1 expand-BN -> + shortcut -> ReLU``. The shortcut is the identity, or a 1x1
    convolution + BN when the input width differs from ``filters``. See the module
    docstring for the choices the paper leaves open.
"""
        + _ARGS_DOC
        + """
    Returns:
        ``[B, H, W, filters]``.

    Example:

    >>> CARBlock(128)(keras.random.normal((2, 22, 22, 64))).shape
    (2, 22, 22, 128)

    Reference:
        J. Lan et al., "Expression Recognition Based on Multi-Regional Coordinate
        Attention Residuals", IEEE Access 11, 2023, Sec. III-B-2, Fig. 4 (stride 1),
        Table 1; attention Eq. 1-7.
    """
    )

    strides = 1


@register
class DSBlock(_CoordinateAttentionResidual):
    __doc__ = (
        """Down-sampling coordinate attention residual block, stride 2 (MrCAR's DSblock).

    As ``CARBlock``, with the strided 1x1 convolutions of a ResNet down-sampling block
    replaced by stride-1 1x1 convolutions and 3x3 max-pooling with stride 2 (Fig. 4): the
    main path pools right after the reduce convolution's ReLU, the shortcut pools the
    input (then projects it if the width changes).
"""
        + _ARGS_DOC
        + """
    Returns:
        ``[B, ceil(H / 2), ceil(W / 2), filters]``.

    Example:

    >>> DSBlock(128)(keras.random.normal((2, 22, 22, 128))).shape
    (2, 11, 11, 128)

    Reference:
        J. Lan et al., "Expression Recognition Based on Multi-Regional Coordinate
        Attention Residuals", IEEE Access 11, 2023, Sec. III-B-2, Fig. 4 (stride 2),
        Table 1; attention Eq. 1-7.
    """
    )

    strides = 2
