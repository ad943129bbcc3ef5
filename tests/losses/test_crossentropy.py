"""The four FER+ training schemes (Barsoum et al. 2016) give the loss their definition gives."""

import keras
import numpy as np
import pytest

from fer_keras.losses import CrossEntropy
from fer_keras.objective import Targets
from pipelines.input import draw_labels

P = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]], np.float32)
VOTES = np.array([[8, 2, 0, 0], [0, 5, 5, 0], [1, 1, 1, 7]], np.float32)


def _loss(values, kind, smoothing=0.0):
    targets = Targets.from_batch(keras.ops.convert_to_tensor(values), kind)
    return keras.ops.convert_to_numpy(CrossEntropy(smoothing)(targets, keras.ops.convert_to_tensor(P)))


def test_majority_and_drawn_labels_are_the_log_probability_of_the_class():
    labels = np.array([0, 2, 3])
    np.testing.assert_allclose(_loss(labels, "labels"), -np.log(P[[0, 1, 2], labels]), rtol=1e-6)


def test_crossentropy_targets_the_whole_vote_distribution():
    t = VOTES / VOTES.sum(1, keepdims=True)
    np.testing.assert_allclose(_loss(t, "distribution"), -(t * np.log(P)).sum(1), rtol=1e-6)
    # Not the majority-label loss: the 50/50 row is scored against both classes.
    assert not np.allclose(_loss(t, "distribution"), _loss(t.argmax(1), "labels"))


def test_multi_target_is_minus_log_of_the_summed_probability_of_the_voted_labels():
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], np.float32)
    np.testing.assert_allclose(_loss(mask, "multi_hot"), -np.log((P * mask).sum(1)), rtol=1e-6)
    np.testing.assert_allclose(_loss(mask, "multi_hot")[1], -np.log(0.7), rtol=1e-6)


def test_label_smoothing_mixes_a_uniform_target():
    labels = np.array([0, 1, 2])
    smoothed = np.full((3, 4), 0.1 / 4) + 0.9 * np.eye(4)[labels]
    np.testing.assert_allclose(_loss(labels, "labels", 0.1), -(smoothed * np.log(P)).sum(1), rtol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropy(1.5)


def test_probability_mode_draws_a_new_label_each_epoch_from_the_votes():
    """PLD: labels follow the vote distribution, depend only on (seed, epoch), change per epoch."""
    distributions = np.tile(np.array([[0.6, 0.3, 0.1, 0.0]], np.float32), (20000, 1))
    first = draw_labels(distributions, seed=0, epoch=0)
    np.testing.assert_array_equal(first, draw_labels(distributions, seed=0, epoch=0))
    assert not np.array_equal(first, draw_labels(distributions, seed=0, epoch=1))
    np.testing.assert_allclose(np.bincount(first, minlength=4) / len(first), [0.6, 0.3, 0.1, 0.0], atol=0.015)
    assert first.dtype == np.int32


def test_arcface_margin_schedule_grows_from_zero_to_the_margin():
    from fer_keras.losses import ArcFaceMarginLoss, arcface_loss
    from fer_keras.objective import Context

    cosine = keras.ops.convert_to_tensor(np.array([[0.6, 0.2, -0.1], [0.1, 0.5, 0.3]], np.float32))
    targets = Targets.from_batch(keras.ops.convert_to_tensor(np.array([0, 2])), "labels")
    loss = ArcFaceMarginLoss(scale=16.0, margin=0.5, warmup_epochs=4.0)
    at = lambda epoch: keras.ops.convert_to_numpy(loss(targets, cosine, Context(epoch=keras.ops.convert_to_tensor(epoch, "float32"))))  # noqa: E731
    plain = lambda m: keras.ops.convert_to_numpy(arcface_loss(targets.labels, cosine, 16.0, m))  # noqa: E731
    np.testing.assert_allclose(at(0.0), plain(0.0), rtol=1e-5)  # softmax cross-entropy at the start
    np.testing.assert_allclose(at(2.0), plain(0.25), rtol=1e-5)
    np.testing.assert_allclose(at(9.0), plain(0.5), rtol=1e-5)
    assert np.all(at(0.0) < at(2.0)) and np.all(at(2.0) < at(4.0))
    fixed = ArcFaceMarginLoss(scale=16.0, margin=0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fixed(targets, cosine, Context())), plain(0.5), rtol=1e-6)


@pytest.mark.parametrize("kind", ["labels", "distribution", "multi_hot"])
def test_from_logits_equals_the_probability_form_for_every_target_kind(kind):
    """``from_logits=True`` on log(P) + c gives the same losses as the probability form."""
    values = {"labels": np.array([0, 2, 3]), "distribution": VOTES / VOTES.sum(1, keepdims=True), "multi_hot": (VOTES > 3).astype("float32")}[kind]
    targets = Targets.from_batch(keras.ops.convert_to_tensor(values), kind)
    logits = keras.ops.convert_to_tensor(np.log(P) + 3.0)
    from_logits = keras.ops.convert_to_numpy(CrossEntropy(0.1 if kind == "labels" else 0.0, from_logits=True)(targets, logits))
    reference = _loss(values, kind, 0.1 if kind == "labels" else 0.0)
    np.testing.assert_allclose(from_logits, reference, rtol=1e-5)
