"""ArcFace (additive angular margin) classification head, MrCAR Eq. 9-10."""

from __future__ import annotations

import math

import keras
from keras import ops

from fer_keras.serialization import register


def additive_angular_margin(cosine, labels, scale, margin, easy_margin=False, epsilon=1e-7):
    """ArcFace logits from cosines: ``s * cos(theta + m)`` for the target, ``s * cos(theta)`` else.

    ``cos(theta + m)`` is computed as ``cos * cos(m) - sin * sin(m)`` with
    ``sin = sqrt(max(1 - cos^2, epsilon))``, so the value and its gradient stay finite at
    ``cos = +-1`` (no ``arccos``, whose derivative is infinite there). When
    ``theta + m > pi`` the penalised cosine would stop decreasing in ``theta`` (non-monotonic);
    like insightface we then use ``cos(theta) - m * sin(m)`` (a CosFace-style margin that
    joins continuously at ``theta = pi - m``). With ``easy_margin=True`` the margin is only
    applied where ``cos > 0`` (``theta < pi / 2``).

    Args:
        cosine: ``[B, K]`` float tensor of ``cos(theta_j)``.
        labels: ``[B]`` (or ``[B, 1]``) integer class ids.
        scale: float. ``s``.
        margin: float, or a float32 scalar tensor (a margin schedule). ``m`` in radians.
        easy_margin: bool. See above.
        epsilon: float. Floor of ``sin^2``.

    Returns:
        ``[B, K]`` logits (Eq. 10's exponents).
    """
    cosine = ops.clip(cosine, -1.0, 1.0)
    num_classes = ops.shape(cosine)[-1]
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    one_hot = ops.cast(ops.one_hot(labels, num_classes), "bool")
    sine = ops.sqrt(ops.maximum(1.0 - ops.square(cosine), epsilon))
    trig = math if isinstance(margin, (int, float)) else ops
    penalised = cosine * trig.cos(margin) - sine * trig.sin(margin)
    if easy_margin:
        penalised = ops.where(cosine > 0.0, penalised, cosine)
    else:
        penalised = ops.where(cosine > trig.cos(math.pi - margin), penalised, cosine - margin * trig.sin(margin))
    return scale * ops.where(one_hot, penalised, cosine)


@register
class ArcFace(keras.layers.Layer):
    """ArcFace head: cosine classifier with an additive angular margin on the target class.

    Features ``f`` and class weights ``W_j`` are L2-normalised, so ``f . W_j = cos(theta_j)``
    (no bias, Sec. III-B-3). Training with labels, the logits are ``s * cos(theta_y + m)``
    for the target class and ``s * cos(theta_j)`` for the others (Eq. 10); without labels
    or with ``training=False`` all logits are ``s * cos(theta_j)`` (Eq. 9's logits; the
    ranking of the classes is the same as the margin-free one). The layer returns the
    softmax of the logits in float32, so the cross-entropy of its training output *is* the
    ArcFace loss of Eq. 10 (``tests/layers/test_arcface.py`` checks it against
    ``fer_keras.losses.arcface_loss``). Under ``tf.function`` Keras' cross-entropy
    recovers the logits from the softmax op, so saturated probabilities cost no precision.

    Defaults ``scale=16``, ``margin=0.5``: the paper gives none. ``m = 0.5`` is the ArcFace
    paper's value; with 7 classes the class centres can sit ``arccos(-1/6)`` ~ 1.74 rad
    apart, leaving room for it. ``s`` must let a confident prediction reach a high
    probability: for ``K`` classes ``s >= (K - 1) / K * log((K - 1) P / (1 - P))`` (CosFace
    Eq. 7), i.e. ``s >= 5.5`` for ``P = 0.99``, ``K = 7``; the face-recognition ``s = 64``
    is tuned for ~10^5 identities and makes the initial target probability
    ``~exp(-s sin m)`` vanishingly small with 7 classes (``s = 30`` puts it at ~1e-7, the
    probability clip of Keras' cross-entropy), so we use ``s = 16``.

    Args:
        num_classes: int. Number of classes ``n``.
        scale: float. Radius ``s`` of the hypersphere. Defaults to ``16.0``.
        margin: float. Additive angular margin ``m`` (radians). Defaults to ``0.5``.
        easy_margin: bool. Apply the margin only where ``cos(theta) > 0`` instead of the
            ``theta + m > pi`` fallback. Defaults to ``False``.
        return_logits: bool. Return the logits instead of the probabilities. Defaults
            to ``False``.
        kernel_initializer: str or initializer. Class weights ``W`` (``[d, n]``). Defaults
            to ``"glorot_uniform"``.
        epsilon: float. Floor used in the L2 normalisations and in ``sin^2``. Defaults to
            ``1e-7``.
        **kwargs: base ``keras.layers.Layer`` arguments. Build it with ``dtype="float32"``
            under mixed precision (the cosines and the softmax should be float32).

    Call arguments:
        inputs: ``[B, d]`` embeddings.
        labels: optional ``[B]`` integer class ids; only used when ``training`` is true.
        training: bool. Apply the margin (needs ``labels``).

    Returns:
        ``[B, n]`` probabilities (or logits with ``return_logits=True``), float32.

    Example:

    >>> head = ArcFace(7)
    >>> features = keras.random.normal((4, 32))
    >>> probabilities = head(features)  # inference: softmax(s * cos)
    >>> train_probabilities = head(features, labels=ops.array([0, 1, 2, 3]), training=True)
    >>> head.compute_logits(features, labels=ops.array([0, 1, 2, 3]), training=True).shape
    (4, 7)

    Reference:
        J. Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
        CVPR 2019; J. Lan et al., "Expression Recognition Based on Multi-Regional
        Coordinate Attention Residuals" (MrCAR), IEEE Access 11, 2023, Sec. III-B-3,
        Eq. 9-10.
    """

    def __init__(
        self,
        num_classes,
        scale=16.0,
        margin=0.5,
        easy_margin=False,
        return_logits=False,
        kernel_initializer="glorot_uniform",
        epsilon=1e-7,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
        if float(scale) <= 0:
            raise ValueError(f"scale must be positive. Received: scale={scale}")
        if not 0.0 <= float(margin) < math.pi / 2:
            raise ValueError(f"margin must be in [0, pi/2) radians. Received: margin={margin}")
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)
        self.return_logits = bool(return_logits)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"ArcFace needs a known feature size. Received: input_shape={input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.num_classes), initializer=self.kernel_initializer)

    def _l2_normalize(self, x, axis):
        return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), self.epsilon))

    def cosine(self, inputs):
        """``[B, n]`` cosines between the L2-normalised features and class weights."""
        features = self._l2_normalize(ops.cast(inputs, "float32"), axis=-1)
        weights = self._l2_normalize(ops.cast(self.kernel, "float32"), axis=0)
        return ops.matmul(features, weights)

    def compute_logits(self, inputs, labels=None, training=False):
        """The logits the call returns the softmax of (Eq. 9 without, Eq. 10 with the margin)."""
        cosine = self.cosine(inputs)
        if labels is None or not training:
            return self.scale * cosine
        return additive_angular_margin(cosine, labels, self.scale, self.margin, self.easy_margin, self.epsilon)

    def call(self, inputs, labels=None, training=None):
        logits = self.compute_logits(inputs, labels=labels, training=bool(training))
        return logits if self.return_logits else ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape, labels_shape=None):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, inputs, labels=None, training=None):
        return keras.KerasTensor((inputs.shape[0], self.num_classes), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "scale": self.scale,
                "margin": self.margin,
                "easy_margin": self.easy_margin,
                "return_logits": self.return_logits,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "epsilon": self.epsilon,
            }
        )
        return config
