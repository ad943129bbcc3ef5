"""Ensemble voting rules: T2V (top-two voting), NOI (normalised output integrating), bagging.

Written once with ``keras.ops``, so the same code scores NumPy arrays in evaluation and the
ensemble CLI and runs inside the graph of the exported ensemble SavedModel
(``fer_keras.export.ensemble``). Every rule takes the members' scores ``[M, N, C]``
(M members, N images, C classes) and returns ``(vote_scores [N, C], class_ids [N])`` as
backend tensors (``keras.ops.convert_to_numpy`` for NumPy).

Tie-breaking, the same in every rule and on every backend: when several classes share the
maximum, the one with the lowest class index wins. This holds both inside one member
(which class is its first / second choice in T2V and bagging) and for the final vote.
``argmax`` on some backends does not guarantee which tied index it returns, so the rules
use ``_first_argmax`` instead.

Reference: Zhou et al., "Multi Loss-based Feature Fusion and Top Two Voting Ensemble
Decision Strategy for Facial Expression Recognition in the Wild" (FAML-FGA-T2V):
Eq. 10-12 (T2V, alpha=1.9, beta=1.0), Eq. 13 (NOI), Sec. 4.4 (T1V, i.e. bagging).
"""

from __future__ import annotations

from keras import ops


def _first_argmax(x, axis=-1):
    """Index of the maximum along ``axis``; the lowest index among ties."""
    size = ops.shape(x)[axis]
    index = ops.arange(size, dtype="int32")
    is_max = ops.equal(x, ops.max(x, axis=axis, keepdims=True))
    return ops.min(ops.where(is_max, index, size), axis=axis)


def _check_scores(scores):
    scores = ops.convert_to_tensor(scores)
    if len(scores.shape) != 3:
        raise ValueError(f"scores must be [members, images, classes]. Received shape: {tuple(scores.shape)}")
    return ops.cast(scores, "float32")


def _top1_one_hot(scores):
    """``[M, N, C]`` one-hot of each member's first choice (lowest index among ties)."""
    return ops.one_hot(_first_argmax(scores), ops.shape(scores)[-1], dtype="float32")


def t2v(scores, alpha: float = 1.9, beta: float = 1.0):
    """Top-two voting (T2V).

    Each member gives ``alpha`` to its first-ranked class and ``beta`` to its second-ranked
    class (Eq. 10; Eq. 11 is the same vector written with ascending ranks); the votes of all
    members are summed (Eq. 12) and the class with the most votes is chosen. Ranks ignore the
    scale of the scores, so logits and probabilities vote alike.

    Args:
        scores: ``[M, N, C]`` member outputs (probabilities or logits), ``C >= 2``.
        alpha: float. Weight of a first-ranked class. Defaults to 1.9 (the paper's value).
        beta: float. Weight of a second-ranked class. Defaults to 1.0 (the paper's value).

    Returns:
        ``(vote_scores [N, C] float32, class_ids [N] int32)``.

    Example:

    ```python
    votes, ids = t2v(np.array([[[0.6, 0.3, 0.1]], [[0.1, 0.5, 0.4]]]))  # 2 members, 1 image
    keras.ops.convert_to_numpy(votes)  # [[1.9, 2.9, 1.0]]: ids == [1]
    ```
    """
    scores = _check_scores(scores)
    if scores.shape[-1] is not None and scores.shape[-1] < 2:
        raise ValueError(f"T2V needs at least 2 classes. Received shape: {tuple(scores.shape)}")
    first = _top1_one_hot(scores)
    second = _top1_one_hot(ops.where(first > 0, float("-inf"), scores))
    votes = ops.sum(alpha * first + beta * second, axis=0)
    return votes, _first_argmax(votes)


def noi(scores, from_logits: bool = False):
    """Normalised output integrating (NOI): the sum of the members' softmax outputs (Eq. 13).

    Args:
        scores: ``[M, N, C]`` member outputs.
        from_logits: bool. ``True`` applies the softmax of Eq. 13 first; ``False`` (our models
            end in a softmax) sums the probabilities as given. Defaults to False.

    Returns:
        ``(vote_scores [N, C] float32, class_ids [N] int32)``.
    """
    scores = _check_scores(scores)
    if from_logits:
        scores = ops.softmax(scores, axis=-1)
    votes = ops.sum(scores, axis=0)
    return votes, _first_argmax(votes)


def bagging(scores):
    """Bagging / top-one voting (T1V): each member casts one vote for its first-ranked class;
    the class with most votes wins (lowest index among tied counts).

    Args:
        scores: ``[M, N, C]`` member outputs.

    Returns:
        ``(vote_scores [N, C] float32 vote counts, class_ids [N] int32)``.
    """
    votes = ops.sum(_top1_one_hot(_check_scores(scores)), axis=0)
    return votes, _first_argmax(votes)


VOTING_RULES = {"t2v": t2v, "noi": noi, "bagging": bagging}
