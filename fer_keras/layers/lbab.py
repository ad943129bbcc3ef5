"""LBAN's local binary attention block (``LBAB``), Sec. 2.2 and Fig. 2 of Li et al.,
"LBAN-IL", Neurocomputing 432, 2021.

Two streams on the block input ``x`` (Sec. 2.2): a trunk LBSL ``T(x)`` ("forward LBSL
extracts the global expression features") and an encoder-decoder attention branch with
``samplings`` max-pool / deconvolution pairs (2, 1 and 0 in the three blocks) giving the
mask ``M(x)``. With ``e`` the encoder levels and ``d`` the decoder::

    e_0 = LBSL_0(x)
    e_i = LBSL_i(MaxPool(e_{i-1})),        i = 1 .. s         (encoder)
    d_s = e_s
    d_{i-1} = Deconv_i(d_i) + e_{i-1},     i = s .. 1         (decoder, skip connections)
    M = sigmoid(Conv1x1(relu(BN(d_0))))
    y = (1 + M) * T(x)

Where the paper is silent or loose we chose (``tests/layers/test_lbab.py`` pins):

- Combination. "attention features through activation and convolution and global
  features are added and multiplied": ``y = T + M * T = (1 + M) * T``, the attention
  residual learning of RAN (Wang et al., CVPR 2017, Eq. 3), which motivates the block.
  The mask has one value per pixel and channel (RAN's mixed attention); the 1x1
  convolution keeps the width.
- Levels. "an LBSL processes features in the sampling processing": one LBSL at every
  resolution the encoder visits, the full one included, so the 0-sampling block (LBAB-3)
  still has an LBSL in its attention branch and LBAB-2 "goes through one down-sampling
  and one up-sampling". "Skip-connections connect corresponding layer of encoder and
  decoder at the same level": the decoder adds ``e_{i-1}`` after each up-sampling, and
  outputs "attention features of the same resolution as inputs".
- Sampling operators. 3x3 max-pooling with stride 2 (RAN's) and a 3x3 transposed
  convolution with stride 2 ("deconvolution", no bias), both ``"same"``; the decoder
  crops an up-sampled map to its skip's size when the size was odd.
- BN before the mask's ReLU, as before every ReLU applied to a sum in this network
  (pre-activation; see ``fer_keras.layers.local_binary``).
"""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.layers.batch_normalization import BatchNormalization
from fer_keras.layers.local_binary import LBSL, check_sparsity, resolve_seed
from fer_keras.serialization import register


@register
class LBAB(keras.layers.Layer):
    """Local binary attention block: ``y = (1 + M(x)) * T(x)`` (see the module docstring).

    Args:
        filters: int. Width of the block (Sec. 2.2: 128, 256, 512).
        samplings: int. Max-pool / deconvolution pairs of the attention branch (2, 1, 0).
        weight_size: int or None. Anchor filters of every LBSL (``None``: ``filters``).
        local_binary, standard_conv, skip: bool. LBSL flags (Table 2 variants), applied to
            every LBSL of the block. Default ``True``.
        sparsity: float. Fraction of zero anchor entries. Defaults to ``0.5``.
        seed: int or None. The LBSLs use ``seed`` (trunk) and ``seed + 1 + i`` (level ``i``).
        kernel_initializer: str or initializer. Of every learnable convolution except the
            mask's. Defaults to ``"he_normal"``.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor.
        training: bool. Batch-norm mode.

    Returns:
        ``[B, H, W, filters]``.

    Example:

    >>> block = LBAB(128, samplings=2, seed=0)
    >>> block(keras.random.normal((2, 20, 20, 128))).shape
    (2, 20, 20, 128)
    >>> block.attention(keras.random.normal((2, 20, 20, 128))).shape  # M, in (0, 1)
    (2, 20, 20, 128)

    Reference:
        H. Li et al., "LBAN-IL", Neurocomputing 432, 2021, Sec. 2.2, Fig. 2; F. Wang et al.,
        "Residual Attention Network for Image Classification", CVPR 2017, Eq. 3.
    """

    def __init__(self, filters, samplings, weight_size=None, local_binary=True, standard_conv=True, skip=True, sparsity=0.5, seed=None, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1 or int(samplings) < 0:
            raise ValueError(f"filters must be positive and samplings >= 0. Received: filters={filters}, samplings={samplings}")
        check_sparsity(sparsity)
        self.filters = int(filters)
        self.samplings = int(samplings)
        self.weight_size = None if weight_size is None else int(weight_size)
        self.local_binary = bool(local_binary)
        self.standard_conv = bool(standard_conv)
        self.skip = bool(skip)
        self.sparsity = float(sparsity)
        self.seed = resolve_seed(seed)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _lbsl(self, name, seed):
        return LBSL(
            self.filters, self.weight_size, 1, self.local_binary, self.standard_conv, self.skip, self.sparsity, seed,
            kernel_initializer=self.kernel_initializer, name=name, dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        block_shape = (None, None, None, self.filters)
        self.trunk = self._lbsl("trunk", self.seed)
        self.trunk.build((None, None, None, in_channels))
        self.encoder = [self._lbsl(f"encoder{i}", self.seed + 1 + i) for i in range(self.samplings + 1)]
        for i, lbsl in enumerate(self.encoder):
            lbsl.build((None, None, None, in_channels) if i == 0 else block_shape)
        self.pools = [keras.layers.MaxPooling2D(3, 2, padding="same", name=f"pool{i}", dtype=self.dtype_policy) for i in range(1, self.samplings + 1)]
        self.deconvs = [
            keras.layers.Conv2DTranspose(self.filters, 3, 2, padding="same", use_bias=False, kernel_initializer=self.kernel_initializer, name=f"deconv{i}", dtype=self.dtype_policy)
            for i in range(1, self.samplings + 1)
        ]
        for deconv in self.deconvs:
            deconv.build(block_shape)
        self.mask_bn = BatchNormalization(momentum=0.9, epsilon=1e-5, name="mask_bn", dtype=self.dtype_policy)
        self.mask_bn.build(block_shape)
        self.mask_conv = keras.layers.Conv2D(self.filters, 1, activation="sigmoid", name="mask_conv", dtype=self.dtype_policy)
        self.mask_conv.build(block_shape)

    def attention(self, inputs, training=None):
        """The mask ``M(x)`` in (0, 1), ``[B, H, W, filters]`` (Fig. 6's attention features)."""
        levels = [self.encoder[0](inputs, training=training)]
        for pool, lbsl in zip(self.pools, self.encoder[1:]):
            levels.append(lbsl(pool(levels[-1]), training=training))
        x = levels[-1]
        for deconv, skip in zip(reversed(self.deconvs), reversed(levels[:-1])):
            shape = ops.shape(skip)
            x = deconv(x)[:, : shape[1], : shape[2], :] + skip
        return self.mask_conv(ops.relu(self.mask_bn(x, training=training)))

    def call(self, inputs, training=None):
        trunk = self.trunk(inputs, training=training)
        return (1.0 + self.attention(inputs, training=training)) * trunk

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "samplings": self.samplings,
            "weight_size": self.weight_size,
            "local_binary": self.local_binary,
            "standard_conv": self.standard_conv,
            "skip": self.skip,
            "sparsity": self.sparsity,
            "seed": self.seed,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
