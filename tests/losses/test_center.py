"""Center loss: the per-example value and the centre update rule (Eq. 4) against NumPy."""

import keras
import numpy as np
import pytest

from fer_keras.losses import CenterLoss
from fer_keras.objective import Targets


def test_value_and_update_rule_match_numpy():
    rng = np.random.default_rng(0)
    loss = CenterLoss(3, 4, alpha=0.5)
    centers = rng.normal(size=(3, 4)).astype(np.float32)
    loss.centers.assign(centers)
    labels = np.array([0, 2, 2, 0, 0])
    x = rng.normal(size=(5, 4)).astype(np.float32)
    targets = Targets.from_batch(keras.ops.convert_to_tensor(labels), "labels")
    value = keras.ops.convert_to_numpy(loss.call(targets, keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(value, 0.5 * ((x - centers[labels]) ** 2).sum(1), rtol=1e-5)
    loss.apply_statistics(*loss.statistics(targets, keras.ops.convert_to_tensor(x)))
    expected = centers.copy()
    for j in range(3):
        members = labels == j
        delta = (centers[j] - x[members]).sum(0) / (1 + members.sum())
        expected[j] = centers[j] - 0.5 * delta
    np.testing.assert_allclose(loss.centers.numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(loss.centers.numpy()[1], centers[1])  # no example of class 1: unchanged
    assert not loss.trainable_weights and len(loss.non_trainable_weights) == 1


def test_config_round_trip_and_bad_alpha():
    loss = CenterLoss(7, 128, alpha=0.3, name="center")
    clone = CenterLoss.from_config(loss.get_config())
    assert (clone.num_classes, clone.embedding_dim, clone.alpha) == (7, 128, 0.3)
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(7, 128, alpha=0.0)
