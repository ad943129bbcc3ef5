"""FAML's attention block: ViT-style multi-head self-attention over a feature map's patches."""

from __future__ import annotations

import math

import keras
from keras import ops

from fer_keras.serialization import register


@register
class FeatureMapSelfAttention(keras.layers.Layer):
    """One pre-norm ViT encoder block on the patches of a feature map, with residuals.

    The map ``[B, H, W, C]`` is cut, as ViT cuts an image, into non-overlapping
    ``patch_size x patch_size`` patches, each one token of width ``D = patch_size**2 * C``
    (the patch's values, flattened); on the tokens ``x``:
    ``t = x + MHSA(LN(x) + P)`` then ``t = t + MLP(LN(t))``; the tokens are folded back into
    ``[B, H, W, C]``, so the residual adds the block's output to each patch in place. FAML
    inserts one after each of ResNet-18's first three residual stages (Sec. 3.1, Fig. 4: "we
    use ViT to enhance the weights of the features in the local region").

    Choices where the paper is silent (ViT, Dosovitskiy et al. ICLR 2021, decides):

    - Tokens: patches, as ViT's; ``patch_size=1`` makes every pixel a token. The patch
      is the token itself (ViT's linear patch embedding and a projection back would be two
      more ``D x D`` matrices and no more expressive before a residual on the map); a side
      not a multiple of ``patch_size`` is zero-padded at the bottom/right, and the padding
      cropped off after the block. ``fer_keras.models.r18fa`` picks the patch size per stage
      so that every block sees at most ``token_grid x token_grid`` tokens (14 x 14 at
      224 x 224 input, ViT-B/16's grid): attention over every pixel of a 56 x 56 (or, at
      48 x 48 input, 22 x 22) map costs, in memory traffic, far more than the ResNet.

    - Norm placement: pre-norm (LayerNorm before attention and before the MLP, epsilon
      1e-6), as ViT; the residual stream is the ResNet feature map itself.
    - Heads: ``num_heads`` (4 by default) of width ``D / num_heads``, Keras'
      ``MultiHeadAttention`` (scaled dot product, biases on every projection).
    - MLP: ViT's two-layer GELU MLP of width ``mlp_ratio * D`` (4 by default);
      ``mlp_ratio=0`` leaves attention alone.
    - Positional encoding: a learnable embedding ``P`` per token (ViT's 1-D learnable
      embedding, truncated-normal 0.02), added to the normalised tokens that enter the
      attention only, so the feature map carried by the residual is not shifted;
      ``position_embedding=False`` drops it (convolution padding already leaks position).
      With it, the layer is tied to its input's ``H x W``.

    Args:
        num_heads: int. Attention heads; must divide ``D``. Defaults to ``4``.
        mlp_ratio: float. MLP width as a multiple of ``D``; ``0`` for no MLP. Defaults to ``4``.
        patch_size: int. Side of a token's patch, in pixels of the map. Defaults to ``1``.
        position_embedding: bool. Learnable per-pixel position embedding. Defaults to ``True``.
        dropout: float. Dropout on the attention weights and in the MLP. Defaults to ``0``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: ``[B, H, W, C]`` tensor, ``H`` and ``W`` known.
        training: bool. Dropout mode.

    Returns:
        ``[B, H, W, C]``.

    Example:

    >>> FeatureMapSelfAttention(num_heads=4, patch_size=2)(keras.random.normal((2, 11, 11, 32))).shape
    (2, 11, 11, 32)

    Reference:
        G. Zhou, Y. Xie, W. Tian, "Multi Loss-based Feature Fusion and Top Two Voting
        Ensemble Decision Strategy for Facial Expression Recognition in the Wild"
        (``../shared/papers/faml_fga_t2v_ensemble.txt``), Sec. 3.1, Fig. 4 (att_block); A. Dosovitskiy et al., "An Image is Worth 16x16
        Words", ICLR 2021, Eq. 2-3 (the encoder block).
    """

    def __init__(self, num_heads=4, mlp_ratio=4.0, patch_size=1, position_embedding=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"num_heads must be a positive integer. Received: num_heads={num_heads}")
        if int(patch_size) < 1:
            raise ValueError(f"patch_size must be a positive integer. Received: patch_size={patch_size}")
        if float(mlp_ratio) < 0:
            raise ValueError(f"mlp_ratio must be >= 0. Received: mlp_ratio={mlp_ratio}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.patch_size = int(patch_size)
        self.position_embedding = bool(position_embedding)
        self.dropout = float(dropout)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"FeatureMapSelfAttention expects [B, H, W, C] with known C. Received: input_shape={input_shape}")
        channels = int(input_shape[-1]) * self.patch_size**2
        if channels % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the token width {channels} (patch_size**2 * C). Received: input_shape={input_shape}")
        if None in input_shape[1:3]:
            raise ValueError(f"FeatureMapSelfAttention needs H and W known at build time. Received: input_shape={input_shape}")
        tokens = math.ceil(input_shape[1] / self.patch_size) * math.ceil(input_shape[2] / self.patch_size)
        token_shape = (None, tokens, channels)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm", dtype=self.dtype_policy)
        self.attention_norm.build(token_shape)
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, channels // self.num_heads, dropout=self.dropout, name="attention", dtype=self.dtype_policy)
        self.attention.build(token_shape, token_shape)
        if self.position_embedding:
            self.positions = self.add_weight(name="positions", shape=(1, tokens, channels), initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        if self.mlp_ratio:
            hidden = max(1, int(round(self.mlp_ratio * channels)))
            self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="mlp_norm", dtype=self.dtype_policy)
            self.mlp_hidden = keras.layers.Dense(hidden, activation="gelu", name="mlp_hidden", dtype=self.dtype_policy)
            self.mlp_output = keras.layers.Dense(channels, name="mlp_output", dtype=self.dtype_policy)
            self.mlp_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
            self.mlp_norm.build(token_shape)
            self.mlp_hidden.build(token_shape)
            self.mlp_output.build((None, tokens, hidden))

    def _to_tokens(self, inputs):
        """``[B, H, W, C]`` -> ``[B, rows * cols, p * p * C]`` (zero-padded to whole patches)."""
        p, (height, width, channels) = self.patch_size, inputs.shape[1:]
        rows, cols = math.ceil(height / p), math.ceil(width / p)
        if (rows * p, cols * p) != (height, width):
            inputs = ops.pad(inputs, ((0, 0), (0, rows * p - height), (0, cols * p - width), (0, 0)))
        patches = ops.transpose(ops.reshape(inputs, (-1, rows, p, cols, p, channels)), (0, 1, 3, 2, 4, 5))
        return ops.reshape(patches, (-1, rows * cols, p * p * channels))

    def _to_map(self, tokens, height, width, channels):
        """The inverse of ``_to_tokens``, padding cropped off."""
        p = self.patch_size
        rows, cols = math.ceil(height / p), math.ceil(width / p)
        patches = ops.transpose(ops.reshape(tokens, (-1, rows, cols, p, p, channels)), (0, 1, 3, 2, 4, 5))
        return ops.reshape(patches, (-1, rows * p, cols * p, channels))[:, :height, :width, :]

    def call(self, inputs, training=None):
        tokens = self._to_tokens(inputs)
        queries = self.attention_norm(tokens)
        if self.position_embedding:
            queries = queries + ops.cast(self.positions, queries.dtype)
        tokens = tokens + self.attention(queries, queries, training=training)
        if self.mlp_ratio:
            hidden = self.mlp_dropout(self.mlp_hidden(self.mlp_norm(tokens)), training=training)
            tokens = tokens + self.mlp_dropout(self.mlp_output(hidden), training=training)
        return self._to_map(tokens, *inputs.shape[1:])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio, "patch_size": self.patch_size, "position_embedding": self.position_embedding, "dropout": self.dropout})
        return config
