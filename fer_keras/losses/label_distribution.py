"""ResFace's label-distribution loss (Sec. 3.3, Eq. 3.5).

``Loss_all = -1 / (N x l) * sum_i sum_m dis_m^i log(dis_bar_m^i)``: the cross-entropy between
the target distribution ``dis`` (a frozen teacher's softmax, Eq. 3.4, or the FER+ vote
distribution) and the predicted one ``dis_bar``, averaged over the ``N`` samples AND the
``l`` classes. The per-example value is therefore the cross-entropy divided by ``l``; the
training loop's mean over the batch gives the ``1 / (N x l)`` factor. For one-hot targets it
is the usual cross-entropy divided by ``l``: the same minimiser, gradients ``l`` times
smaller (with SGD, the learning rate is effectively ``lr / l``; presets account for it).

Reference: ResFace (ResNet with label distribution learning for FER), Sec. 3.3, Eq. 3.4-3.5.
"""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.serialization import register

EPSILON = 1e-7


def label_distribution_loss(y_true, y_pred, from_logits: bool = False):
    """Per-example Eq. 3.5 term ``-(1 / l) sum_m y_true_m log y_pred_m``, shape ``[B]``.

    Args:
        y_true: ``[B, l]`` target distributions (rows sum to 1; one-hot rows allowed).
        y_pred: ``[B, l]`` predicted probabilities, or logits with ``from_logits=True``
            (``log_softmax``: no ``EPSILON`` floor, so a saturated wrong prediction keeps
            its gradient).
        from_logits: bool.
    """
    y_pred = ops.cast(y_pred, "float32")
    log_p = ops.log_softmax(y_pred, axis=-1) if from_logits else ops.log(ops.clip(y_pred, EPSILON, 1.0))
    return -ops.mean(ops.cast(y_true, "float32") * log_p, axis=-1)


@register
class LabelDistributionLoss(keras.losses.Loss):
    """Eq. 3.5 as a Keras loss: ``label_distribution_loss`` per example, mean over the batch.

    Args:
        from_logits: bool. ``y_pred`` are logits. Defaults to ``False``.
        **kwargs: ``keras.losses.Loss`` arguments (``reduction``, ``name``, ``dtype``).

    Example:

    >>> loss = LabelDistributionLoss()
    >>> float(loss([[0.5, 0.5]], [[0.5, 0.5]]))  # -(1/2)(0.5 log 0.5 + 0.5 log 0.5)
    0.3465...

    Reference:
        ResFace, Sec. 3.3, Eq. 3.5.
    """

    def __init__(self, from_logits: bool = False, **kwargs):
        kwargs.setdefault("name", "label_distribution")
        super().__init__(**kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return label_distribution_loss(y_true, y_pred, self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config


class LabelDistribution:
    """Eq. 3.5 as an objective term loss (``fer_keras.objective.Term``): class ids become
    one-hot rows, distributions (FER+ votes, a teacher's softmax) are used as they are.

    Args:
        from_logits: bool. The term's output is logits. Defaults to ``False``.
    """

    def __init__(self, from_logits: bool = False):
        self.from_logits = bool(from_logits)

    def __call__(self, targets, output):
        if targets.kind == "labels":
            values = ops.one_hot(targets.labels, ops.shape(output)[-1])
        elif targets.kind == "distribution":
            values = targets.values
        else:
            raise ValueError(f"The label-distribution loss needs class ids or distributions. Received: kind={targets.kind!r}")
        return label_distribution_loss(values, output, self.from_logits)
