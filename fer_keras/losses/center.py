"""Center loss with class centres moved by the update rule, not the optimiser.

``L_C = 1/2 ||x_i - c_{y_i}||^2`` per example (Wen et al. 2016, Eq. 2; LBAN-IL Eq. 3).
After each step every centre moves by ``alpha * Delta c_j`` with
``Delta c_j = sum_i [y_i = j] (c_j - x_i) / (1 + sum_i [y_i = j])`` (LBAN-IL Eq. 4,
Wen et al. Eq. 4): ``c_j <- c_j - alpha * Delta c_j``. Under a distribution strategy the
training loop adds the numerator and the counts up over replicas before the update, so
every replica holds the same centres (``aggregation="only_first_replica"``).

Reference: Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning Approach
for Deep Face Recognition", ECCV 2016, Eq. 2-4; LBAN-IL
(``../shared/papers/lban_il_local_binary_attention_islets_loss.txt``) Eq. 3-4.
"""

from __future__ import annotations

from keras import ops

from fer_keras.objective import StatefulLoss
from fer_keras.serialization import register


@register
class CenterLoss(StatefulLoss):
    """Center loss; its class centres are a non-trainable weight updated by Eq. 4.

    Args:
        num_classes: int. Number of classes.
        embedding_dim: int. Size of the features ``x``.
        alpha: float. Centre learning rate of Eq. 4. Defaults to ``0.5``.
        **kwargs: base layer arguments.

    Call arguments:
        targets: ``fer_keras.objective.Targets`` (its ``labels`` are used).
        embedding: ``[B, embedding_dim]`` features.

    Returns:
        ``[B]`` per-example ``1/2 ||x - c_y||^2``.

    Example:

    >>> from fer_keras.objective import Targets
    >>> loss = CenterLoss(3, 2)
    >>> targets = Targets.from_batch(keras.ops.array([0, 2]), "labels")
    >>> loss.call(targets, keras.ops.ones((2, 2))).shape
    (2,)
    """

    def __init__(self, num_classes, embedding_dim, alpha=0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in (0, 1]. Received: alpha={alpha}")
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.alpha = float(alpha)
        self.centers = self.add_weight(name="centers", shape=(self.num_classes, self.embedding_dim), initializer="zeros", trainable=False, aggregation="only_first_replica")

    def call(self, targets, embedding):
        centers = ops.take(ops.convert_to_tensor(self.centers), targets.labels, axis=0)
        return 0.5 * ops.sum(ops.square(ops.cast(embedding, "float32") - centers), axis=-1)

    def statistics(self, targets, embedding):
        """``(sum_i [y_i = j] (c_j - x_i), sum_i [y_i = j])`` per class."""
        one_hot = ops.one_hot(targets.labels, self.num_classes)
        embedding = ops.cast(embedding, "float32")
        counts = ops.sum(one_hot, axis=0)
        numerator = counts[:, None] * ops.convert_to_tensor(self.centers) - ops.matmul(ops.transpose(one_hot), embedding)
        return numerator, counts

    def apply_statistics(self, numerator, counts):
        self.centers.assign(self.centers - self.alpha * numerator / (1.0 + counts[:, None]))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "embedding_dim": self.embedding_dim, "alpha": self.alpha})
        return config
