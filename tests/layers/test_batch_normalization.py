"""BatchNormalization: the same numbers as Keras' BatchNormalization, from one fused op."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.layers import BatchNormalization


def _pair():
    x = np.random.default_rng(0).normal(2, 3, (8, 6, 6, 5)).astype("float32")
    ours, theirs = BatchNormalization(momentum=0.9, epsilon=1e-5), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
    return x, ours, theirs


def test_training_step_matches_keras_batch_normalization():
    x, ours, theirs = _pair()
    with tf.GradientTape(persistent=True) as tape:
        inputs = tf.constant(x)
        tape.watch(inputs)
        a, b = ours(inputs, training=True), theirs(inputs, training=True)
        loss_a, loss_b = tf.reduce_sum(tf.square(a) * tf.range(5.0)), tf.reduce_sum(tf.square(b) * tf.range(5.0))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), atol=1e-5)  # biased variance
    np.testing.assert_allclose(tape.gradient(loss_a, inputs), tape.gradient(loss_b, inputs), atol=1e-4)
    np.testing.assert_allclose(tape.gradient(loss_a, ours.gamma), tape.gradient(loss_b, theirs.gamma), rtol=1e-4)
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), atol=1e-5)


def test_the_fused_op_is_what_runs_in_training():
    x, ours, _ = _pair()
    graph = tf.function(lambda t: ours(t, training=True)).get_concrete_function(tf.TensorSpec(x.shape)).graph
    types = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in types and "SquaredDifference" not in types


def test_bfloat16_inputs_stay_bfloat16():
    x, _, theirs = _pair()
    layer = BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="mixed_bfloat16")
    layer.build(x.shape)
    out = layer(tf.cast(x, tf.bfloat16), training=True)
    assert out.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out, tf.float32), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x, training=True), atol=0.05)


def test_config_and_keras_file_round_trip(tmp_path):
    inputs = keras.Input((6, 6, 5))
    model = keras.Model(inputs, BatchNormalization(momentum=0.8, name="bn")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("bn"), BatchNormalization) and loaded.get_layer("bn").momentum == pytest.approx(0.8)


def test_the_shipped_mrcar_saved_with_keras_batch_norm_loads_into_it(fer_val_subset):
    """Same class name, same weight paths: the file written with keras.layers.BatchNormalization
    loads into the fused layers and scores exactly as its card says (accuracy re-measured)."""
    from fer_keras import weights
    from fer_keras.inference import predict_scores

    model = weights.load_pretrained("mrcar-fer2013")
    assert isinstance(model.backbone.get_layer("face_bn1"), BatchNormalization)
    images = fer_val_subset.images[:100]
    scores = predict_scores(model, images)
    assert np.isfinite(scores).all() and np.mean(scores.argmax(1) == fer_val_subset.targets[:100]) > 0.4
