"""ResFace's local feature extractor (Sec. 3.1, Fig. 3), after EfficientFace's published design."""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.layers.batch_normalization import BatchNormalization
from fer_keras.serialization import register

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


@register
class LocalFeatureExtractor(keras.layers.Layer):
    """Local feature extractor: four face quadrants, each through its own small conv stack.

    ``Fea_conv1`` (an early feature map, ``[B, H, W, C]``, the stem output) is cut into
    four quadrants. Each quadrant goes through a 3x3 convolution with stride ``strides`` and
    ``C`` groups (EfficientFace's ``depthwise_conv(C, filters)``: each input channel gives
    ``filters / C`` outputs, so ``filters`` must be a multiple of ``C``), BN, ReLU, then a
    3x3 depthwise convolution, BN, ReLU. The four results are put back in place, giving
    ``Fea_local`` of Eq. 3.3, which the model adds to the modulated stage-2 features
    (``ChannelSpatialModulator``).
    Convolutions have no bias (BN follows); BN uses PyTorch's defaults (momentum 0.1
    there, 0.9 here; epsilon 1e-5). The ``C``-group convolution is a ``DepthwiseConv2D``
    with ``depth_multiplier = filters / C`` (the same operation and channel order): a
    native TensorFlow/TFLite op, where Keras runs a grouped ``Conv2D`` through XLA on CPU.

    Choices where the paper is vague (EfficientFace, Zhao et al. AAAI 2021, is the reference):

    - Upsampling/alignment. Fig. 3's caption says a ConvTranspose2d "upsamples" the local
      features; the text gives no size and EfficientFace has no transposed convolution. Here
      the alignment is done by construction: each quadrant's output tiles exactly its part
      of the stage-2 grid, so putting the four back in place raises the size from the
      quadrants' (``H/2s``) to the stage-2 map's (``H/s``) with no learned upsampling.
      A learned transposed convolution at stage-2 resolution would cost more than the
      paper's whole A -> A+B increment (Tables 1-4: +0.1 M parameters, +16.27 MFLOPs;
      e.g. a 3x3 one from 64 to 128 channels at 28x28 is 0.07 M weights and 58 M
      multiply-adds), so it is not what was measured either.
    - Alignment and odd sizes. Every convolution pads one zero pixel on each side
      (PyTorch's ``padding=1``, not Keras' asymmetric ``"same"`` at stride 2), so output
      pixel ``i`` is centred on input pixel ``i * strides`` and a side of length ``n``
      gives ``ceil(n / strides)`` outputs, as a strided stage-2 block. The top (left)
      quadrant takes ``strides * ceil(ceil(H / strides) / 2)`` rows (columns): a
      multiple of ``strides``, so the bottom (right) quadrant's outputs continue the same
      grid; for even ``H = 2 * strides * k`` this is EfficientFace's half split. Each
      side must therefore be longer than ``strides``.
    - Padding inside the face: each quadrant is padded on its own (as in EfficientFace),
      so no information crosses the quadrant borders.

    Args:
        filters: int. Output channels, the stage-2 width the result is added to; a
            multiple of the input channels.
        strides: int. Stride of the first convolution: the stem-to-stage-2 resolution
            ratio. Defaults to ``2``.
        kernel_initializer: str or initializer. For every convolution. Defaults to
            ``"he_normal"``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor, ``H`` and ``W`` larger than ``strides``, ``C``
            dividing ``filters``.
        training: bool. Batch-norm mode.

    Returns:
        ``[B, ceil(H / strides), ceil(W / strides), filters]``.

    Example:

    >>> LocalFeatureExtractor(128)(keras.random.normal((2, 56, 56, 64))).shape
    (2, 28, 28, 128)

    Reference:
        Z. Qu, D. Niu, "Leveraging ResNet and label distribution in advanced intelligent
        systems for facial expression recognition", Math. Biosci. Eng. 2023 (ResFace), Sec. 3.1, Fig. 3,
        ``Fea_local`` of Eq. 3.3; Z. Zhao, Q. Liu, F. Zhou, "Robust Lightweight Facial
        Expression Recognition Network with Label Distribution Training", AAAI 2021
        (EfficientFace), Sec. "Local-Feature Extractor".
    """

    def __init__(self, filters, strides=2, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters}")
        if int(strides) < 1:
            raise ValueError(f"strides must be a positive integer. Received: strides={strides}")
        self.filters = int(filters)
        self.strides = int(strides)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"LocalFeatureExtractor expects [B, H, W, C] with known C. Received: input_shape={input_shape}")
        for side in input_shape[1:3]:
            if side is not None and side <= self.strides:
                raise ValueError(
                    f"LocalFeatureExtractor needs H and W larger than strides={self.strides} to cut four quadrants. "
                    f"Received: input_shape={input_shape}"
                )
        in_channels = int(input_shape[-1])
        if self.filters % in_channels:
            raise ValueError(
                f"LocalFeatureExtractor needs filters={self.filters} to be a multiple of the input channels. "
                f"Received: input_shape={input_shape}"
            )
        self.convs, self.conv_bns, self.depthwise_convs, self.depthwise_bns = [], [], [], []
        for quadrant in QUADRANTS:
            conv = keras.layers.DepthwiseConv2D(
                3, strides=self.strides, depth_multiplier=self.filters // in_channels, use_bias=False,
                depthwise_initializer=self.kernel_initializer, name=f"{quadrant}_conv", dtype=self.dtype_policy,
            )
            depthwise = keras.layers.DepthwiseConv2D(
                3, use_bias=False, depthwise_initializer=self.kernel_initializer,
                name=f"{quadrant}_depthwise", dtype=self.dtype_policy,
            )
            conv.build((None, None, None, in_channels))
            depthwise.build((None, None, None, self.filters))
            self.convs.append(conv)
            self.depthwise_convs.append(depthwise)
            for bns, kind in ((self.conv_bns, "conv"), (self.depthwise_bns, "depthwise")):
                bn = BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{quadrant}_{kind}_bn", dtype=self.dtype_policy)
                bn.build((None, None, None, self.filters))
                bns.append(bn)

    def _split(self, side):
        """Rows (columns) of the top (left) quadrant: a multiple of ``strides``."""
        outputs = -(-side // self.strides)  # ceil(side / strides)
        return self.strides * -(-outputs // 2)

    def _branch(self, index, patch, training):
        pad = ((0, 0), (1, 1), (1, 1), (0, 0))
        x = ops.relu(self.conv_bns[index](self.convs[index](ops.pad(patch, pad)), training=training))
        return ops.relu(self.depthwise_bns[index](self.depthwise_convs[index](ops.pad(x, pad)), training=training))

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        top, left = self._split(shape[1]), self._split(shape[2])
        patches = (inputs[:, :top, :left], inputs[:, :top, left:], inputs[:, top:, :left], inputs[:, top:, left:])
        out = [self._branch(i, patch, training) for i, patch in enumerate(patches)]
        return ops.concatenate([ops.concatenate(out[:2], axis=2), ops.concatenate(out[2:], axis=2)], axis=1)

    def compute_output_shape(self, input_shape):
        height, width = (None if side is None else -(-side // self.strides) for side in input_shape[1:3])
        return (input_shape[0], height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
