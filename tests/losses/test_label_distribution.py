"""ResFace's label-distribution loss (Eq. 3.5) against NumPy: the 1/(N x l) factor, logits vs
probabilities, the reduction to cross-entropy / l for one-hot targets, the objective term."""

import keras
import numpy as np
import pytest

from fer_keras.losses import (
    CrossEntropy,
    LabelDistribution,
    LabelDistributionLoss,
    label_distribution_loss,
)
from fer_keras.objective import Targets

RNG = np.random.default_rng(0)
N, L = 5, 8


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _eq_3_5(dis, dis_bar):
    """Eq. 3.5 written as printed: -1/(N x l) sum_i sum_m dis_m^i log(dis_bar_m^i)."""
    n, l = dis.shape
    return -sum(dis[i, m] * np.log(dis_bar[i, m]) for i in range(n) for m in range(l)) / (n * l)


def test_equals_eq_3_5_with_its_1_over_n_l_factor():
    logits = RNG.normal(size=(N, L)) * 2
    dis, dis_bar = _softmax(RNG.normal(size=(N, L))), _softmax(logits)
    expected = _eq_3_5(dis, dis_bar)
    assert float(LabelDistributionLoss()(dis, dis_bar)) == pytest.approx(expected, rel=1e-5)
    assert float(LabelDistributionLoss(from_logits=True)(dis, logits)) == pytest.approx(expected, rel=1e-5)
    per_example = label_distribution_loss(dis, dis_bar).numpy()
    np.testing.assert_allclose(per_example, -(dis * np.log(dis_bar)).sum(axis=1) / L, rtol=1e-5)
    # Not the plain cross-entropy: l times smaller.
    assert float(LabelDistributionLoss()(dis, dis_bar)) * L == pytest.approx(float(keras.losses.CategoricalCrossentropy()(dis, dis_bar)), rel=1e-5)


def test_one_hot_targets_give_crossentropy_over_l():
    labels = RNG.integers(0, L, size=N)
    logits = RNG.normal(size=(N, L)).astype("float32")
    ce = -np.log(_softmax(logits)[np.arange(N), labels])
    ldl = label_distribution_loss(np.eye(L)[labels], logits, from_logits=True).numpy()
    np.testing.assert_allclose(ldl, ce / L, rtol=1e-5)
    # The objective term: class ids become one-hot rows; same as CrossEntropy / l.
    targets = Targets.from_batch(keras.ops.convert_to_tensor(labels.astype("int32")), "labels")
    term = LabelDistribution(from_logits=True)(targets, logits).numpy()
    np.testing.assert_allclose(term, CrossEntropy(from_logits=True)(targets, logits).numpy() / L, rtol=1e-5)


def test_term_uses_distributions_as_given_and_rejects_multi_hot():
    dis = _softmax(RNG.normal(size=(N, L))).astype("float32")
    probabilities = _softmax(RNG.normal(size=(N, L))).astype("float32")
    term = LabelDistribution()(Targets.from_batch(dis, "distribution"), probabilities).numpy()
    np.testing.assert_allclose(term, -(dis * np.log(probabilities)).sum(axis=1) / L, rtol=1e-5)
    with pytest.raises(ValueError, match="class ids or distributions"):
        LabelDistribution()(Targets.from_batch((dis > 0.2).astype("float32"), "multi_hot"), probabilities)


def test_serializable():
    loss = LabelDistributionLoss(from_logits=True, name="ldl")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, LabelDistributionLoss) and restored.from_logits and restored.name == "ldl"
