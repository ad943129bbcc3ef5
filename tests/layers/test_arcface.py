"""ArcFace head (Eq. 9-10) and ArcFaceLoss: NumPy references, margin only on the target,
finite gradients at cos = +-1, loss equals the cross-entropy of the head's training output."""

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.layers import ArcFace, additive_angular_margin
from fer_keras.losses import ArcFaceLoss, arcface_loss

S, M = 16.0, 0.5


def _head(dim=8, classes=5, seed=0, **kwargs):
    head = ArcFace(classes, scale=S, margin=M, **kwargs)
    head.build((None, dim))
    head.kernel.assign(np.random.default_rng(seed).normal(size=(dim, classes)).astype("float32"))
    return head


def _np_cosine(features, kernel):
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    w = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    return f @ w


def test_inference_logits_are_scaled_cosines():
    head = _head()
    x = np.random.default_rng(1).normal(size=(6, 8)).astype("float32")
    cos = _np_cosine(x.astype("float64"), head.kernel.numpy().astype("float64"))
    labels = np.arange(6) % 5
    np.testing.assert_allclose(head.compute_logits(x).numpy(), S * cos, atol=1e-5)
    # training=False ignores labels; no labels ignores training.
    np.testing.assert_allclose(head.compute_logits(x, labels=labels, training=False).numpy(), S * cos, atol=1e-5)
    np.testing.assert_allclose(head.compute_logits(x, training=True).numpy(), S * cos, atol=1e-5)
    probabilities = head(x).numpy()
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, keras.ops.softmax(S * cos).numpy(), atol=1e-6)


def test_training_margin_only_on_target():
    head = _head()
    x = np.random.default_rng(2).normal(size=(6, 8)).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 0])
    cos = _np_cosine(x.astype("float64"), head.kernel.numpy().astype("float64"))
    train = head.compute_logits(x, labels=labels, training=True).numpy()
    infer = head.compute_logits(x).numpy()
    target = np.zeros_like(train, dtype=bool)
    target[np.arange(6), labels] = True
    np.testing.assert_allclose(train[~target], infer[~target], atol=1e-6)
    theta = np.arccos(cos[target])
    assert np.all(theta + M < math.pi)
    np.testing.assert_allclose(train[target], S * np.cos(theta + M), atol=1e-4)
    assert np.all(train[target] < infer[target])  # the margin lowers the target logit


def test_fallback_when_theta_plus_margin_exceeds_pi():
    cos = np.array([[-0.95, 0.3], [-0.5, 0.1]], "float32")  # theta = 2.82 (> pi - m), 2.09
    logits = keras.ops.convert_to_numpy(additive_angular_margin(cos, np.array([0, 0]), S, M))
    assert logits[0, 0] == pytest.approx(S * (-0.95 - M * math.sin(M)), abs=1e-4)
    assert logits[1, 0] == pytest.approx(S * math.cos(math.acos(-0.5) + M), abs=1e-4)
    np.testing.assert_allclose(logits[:, 1], S * cos[:, 1], atol=1e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_finite_gradients_at_cos_plus_minus_one(sign):
    head = _head(dim=4, classes=3)
    kernel = head.kernel.numpy()
    features = tf.constant(sign * kernel.T[[0, 1, 2]] * 3.0)  # each row parallel to a class weight
    labels = tf.constant([0, 1, 2])
    np.testing.assert_allclose(np.diag(head.cosine(features).numpy()), sign, atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(features)
        probabilities = head(features, labels=labels, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    grads = tape.gradient(loss, [features, head.kernel])
    assert np.isfinite(loss.numpy())
    for g in grads:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(g)))


def test_loss_equals_cross_entropy_of_training_output():
    head = _head()
    x = np.random.default_rng(3).normal(size=(6, 8)).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 1])
    probabilities = head(x, labels=labels, training=True)
    ce = keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy()
    cosine = head.cosine(x)
    np.testing.assert_allclose(arcface_loss(labels, cosine, S, M).numpy(), ce, atol=1e-4)
    assert float(ArcFaceLoss(S, M)(labels, cosine)) == pytest.approx(float(ce.mean()), abs=1e-4)
    # NumPy Eq. 10.
    cos = cosine.numpy().astype("float64")
    logits = S * cos
    rows = np.arange(6)
    logits[rows, labels] = S * np.cos(np.arccos(cos[rows, labels]) + M)
    expected = -(logits[rows, labels] - np.log(np.exp(logits).sum(axis=1)))
    np.testing.assert_allclose(arcface_loss(labels, cosine, S, M).numpy(), expected, atol=1e-4)


def test_return_logits_config_and_keras_file(tmp_path):
    head = ArcFace(5, scale=8.0, margin=0.3, easy_margin=True, return_logits=True, epsilon=1e-6, name="arc")
    config = head.get_config()
    for arg in inspect.signature(ArcFace.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config, arg
    assert ArcFace.from_config(config).get_config() == config
    loss_config = ArcFaceLoss(8.0, 0.3, True).get_config()
    assert ArcFaceLoss.from_config(loss_config).get_config() == loss_config

    inputs = keras.Input((8,))
    model = keras.Model(inputs, ArcFace(5, return_logits=True)(inputs))
    x = np.random.default_rng(4).normal(size=(3, 8)).astype("float32")
    path = str(tmp_path / "arcface.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    np.testing.assert_allclose(model(x).numpy(), 16.0 * model.layers[-1].cosine(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"num_classes": 7, "scale": 0}, {"num_classes": 7, "margin": 2.0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        ArcFace(**kwargs)
