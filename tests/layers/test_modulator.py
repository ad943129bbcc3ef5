"""ChannelSpatialModulator: NumPy reference (Eq. 3.1-3.2), heatmap, config, serialisation, bad arguments."""

import inspect

import keras
import numpy as np
import pytest

from fer_keras.layers import ChannelSpatialModulator

EPSILON = 1e-5


def conv2d_reference(x, kernel, stride=1, dilation=1, pad=0, groups=1):
    """``[B, H, W, C]`` (*) ``[kh, kw, C / groups, F]`` with ``pad`` zeros on every side (NumPy, float64)."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, group_in, filters = kernel.shape
    group_out = filters // groups
    out_h = (x.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    out_w = (x.shape[2] - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, filters))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dilation, i * dilation + stride * (out_h - 1) + 1, stride)
            cols = slice(j * dilation, j * dilation + stride * (out_w - 1) + 1, stride)
            window = x[:, rows, cols]
            for g in range(groups):
                outs, ins = slice(g * group_out, (g + 1) * group_out), slice(g * group_in, (g + 1) * group_in)
                out[..., outs] += window[..., ins] @ kernel[i, j, :, outs]
    return out


def batch_norm_reference(x, gamma, beta, mean, variance):
    return (x - mean) / np.sqrt(variance + EPSILON) * gamma + beta


def random_batch_norm(rng, bn):
    width = bn.gamma.shape[0]
    bn.set_weights([rng.uniform(0.5, 1.5, width), rng.normal(size=width) * 0.1, rng.normal(size=width) * 0.1, rng.uniform(0.5, 1.5, width)])


def randomize(layer, seed=0):
    """Every weight of ``layer`` (and its sublayers) random, BN statistics included."""
    rng = np.random.default_rng(seed)
    for sub in layer._flatten_layers(include_self=False):
        if isinstance(sub, keras.layers.BatchNormalization):
            random_batch_norm(rng, sub)
        elif sub.weights:
            sub.set_weights([rng.normal(size=w.shape) * 0.3 for w in sub.weights])


def modulator_reference(x, layer):
    """Eq. 3.1-3.2 from ``layer``'s weights: returns ``(Z, x * Z)``."""
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    weights = lambda sub: [np.asarray(w, dtype="float64") for w in sub.get_weights()]  # noqa: E731
    w1, b1 = weights(layer.channel_fc1)
    w2, b2 = weights(layer.channel_fc2)
    z_channel = relu(batch_norm_reference(x.mean(axis=(1, 2)) @ w1 + b1, *weights(layer.channel_bn))) @ w2 + b2
    kernel, bias = weights(layer.spatial_reduce)
    z = relu(batch_norm_reference(conv2d_reference(x, kernel) + bias, *weights(layer.spatial_reduce_bn)))
    for conv, bn in zip(layer.spatial_dilated, layer.spatial_dilated_bns):
        kernel, bias = weights(conv)
        z = relu(batch_norm_reference(conv2d_reference(z, kernel, dilation=layer.dilation, pad=layer.dilation) + bias, *weights(bn)))
    kernel, bias = weights(layer.spatial_out)
    z_spatial = conv2d_reference(z, kernel) + bias  # [B, H, W, 1]
    heatmap = 1.0 / (1.0 + np.exp(-(z_channel[:, None, None, :] + z_spatial)))  # Eq. 3.1
    return heatmap, x * heatmap  # Eq. 3.2


def _fixed_layer(shape=(2, 11, 9, 32), reduction=8, dilation=2):
    layer = ChannelSpatialModulator(reduction=reduction, dilation=dilation)
    layer.build((None,) + shape[1:])
    randomize(layer)
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    return layer, x


def test_matches_numpy_reference():
    layer, x = _fixed_layer()
    heatmap, expected = modulator_reference(x.astype("float64"), layer)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.heatmap(x, training=False)), heatmap, atol=1e-5, rtol=0)


def test_heatmap_is_a_sum_not_a_product():
    """Eq. 3.1 sums the branches; EfficientFace's product would give another Z."""
    layer, x = _fixed_layer()
    z_channel = keras.ops.convert_to_numpy(layer._channel(x, False))
    z_spatial = keras.ops.convert_to_numpy(layer._spatial(x, False))
    heatmap = keras.ops.convert_to_numpy(layer.heatmap(x, training=False))
    assert heatmap.shape == x.shape
    np.testing.assert_allclose(heatmap, 1.0 / (1.0 + np.exp(-(z_channel + z_spatial))), atol=1e-6)
    assert np.abs(heatmap - 1.0 / (1.0 + np.exp(-(z_channel * z_spatial)))).max() > 0.1


@pytest.mark.parametrize("shape", [(2, 28, 28, 128), (2, 6, 6, 64), (1, 7, 5, 16), (2, 56, 56, 64)])
def test_shapes_at_48_and_224_and_odd_sizes(shape):
    """Stage-2 maps of 224x224 (28x28, 56x56) and 48x48 (6x6) inputs, and odd sizes."""
    layer = ChannelSpatialModulator()
    x = keras.random.normal(shape)
    assert layer(x).shape == shape
    assert layer(x, training=True).shape == shape
    assert layer.heatmap(x).shape == shape
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + shape[1:]


def test_widths_and_parameter_count():
    layer = ChannelSpatialModulator()  # reduction 16, dilation 4
    layer.build((None, 28, 28, 128))
    mid = 8
    channel = 128 * mid + mid + 4 * mid + mid * 128 + 128
    spatial = 128 * mid + mid + 4 * mid + 2 * (9 * mid * mid + mid + 4 * mid) + mid + 1
    assert layer.reduced_channels == mid
    assert layer.count_params() == channel + spatial
    assert layer.spatial_dilated[0].dilation_rate == (4, 4)


def test_heatmap_builds_the_layer():
    layer = ChannelSpatialModulator(reduction=4)
    assert layer.heatmap(keras.random.normal((1, 5, 5, 8))).shape == (1, 5, 5, 8)


def test_config_round_trip_has_every_argument():
    layer = ChannelSpatialModulator(reduction=8, dilation=2, kernel_initializer="he_uniform", name="csm")
    config = layer.get_config()
    for arg in inspect.signature(ChannelSpatialModulator.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config
    clone = ChannelSpatialModulator.from_config(config)
    assert (clone.reduction, clone.dilation, clone.name) == (8, 2, "csm")
    assert isinstance(clone.kernel_initializer, keras.initializers.HeUniform)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((9, 7, 32))
    model = keras.Model(inputs, ChannelSpatialModulator(reduction=8)(keras.layers.Conv2D(32, 3, padding="same")(inputs)))
    x = np.random.default_rng(2).normal(size=(2, 9, 7, 32)).astype("float32")
    path = str(tmp_path / "csm.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(loaded(x)))


@pytest.mark.parametrize("kwargs", [{"reduction": 0}, {"dilation": 0}, {"dilation": -2}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        ChannelSpatialModulator(**kwargs)


@pytest.mark.parametrize("shape", [(None, 8, 8, 8), (None, 8, 32), (None, 8, 8, None)])
def test_bad_input_shapes(shape):
    with pytest.raises(ValueError, match="Received: input_shape"):
        ChannelSpatialModulator(reduction=16).build(shape)
