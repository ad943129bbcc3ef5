"""Cross-entropy for every target form the data sets give (Barsoum et al. 2016's FER+ schemes).

Per-example losses on class probabilities ``p`` ``[B, K]``:

- class ids ``y`` (FER+ *majority*, and *probability* = PLD, whose label is drawn from the
  vote distribution each epoch by the pipeline): ``-log p_y``; with label smoothing
  ``eps`` the target is ``(1 - eps) onehot(y) + eps / K`` (Keras' form; FAML's Eq. 4 puts
  ``eps / (K - 1)`` on the other classes, the same target for ``eps K / (K - 1)`` here, see
  ``fer_keras.models.r18fa``);
- a distribution ``t`` (FER+ *crossentropy*, CEL; or a teacher's softmax):
  ``-sum_k t_k log p_k``;
- a multi-hot mask ``m`` (FER+ *multi-target*, MT): ``-log sum_k m_k p_k``, the negative log
  of the probability given to any label the annotators voted above the threshold.

Reference: E. Barsoum, C. Zhang, C. Canton Ferrer, Z. Zhang, "Training Deep Networks for
Facial Expression Recognition with Crowd-Sourced Label Distribution", ICMI 2016, Sec. 3
(Eq. 2-5).
"""

from __future__ import annotations

from keras import ops

EPSILON = 1e-7


def crossentropy(targets, probabilities, label_smoothing: float = 0.0, from_logits: bool = False):
    """Per-example cross-entropy of ``probabilities`` against ``targets`` (a
    ``fer_keras.objective.Targets``); see the module docstring for each target kind.

    With ``from_logits=True`` the second argument is the logits and ``log p`` is their
    log-softmax. Prefer it where the model exposes logits: on probabilities, ``p`` is floored
    at ``EPSILON``, so a saturated wrong prediction (``p_y < EPSILON``) gets exactly zero
    gradient and a network whose logits exploded cannot recover (see the softmax-head
    stability check in ``benchmarks/RESULTS.md``); from logits the gradient stays ``p - y``.
    """
    if from_logits:
        logits = ops.cast(probabilities, "float32")
        log_p = ops.log_softmax(logits, axis=-1)
    else:
        probabilities = ops.clip(ops.cast(probabilities, "float32"), EPSILON, 1.0)
        log_p = ops.log(probabilities)
    num_classes = ops.shape(log_p)[-1]
    if targets.kind == "labels":
        one_hot = ops.one_hot(targets.labels, num_classes)
        if label_smoothing:
            one_hot = one_hot * (1.0 - label_smoothing) + label_smoothing / ops.cast(num_classes, "float32")
        return -ops.sum(one_hot * log_p, axis=-1)
    if targets.kind == "distribution":
        return -ops.sum(targets.values * log_p, axis=-1)
    if targets.kind == "multi_hot":
        if from_logits:
            masked = ops.where(targets.values > 0, log_p, ops.full_like(log_p, -1e9))
            return -ops.logsumexp(masked, axis=-1)
        return -ops.log(ops.clip(ops.sum(targets.values * probabilities, axis=-1), EPSILON, 1.0))
    raise ValueError(f"Unknown target kind {targets.kind!r}.")


class CrossEntropy:
    """``crossentropy`` as a term loss: ``CrossEntropy(label_smoothing)(targets, probabilities)``.

    Args:
        label_smoothing: float in [0, 1). Only applies to class-id targets.
        from_logits: bool. The term's output is logits (see :func:`crossentropy`).
    """

    def __init__(self, label_smoothing: float = 0.0, from_logits: bool = False):
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def __call__(self, targets, probabilities):
        return crossentropy(targets, probabilities, self.label_smoothing, self.from_logits)
