"""ArcFace loss (MrCAR Eq. 10) for users who compute the cosines themselves."""

from __future__ import annotations

import keras

from fer_keras.layers.arcface import additive_angular_margin
from fer_keras.objective import Context, ContextLoss
from fer_keras.serialization import register


def arcface_loss(y_true, cosine, scale=16.0, margin=0.5, easy_margin=False, epsilon=1e-7, label_smoothing=0.0):
    """Per-sample ArcFace loss: cross-entropy of ``softmax(s * cos(theta + m y))``.

    With ``label_smoothing`` ``e`` the target is ``(1 - e) one_hot(y) + e / K`` (Szegedy et
    al. 2016), the margin still applied to the true class only.

    Args:
        y_true: ``[B]`` integer class ids.
        cosine: ``[B, K]`` cosines between L2-normalised features and class weights
            (e.g. ``fer_keras.layers.ArcFace(...).cosine(features)``).
        scale: float. ``s``. Defaults to ``16.0`` (see ``fer_keras.layers.ArcFace``).
        margin: float. ``m`` in radians. Defaults to ``0.5``.
        easy_margin: bool. Margin only where ``cos > 0``. Defaults to ``False``.
        epsilon: float. Floor of ``sin^2`` (finite gradients at ``cos = +-1``).
        label_smoothing: float in [0, 1). Defaults to ``0.0`` (Eq. 10).

    Returns:
        ``[B]`` losses; their mean is Eq. 10's ``L``.
    """
    logits = additive_angular_margin(cosine, y_true, scale, margin, easy_margin, epsilon)
    labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
    if not label_smoothing:
        return keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    num_classes = keras.ops.shape(cosine)[-1]
    target = keras.ops.one_hot(labels, num_classes) * (1.0 - label_smoothing) + label_smoothing / keras.ops.cast(num_classes, "float32")
    return keras.ops.categorical_crossentropy(target, logits, from_logits=True)


@register
class ArcFaceLoss(keras.losses.Loss):
    """ArcFace (additive angular margin) loss on precomputed cosines.

    ``y_pred`` must be cosines ``[B, K]``, not probabilities: the loss holds no class
    weights (a ``Loss`` cannot own weights), so the normalised classifier lives in the model
    (``fer_keras.layers.ArcFace(..., return_logits=True)`` divided by ``scale``, or its
    ``cosine`` method). MrCAR itself does not need this class: its ``ArcFace`` head applies
    the margin at training time and the training loop's cross-entropy on the head's
    probabilities equals this loss.

    Args:
        scale: float. ``s``. Defaults to ``16.0``.
        margin: float. ``m`` in radians. Defaults to ``0.5``.
        easy_margin: bool. Margin only where ``cos > 0``. Defaults to ``False``.
        epsilon: float. Floor of ``sin^2``. Defaults to ``1e-7``.
        reduction: str. As ``keras.losses.Loss``. Defaults to ``"sum_over_batch_size"``.
        name: str. Defaults to ``"arcface_loss"``.
        dtype: dtype of the loss computation. Defaults to ``None``.

    Example:

    >>> loss = ArcFaceLoss(scale=16.0, margin=0.5)
    >>> value = loss(keras.ops.array([0, 1]), keras.ops.array([[0.9, 0.1], [0.2, 0.3]]))

    Reference:
        J. Deng et al., "ArcFace", CVPR 2019; J. Lan et al., MrCAR, IEEE Access 11, 2023,
        Eq. 10.
    """

    def __init__(self, scale=16.0, margin=0.5, easy_margin=False, epsilon=1e-7, reduction="sum_over_batch_size", name="arcface_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if float(scale) <= 0:
            raise ValueError(f"scale must be positive. Received: scale={scale}")
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        return arcface_loss(y_true, y_pred, self.scale, self.margin, self.easy_margin, self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "margin": self.margin, "easy_margin": self.easy_margin, "epsilon": self.epsilon})
        return config


class ArcFaceMarginLoss(ContextLoss):
    """The ArcFace loss as an objective term on a model's ``cosine`` output, with an optional
    margin schedule: ``m(e) = m * min(1, e / warmup_epochs)`` at fractional epoch ``e``
    (a margin that grows from 0, the softmax-then-ArcFace fix for slow convergence reported
    in InsightFace_TF#42 and NoiseFace#4; ``warmup_epochs=0`` is the fixed margin of Eq. 10).

    Args:
        scale: float. ``s``.
        margin: float. Final ``m`` in radians.
        warmup_epochs: float. Epochs over which the margin grows linearly from 0.
        easy_margin: bool. Margin only where ``cos > 0``.
        label_smoothing: float in [0, 1). See :func:`arcface_loss`.
    """

    def __init__(self, scale=16.0, margin=0.5, warmup_epochs=0.0, easy_margin=False, label_smoothing=0.0):
        if float(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0. Received: warmup_epochs={warmup_epochs}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing}")
        self.scale, self.margin, self.warmup_epochs, self.easy_margin = float(scale), float(margin), float(warmup_epochs), bool(easy_margin)
        self.label_smoothing = float(label_smoothing)

    def margin_at(self, epoch):
        """The margin at fractional epoch ``epoch`` (a float, or a scalar tensor)."""
        if not self.warmup_epochs:
            return self.margin
        return self.margin * keras.ops.minimum(1.0, keras.ops.cast(epoch, "float32") / self.warmup_epochs)

    def __call__(self, targets, cosine, context: Context):
        return arcface_loss(targets.labels, cosine, self.scale, self.margin_at(context.epoch), self.easy_margin, label_smoothing=self.label_smoothing)
