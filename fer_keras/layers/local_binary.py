"""Local binary convolution (``LocalBinaryConv2D``) and LBAN's local binary standard layer
(``LBSL``), Sec. 2.1 of Li et al., "LBAN-IL", Neurocomputing 432, 2021, after LBCNN
(Juefei-Xu, Boddeti, Savvides, CVPR 2017).

The LBC layer (Sec. 2.1, "consists of two convolutional layers according to LBCNN"):
a fixed 3x3 convolution whose kernels are drawn once and never trained, a ReLU (LBCNN used
a sigmoid; LBAN uses ReLU), then a learnable 1x1 convolution that mixes the ``weight_size``
anchor maps into ``filters`` channels.

Where the paper is silent we chose (``tests/layers/test_local_binary.py`` pins):

- Kernel values. Sparsity 0.5 means "half of all parameters are randomly assigned to 0,
  and the other half are assigned to 1 or -1" (Sec. 2.1): exactly ``round(sparsity * n)``
  zeros at the positions of a seeded permutation (so every kernel has the requested
  sparsity, not only in expectation), the other entries +1 or -1 by a fair seeded Bernoulli
  draw (:func:`local_binary_kernel`). The kernels are a non-trainable weight: no gradient,
  untouched by the optimiser, saved in ``.keras`` files (a loaded model uses the saved
  kernels, not a new draw). ``seed`` is part of the config, so ``from_config`` draws the
  same kernels too.
- Number of anchor filters (LBCNN's ``numWeights``, the paper's "weight size", "the
  transition channels between the first convolutional layer and the second one"):
  ``weight_size=None`` uses ``filters``, as Fig. 2's first LBSL (input 64, output 128,
  weight size 128). The paper gives no other value.
- Normalisation. The paper names none; we follow LBCNN's module (``resnet-binary-felix.lua``:
  BN -> binary conv -> ReLU -> 1x1 conv -> + input) and pre-activation ResNets:
  ``LBSL`` normalises its input before the LBC layer and before the ReLU of the standard
  convolution. Convolutions have no bias (a BN follows the sum).
- Down-sampling. The LBSL before each attention block "plays an important role in
  reducing the expression size": ``strides=2`` applies to the anchor convolution (and to the
  projection shortcut).
- Skip connection. Identity when the width and resolution match, else a 1x1 convolution
  with the LBSL's stride (the paper: the skip parameters come from "the difference in the
  input and output channels of the LBSL before each LBAB").
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fer_keras.layers.batch_normalization import BatchNormalization
from fer_keras.serialization import register


def local_binary_kernel(shape, sparsity: float = 0.5, seed: int = 0) -> np.ndarray:
    """Fixed LBC kernel of ``shape`` (float32): exactly ``round(sparsity * n)`` zeros at seeded
    random positions, the other entries +1 or -1 with probability 1/2 each."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    kernel = np.where(rng.random(size) < 0.5, -1.0, 1.0)
    kernel[rng.permutation(size)[: round(sparsity * size)]] = 0.0
    return kernel.reshape(shape).astype("float32")


def check_sparsity(sparsity):
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1). Received: sparsity={sparsity}")


def resolve_seed(seed):
    """``seed``, or a fresh one (from NumPy's global generator, which
    ``keras.utils.set_random_seed`` seeds) stored in the config."""
    return int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)


def _downsampled(size, strides):
    return None if size is None else -(-size // strides)


@register
class LocalBinaryConv2D(keras.layers.Layer):
    """Local binary convolution: fixed sparse binary 3x3 anchors, ReLU, learnable 1x1.

    ``y = W_1x1 * relu(B * x)``, ``B`` a fixed ``3x3xC_inxweight_size`` kernel with entries in
    {-1, 0, +1} (see :func:`local_binary_kernel`), ``W_1x1`` learnable.

    Args:
        filters: int. Output channels (of the 1x1 convolution).
        weight_size: int or None. Number of binary anchor filters (the maps between the two
            convolutions). ``None``: ``filters`` (Fig. 2).
        strides: int. Stride of the anchor convolution. Defaults to ``1``.
        sparsity: float. Fraction of zero anchor entries. Defaults to ``0.5`` (Sec. 2.1).
        seed: int or None. Seed of the anchor draw; ``None`` draws one (kept in the config).
        activation: str or callable. Between the two convolutions. Defaults to ``"relu"``
            (LBAN; LBCNN used ``"sigmoid"``).
        kernel_initializer: str or initializer. Of the 1x1 convolution. Defaults to
            ``"he_normal"``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor.

    Returns:
        ``[B, ceil(H / strides), ceil(W / strides), filters]``.

    Example:

    >>> lbc = LocalBinaryConv2D(128, seed=0)
    >>> lbc(keras.random.normal((2, 20, 20, 64))).shape
    (2, 20, 20, 128)
    >>> len(lbc.trainable_weights), len(lbc.non_trainable_weights)
    (1, 1)

    Reference:
        F. Juefei-Xu, V. N. Boddeti, M. Savvides, "Local Binary Convolutional Neural
        Networks", CVPR 2017, Sec. 3; H. Li et al., "LBAN-IL", Neurocomputing 432, 2021,
        Sec. 2.1.
    """

    def __init__(self, filters, weight_size=None, strides=1, sparsity=0.5, seed=None, activation="relu", kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1 or (weight_size is not None and int(weight_size) < 1):
            raise ValueError(f"filters and weight_size must be positive integers. Received: filters={filters}, weight_size={weight_size}")
        check_sparsity(sparsity)
        self.filters = int(filters)
        self.weight_size = None if weight_size is None else int(weight_size)
        self.strides = int(strides)
        self.sparsity = float(sparsity)
        self.seed = resolve_seed(seed)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def anchors(self) -> int:
        """Number of binary anchor filters."""
        return self.weight_size or self.filters

    def build(self, input_shape):
        shape = (3, 3, int(input_shape[-1]), self.anchors)
        kernel = local_binary_kernel(shape, self.sparsity, self.seed)
        self.anchor_kernel = self.add_weight(
            name="anchor_kernel", shape=shape, initializer=lambda shape, dtype=None: ops.convert_to_tensor(kernel, dtype), trainable=False
        )
        self.pointwise = keras.layers.Conv2D(self.filters, 1, use_bias=False, kernel_initializer=self.kernel_initializer, name="pointwise", dtype=self.dtype_policy)
        self.pointwise.build((None, None, None, self.anchors))

    def call(self, inputs):
        anchors = ops.conv(inputs, self.anchor_kernel, strides=self.strides, padding="same")
        return self.pointwise(self.activation(anchors))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], _downsampled(input_shape[1], self.strides), _downsampled(input_shape[2], self.strides), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "weight_size": self.weight_size,
            "strides": self.strides,
            "sparsity": self.sparsity,
            "seed": self.seed,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config


@register
class LBSL(keras.layers.Layer):
    """Local binary standard layer: LBC layer, standard 3x3 convolution, skip connection.

    ``y = Conv3x3(relu(BN(h))) + shortcut(x)`` with ``h = LBC(BN(x))``; ``shortcut`` is the
    identity, or a 1x1 convolution where the width or resolution changes. The flags give the
    variants of Table 2: ``standard_conv=False`` drops the 3x3 convolution (LBCNN, LBC),
    ``skip=False`` the shortcut (LBC, LBAN-double-dagger), ``local_binary=False`` replaces
    the LBC layer by learnable 3x3 and 1x1 convolutions with the same ReLU between them
    (LBAN-dagger, -double-dagger; "SC" in Table 2).

    Args:
        filters: int. Output channels (of the LBC 1x1 and of the 3x3 convolution).
        weight_size: int or None. Anchor filters of the LBC layer (``None``: ``filters``).
        strides: int. 1, or 2 for the LBSL that reduces the resolution. Defaults to ``1``.
        local_binary: bool. Fixed binary anchors (``False``: a learnable 3x3). Defaults to
            ``True``.
        standard_conv: bool. The standard 3x3 convolution after the LBC layer. Defaults to
            ``True``.
        skip: bool. Add the (projected) input. Defaults to ``True``.
        sparsity: float. See ``LocalBinaryConv2D``. Defaults to ``0.5``.
        seed: int or None. Seed of the binary anchors.
        kernel_initializer: str or initializer. Of every learnable convolution. Defaults to
            ``"he_normal"``.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor.
        training: bool. Batch-norm mode.

    Returns:
        ``[B, ceil(H / strides), ceil(W / strides), filters]``, not activated (the next
        layer normalises it).

    Example:

    >>> LBSL(128, strides=2, seed=0)(keras.random.normal((2, 40, 40, 64))).shape
    (2, 20, 20, 128)

    Reference:
        H. Li et al., "LBAN-IL", Neurocomputing 432, 2021, Sec. 2.1, Fig. 2, Table 2.
    """

    def __init__(self, filters, weight_size=None, strides=1, local_binary=True, standard_conv=True, skip=True, sparsity=0.5, seed=None, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1 or int(strides) < 1:
            raise ValueError(f"filters and strides must be positive integers. Received: filters={filters}, strides={strides}")
        check_sparsity(sparsity)
        self.filters = int(filters)
        self.weight_size = None if weight_size is None else int(weight_size)
        self.strides = int(strides)
        self.local_binary = bool(local_binary)
        self.standard_conv = bool(standard_conv)
        self.skip = bool(skip)
        self.sparsity = float(sparsity)
        self.seed = resolve_seed(seed)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _conv(self, filters, kernel_size, name, strides=1):
        return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, kernel_initializer=self.kernel_initializer, name=name, dtype=self.dtype_policy)

    def _bn(self, name):
        return BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=self.dtype_policy)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        anchors = self.weight_size or self.filters
        self.lbc_bn = self._bn("lbc_bn")
        self.lbc_bn.build((None, None, None, in_channels))
        self.lbc = self.anchor_conv = self.pointwise_conv = None
        if self.local_binary:
            self.lbc = LocalBinaryConv2D(
                self.filters, self.weight_size, self.strides, self.sparsity, self.seed, kernel_initializer=self.kernel_initializer, name="lbc", dtype=self.dtype_policy
            )
            self.lbc.build((None, None, None, in_channels))
        else:
            self.anchor_conv = self._conv(anchors, 3, "anchor_conv", self.strides)
            self.pointwise_conv = self._conv(self.filters, 1, "pointwise_conv")
            self.anchor_conv.build((None, None, None, in_channels))
            self.pointwise_conv.build((None, None, None, anchors))
        self.conv_bn = self.conv = None
        if self.standard_conv:
            self.conv_bn, self.conv = self._bn("conv_bn"), self._conv(self.filters, 3, "conv")
            self.conv_bn.build((None, None, None, self.filters))
            self.conv.build((None, None, None, self.filters))
        self.projection = None
        if self.skip and (in_channels != self.filters or self.strides != 1):
            self.projection = self._conv(self.filters, 1, "projection", self.strides)
            self.projection.build((None, None, None, in_channels))

    def call(self, inputs, training=None):
        x = self.lbc_bn(inputs, training=training)
        x = self.lbc(x) if self.local_binary else self.pointwise_conv(ops.relu(self.anchor_conv(x)))
        if self.standard_conv:
            x = self.conv(ops.relu(self.conv_bn(x, training=training)))
        if self.skip:
            x = x + (inputs if self.projection is None else self.projection(inputs))
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], _downsampled(input_shape[1], self.strides), _downsampled(input_shape[2], self.strides), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "weight_size": self.weight_size,
            "strides": self.strides,
            "local_binary": self.local_binary,
            "standard_conv": self.standard_conv,
            "skip": self.skip,
            "sparsity": self.sparsity,
            "seed": self.seed,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
