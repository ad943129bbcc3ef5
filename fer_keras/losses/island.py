"""Island and islets losses: the center loss plus penalties that push the class centres apart.

With centres ``c_1..c_|N|`` and sums over ordered pairs ``j != k``:

- island loss (Cai et al. 2018; LBAN-IL Sec. 3):
  ``L_Island = L_C + lambda1 * sum_j sum_{k != j} (cos(c_j, c_k) + 1)``;
- islets penalty (LBAN-IL Eq. 1): ``L_p = exp(-1/2 sum_j sum_{k != j} ||c_j - c_k||_2)``;
- islets loss (Eq. 2): ``L_I = L_Island + lambda2 * L_p``.

The printed Eq. 1 shows one sum and a stray ``c_i in N`` below it (Eq. 4 has the same
stray line): we read it as the lost second sum of the same double sum over ordered pairs
that the island term uses. With that reading, Eq. 4's last term is exactly
``lambda2 / (2|N|) * dL_p/dc_j``, as its island term is ``lambda1 / (2(|N|-1))`` times the
gradient of the island sum.

What moves what:

- The embedding: only the center-loss part depends on it, so its gradient is
  ``x_i - c_{y_i}`` (Eq. 3, per example; the loop averages over the batch). The pair
  terms depend on the centres only, which are not trainable: no gradient reaches the network.
- The centres: the rule of Eq. 4, ``c_j <- c_j - alpha * Delta c_j`` (Algorithm 1, step 5),
  never the optimiser. ``Delta c_j`` is the center-loss part of ``CenterLoss`` plus the
  centre gradients of the pair terms (the island cosine term and, for islets, the ``L_p``
  term), so in the paper the pair terms do move the centres, at rate ``alpha``. The
  objective's weight (``lambda`` of Eq. 5) does not enter the rule.
- Replicas: the loop sums the center-loss statistics over replicas (inherited from
  ``CenterLoss``); the pair terms are computed in ``apply_statistics`` from the centres,
  identical on every replica, so they need no reduction.

Per-example values: ``call`` returns ``1/2 ||x_i - c_{y_i}||^2`` plus the batch-level pair
terms added to every example, so the batch mean (what the loop minimises and reports) is
the mean center loss plus the pair terms counted once. Under class weighting the loop
multiplies each example by its weight, so the pair terms then count with the batch's mean
weight (reported loss only: they carry no gradient).

A zero centre (the initial state) has cosine 0 with every centre and no cosine gradient;
coincident centres give no ``L_p`` direction: values and updates stay finite, and the first
batch's center-loss part moves the centres off zero.

Reference: J. Cai, Z. Meng, A. S. Khan, Z. Li, J. O'Reilly, Y. Tong, "Island Loss for
Learning Discriminative Features in Facial Expression Recognition", FG 2018; H. Li,
N. Wang, Y. Yu et al., "LBAN-IL", Neurocomputing 432 (2021)
(``../shared/papers/lban_il_local_binary_attention_islets_loss.txt``) Eq. 1-5.
"""

from __future__ import annotations

from keras import ops

from fer_keras.losses.center import CenterLoss
from fer_keras.serialization import register

# Norms and distances below this count as zero (no direction).
_EPSILON = 1e-12


def _inverse(values):
    """``1 / values``, and 0 where ``values`` is (numerically) zero."""
    return ops.where(values > _EPSILON, 1.0 / ops.maximum(values, _EPSILON), 0.0)


def _off_diagonal(num_classes):
    return 1.0 - ops.eye(num_classes, dtype="float32")


def _unit_centers(centers):
    """``(c_j / ||c_j||, 1 / ||c_j||)``, both 0 for a zero centre."""
    inverse = _inverse(ops.sqrt(ops.sum(ops.square(centers), axis=-1)))
    return centers * inverse[:, None], inverse


def _differences(centers):
    """``(c_j - c_k [N, N, D], ||c_j - c_k|| [N, N])``."""
    differences = centers[:, None, :] - centers[None, :, :]
    return differences, ops.sqrt(ops.sum(ops.square(differences), axis=-1))


def island_penalty(centers):
    """``sum_j sum_{k != j} (cos(c_j, c_k) + 1)``: the island term without ``lambda1``."""
    unit, _ = _unit_centers(centers)
    cosines = ops.matmul(unit, ops.transpose(unit))
    return ops.sum((cosines + 1.0) * _off_diagonal(centers.shape[0]))


def islets_penalty(centers):
    """``L_p = exp(-1/2 sum_j sum_{k != j} ||c_j - c_k||_2)`` (LBAN-IL Eq. 1)."""
    _, distances = _differences(centers)
    return ops.exp(-0.5 * ops.sum(distances * _off_diagonal(centers.shape[0])))


def island_center_step(centers):
    """Eq. 4's island term without ``lambda1``, ``[N, D]``:
    ``1/(|N|-1) sum_{k != j} [c_k / (||c_j|| ||c_k||) - (c_j . c_k) c_j / (||c_j||^3 ||c_k||)]``."""
    num_classes = centers.shape[0]
    unit, inverse = _unit_centers(centers)
    off_diagonal = _off_diagonal(num_classes)
    cosines = ops.matmul(unit, ops.transpose(unit)) * off_diagonal
    others = ops.matmul(off_diagonal, unit)  # sum_{k != j} c_k / ||c_k||
    tangent = others - ops.sum(cosines, axis=1)[:, None] * unit
    return inverse[:, None] * tangent / (num_classes - 1)


def islets_center_step(centers):
    """Eq. 4's islets term without ``lambda2``, ``[N, D]``:
    ``-1/(2|N|) sum_{k != j} (c_j - c_k) / ||c_j - c_k|| * L_p``."""
    num_classes = centers.shape[0]
    differences, distances = _differences(centers)
    weights = _inverse(distances) * _off_diagonal(num_classes)
    directions = ops.sum(differences * weights[:, :, None], axis=1)
    return -islets_penalty(centers) * directions / (2.0 * num_classes)


@register
class IslandLoss(CenterLoss):
    """Island loss: center loss plus ``lambda1`` times the pairwise cosine of the centres (+1).

    The centres are ``CenterLoss``' non-trainable weight; ``apply_statistics`` moves them by
    the full Eq. 4 of LBAN-IL (center-loss part plus the island term), see the module
    docstring for what depends on the embedding and how batch-level terms enter the mean.

    Args:
        num_classes: int. Number of classes, at least 2.
        embedding_dim: int. Size of the features ``x``.
        alpha: float. Centre learning rate of Eq. 4. Defaults to ``0.5``.
        lambda1: float. Weight of the island term. Defaults to ``0.2``.
        **kwargs: base layer arguments.

    Call arguments:
        targets: ``fer_keras.objective.Targets`` (its ``labels`` are used).
        embedding: ``[B, embedding_dim]`` features.

    Returns:
        ``[B]`` per-example ``1/2 ||x - c_y||^2 + lambda1 * island_penalty(c)``.

    Example:

    >>> from fer_keras.objective import Targets
    >>> loss = IslandLoss(3, 2)
    >>> targets = Targets.from_batch(keras.ops.array([0, 2]), "labels")
    >>> loss.call(targets, keras.ops.ones((2, 2))).shape
    (2,)

    Reference: Cai et al., "Island Loss", FG 2018; LBAN-IL Eq. 3-4.
    """

    def __init__(self, num_classes, embedding_dim, alpha=0.5, lambda1=0.2, **kwargs):
        super().__init__(num_classes, embedding_dim, alpha, **kwargs)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (the penalties are over pairs of classes). Received: num_classes={num_classes}")
        if float(lambda1) < 0.0:
            raise ValueError(f"lambda1 must be >= 0. Received: lambda1={lambda1}")
        self.lambda1 = float(lambda1)

    def center_penalty(self, centers):
        """The batch-level terms, on the centres only."""
        return self.lambda1 * island_penalty(centers)

    def center_step(self, centers):
        """The centre-only part of ``Delta c`` (Eq. 4), ``[N, D]``."""
        return self.lambda1 * island_center_step(centers)

    def call(self, targets, embedding):
        return super().call(targets, embedding) + self.center_penalty(ops.convert_to_tensor(self.centers))

    def apply_statistics(self, numerator, counts):
        centers = ops.convert_to_tensor(self.centers)
        delta = numerator / (1.0 + counts[:, None]) + self.center_step(centers)
        self.centers.assign(centers - self.alpha * delta)

    def get_config(self):
        config = super().get_config()
        config.update({"lambda1": self.lambda1})
        return config


@register
class IsletsLoss(IslandLoss):
    """Islets loss (LBAN-IL Eq. 2): island loss plus ``lambda2`` times the penalty ``L_p`` of Eq. 1.

    Args:
        num_classes: int. Number of classes, at least 2.
        embedding_dim: int. Size of the features ``x``.
        alpha: float. Centre learning rate of Eq. 4. Defaults to ``0.5``.
        lambda1: float. Weight of the island term. Defaults to ``0.2``.
        lambda2: float. Weight of ``L_p``. Defaults to ``0.9``.
        **kwargs: base layer arguments.

    Call arguments:
        targets: ``fer_keras.objective.Targets`` (its ``labels`` are used).
        embedding: ``[B, embedding_dim]`` features.

    Returns:
        ``[B]`` per-example ``1/2 ||x - c_y||^2 + lambda1 * island_penalty(c) + lambda2 * L_p(c)``.

    Example:

    >>> from fer_keras.objective import Targets, Term
    >>> loss = IsletsLoss(7, 128)
    >>> term = Term("islets", loss, "embedding", weight=0.6)  # Eq. 5, next to cross-entropy
    >>> targets = Targets.from_batch(keras.ops.array([0, 6]), "labels")
    >>> loss.call(targets, keras.ops.ones((2, 128))).shape
    (2,)

    Reference: LBAN-IL Eq. 1-5 (Li et al., Neurocomputing 432, 2021).
    """

    def __init__(self, num_classes, embedding_dim, alpha=0.5, lambda1=0.2, lambda2=0.9, **kwargs):
        super().__init__(num_classes, embedding_dim, alpha, lambda1, **kwargs)
        if float(lambda2) < 0.0:
            raise ValueError(f"lambda2 must be >= 0. Received: lambda2={lambda2}")
        self.lambda2 = float(lambda2)

    def center_penalty(self, centers):
        return super().center_penalty(centers) + self.lambda2 * islets_penalty(centers)

    def center_step(self, centers):
        return super().center_step(centers) + self.lambda2 * islets_center_step(centers)

    def get_config(self):
        config = super().get_config()
        config.update({"lambda2": self.lambda2})
        return config
