"""FAML's internal feature fusion: the first convolution as three, two of them on face sub-areas."""

from __future__ import annotations

import math

import keras
from keras import ops

from fer_keras.serialization import register

# (top, left, bottom, right) as fractions of the face crop, after the "three sections, five
# eyes" proportions of a frontal face: the height splits into three equal sections (hairline
# to brows, brows to nose base, nose base to chin), the width into five eye widths.
# "eyes": brows and eyes, from a fifth of the height to just past the middle, across the
# inner four fifths; "mouth": the lowest section and a little above (nose tip, mouth, chin),
# across the three middle eye widths. Aligned 48x48 FER2013 faces put the eyes near row 19
# and the mouth near row 36 of 48.
FACE_AREAS = {"eyes": (0.2, 0.1, 0.55, 0.9), "mouth": (0.6, 0.2, 1.0, 0.8)}


@register
class FacialAreaFusion(keras.layers.Layer):
    """Three convolutions for one: the whole face, plus two face sub-areas fused in place.

    The main convolution sees the whole input; each area convolution (same kernel size,
    stride and filters, its own weights) sees only its crop of the input, zero-padded at the
    crop's borders, and its output is added at the crop's place in the main output grid,
    times a scalar weight:
    ``y = conv(x) + sum_a w_a * place_a(conv_a(crop_a(x)))``
    (the "weighted addition" of Sec. 3.1: the yellow and blue maps of Fig. 1 fused into the
    red one). ``w_a`` are learnable (``trainable_area_weights``), initialised to
    ``area_weight``; the main map's weight is 1, so with ``w_a = 0`` the layer is a plain
    convolution.

    Every convolution pads ``kernel_size // 2`` zeros on each side (PyTorch's padding, as
    ``fer_keras.models.resnet``), so output pixel ``i`` is centred on input pixel
    ``i * strides`` and a side of ``n`` gives ``ceil(n / strides)`` outputs. An area
    ``(top, left, bottom, right)`` (fractions) covers output rows
    ``floor(top * Ho) .. ceil(bottom * Ho)`` (likewise columns); its crop starts on the
    input pixel under its first output row, so its outputs land exactly on the main grid.

    Args:
        filters: int. Output channels.
        kernel_size: int. Odd. Defaults to ``3``.
        strides: int. Defaults to ``1``.
        areas: dict name -> ``(top, left, bottom, right)`` in [0, 1]. Defaults to
            ``FACE_AREAS`` (eyes and mouth by facial proportions, see the module constant).
        area_weight: float. Initial weight of every area map. Defaults to ``0.5``.
        trainable_area_weights: bool. Learn the weights. Defaults to ``True``.
        use_bias: bool. Convolution biases. Defaults to ``False`` (batch norm follows).
        kernel_initializer: str or initializer. Defaults to ``"he_normal"``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` with ``H`` and ``W`` known.

    Returns:
        ``[B, ceil(H / strides), ceil(W / strides), filters]``.

    Example:

    >>> FacialAreaFusion(64, 3, 2)(keras.random.normal((2, 44, 44, 1))).shape
    (2, 22, 22, 64)

    Reference:
        G. Zhou, Y. Xie, W. Tian, "Multi Loss-based Feature Fusion and Top Two Voting
        Ensemble Decision Strategy for Facial Expression Recognition in the Wild"
        (``../shared/papers/faml_fga_t2v_ensemble.txt``), Sec. 3.1 and Fig. 1 (FA's
        internal feature fusion).
    """

    def __init__(self, filters, kernel_size=3, strides=1, areas=None, area_weight=0.5, trainable_area_weights=True, use_bias=False, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1 or int(strides) < 1:
            raise ValueError(f"filters and strides must be positive integers. Received: filters={filters}, strides={strides}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer. Received: kernel_size={kernel_size}")
        areas = dict(FACE_AREAS if areas is None else areas)
        if not areas:
            raise ValueError("areas must name at least one sub-area.")
        for name, box in areas.items():
            top, left, bottom, right = (float(v) for v in box)
            if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
                raise ValueError(f"An area is (top, left, bottom, right) with 0 <= top < bottom <= 1 and 0 <= left < right <= 1. Received: {name}={box}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.areas = {name: tuple(float(v) for v in box) for name, box in areas.items()}
        self.area_weight = float(area_weight)
        self.trainable_area_weights = bool(trainable_area_weights)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _conv(self, name, in_channels):
        conv = keras.layers.Conv2D(self.filters, self.kernel_size, self.strides, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer, name=name, dtype=self.dtype_policy)
        conv.build((None, None, None, in_channels))
        return conv

    def area_cells(self, height, width):
        """``{name: (row0, col0, row1, col1)}``: each area's cells of the output grid."""
        rows, cols = -(-height // self.strides), -(-width // self.strides)
        cells = {}
        for name, (top, left, bottom, right) in self.areas.items():
            r0, c0 = min(math.floor(top * rows), rows - 1), min(math.floor(left * cols), cols - 1)
            cells[name] = (r0, c0, max(math.ceil(bottom * rows), r0 + 1), max(math.ceil(right * cols), c0 + 1))
        return cells

    def build(self, input_shape):
        if len(input_shape) != 4 or None in input_shape[1:]:
            raise ValueError(f"FacialAreaFusion expects [B, H, W, C] with H, W and C known. Received: input_shape={input_shape}")
        in_channels = int(input_shape[-1])
        self.main_conv = self._conv("main_conv", in_channels)
        self.area_convs = [self._conv(f"{name}_conv", in_channels) for name in self.areas]
        self.area_weights = self.add_weight(name="area_weights", shape=(len(self.areas),), initializer=keras.initializers.Constant(self.area_weight), trainable=self.trainable_area_weights)

    def _padded_conv(self, conv, x):
        pad = self.kernel_size // 2
        return conv(ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))))

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        rows, cols = -(-height // self.strides), -(-width // self.strides)
        fused = self._padded_conv(self.main_conv, inputs)
        weights = ops.cast(self.area_weights, fused.dtype)
        for index, (conv, (r0, c0, r1, c1)) in enumerate(zip(self.area_convs, self.area_cells(height, width).values())):
            crop = inputs[:, r0 * self.strides : r1 * self.strides, c0 * self.strides : c1 * self.strides, :]
            area = self._padded_conv(conv, crop)
            fused = fused + weights[index] * ops.pad(area, ((0, 0), (r0, rows - r1), (c0, cols - c1), (0, 0)))
        return fused

    def compute_output_shape(self, input_shape):
        height, width = (None if side is None else -(-side // self.strides) for side in input_shape[1:3])
        return (input_shape[0], height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "areas": {name: list(box) for name, box in self.areas.items()},
                "area_weight": self.area_weight,
                "trainable_area_weights": self.trainable_area_weights,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
