"""CoordinateAttention: NumPy reference (Eq. 1-7), config, serialisation, bad arguments."""

import inspect

import keras
import numpy as np
import pytest

from fer_keras.layers import CoordinateAttention


def _fixed_layer(channels=16, reduction=4, seed=0):
    rng = np.random.default_rng(seed)
    layer = CoordinateAttention(reduction=reduction)
    layer.build((None, 6, 5, channels))
    mip = layer.reduced_channels
    weights = {
        "w1": rng.normal(size=(1, 1, channels, mip)).astype("float32") * 0.3,
        "b1": rng.normal(size=(mip,)).astype("float32") * 0.1,
        "gamma": rng.uniform(0.5, 1.5, size=(mip,)).astype("float32"),
        "beta": rng.normal(size=(mip,)).astype("float32") * 0.1,
        "mean": rng.normal(size=(mip,)).astype("float32") * 0.1,
        "var": rng.uniform(0.5, 1.5, size=(mip,)).astype("float32"),
        "wh": rng.normal(size=(1, 1, mip, channels)).astype("float32") * 0.3,
        "bh": rng.normal(size=(channels,)).astype("float32") * 0.1,
        "ww": rng.normal(size=(1, 1, mip, channels)).astype("float32") * 0.3,
        "bw": rng.normal(size=(channels,)).astype("float32") * 0.1,
    }
    layer.conv_reduce.set_weights([weights["w1"], weights["b1"]])
    layer.bn.set_weights([weights["gamma"], weights["beta"], weights["mean"], weights["var"]])
    layer.conv_h.set_weights([weights["wh"], weights["bh"]])
    layer.conv_w.set_weights([weights["ww"], weights["bw"]])
    return layer, weights


def _reference(x, w, epsilon=1e-5):
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    z_h = x.mean(axis=2)  # [B, H, C]  Eq. 2
    z_w = x.mean(axis=1)  # [B, W, C]  Eq. 3
    f = np.concatenate([z_h, z_w], axis=1) @ w["w1"][0, 0] + w["b1"]
    f = (f - w["mean"]) / np.sqrt(w["var"] + epsilon) * w["gamma"] + w["beta"]
    f = f * np.clip(f + 3.0, 0.0, 6.0) / 6.0  # h-swish, Eq. 4
    height = x.shape[1]
    g_h = sigmoid(f[:, :height] @ w["wh"][0, 0] + w["bh"])  # Eq. 5
    g_w = sigmoid(f[:, height:] @ w["ww"][0, 0] + w["bw"])  # Eq. 6
    return x * g_h[:, :, None, :] * g_w[:, None, :, :]  # Eq. 7


def test_matches_numpy_reference():
    layer, weights = _fixed_layer()
    assert layer.reduced_channels == 8  # max(8, 16 // 4)
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 16)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(out, _reference(x.astype("float64"), weights), atol=1e-5, rtol=0)


def test_reduced_width_and_weights():
    layer = CoordinateAttention()  # reduction 32, min 8
    layer.build((None, 22, 22, 256))
    assert layer.reduced_channels == 8
    # conv_reduce 256*8+8, bn 4*8, conv_h and conv_w 8*256+256 each.
    assert layer.count_params() == 256 * 8 + 8 + 4 * 8 + 2 * (8 * 256 + 256)
    layer = CoordinateAttention(reduction=4, min_channels=8)
    layer.build((None, 4, 4, 128))
    assert layer.reduced_channels == 32


def test_training_mode_and_shape():
    layer = CoordinateAttention(reduction=4)
    x = keras.random.normal((2, 7, 3, 16))
    assert layer(x, training=True).shape == (2, 7, 3, 16)
    assert layer.compute_output_shape((None, 7, 3, 16)) == (None, 7, 3, 16)


def test_config_round_trip_has_every_argument():
    layer = CoordinateAttention(reduction=8, min_channels=4, name="ca")
    config = layer.get_config()
    for arg in inspect.signature(CoordinateAttention.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config
    clone = CoordinateAttention.from_config(config)
    assert (clone.reduction, clone.min_channels, clone.name) == (8, 4, "ca")


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((6, 5, 16))
    model = keras.Model(inputs, CoordinateAttention(reduction=4)(inputs))
    x = np.random.default_rng(2).normal(size=(2, 6, 5, 16)).astype("float32")
    path = str(tmp_path / "ca.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(loaded(x)))


@pytest.mark.parametrize("kwargs", [{"reduction": 0}, {"min_channels": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        CoordinateAttention(**kwargs)
