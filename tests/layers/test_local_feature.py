"""LocalFeatureExtractor: NumPy reference (Sec. 3.1, and Eq. 3.3 with the modulator), shapes,
odd sizes, config, serialisation, bad arguments."""

import inspect

import keras
import numpy as np
import pytest

from fer_keras.layers import ChannelSpatialModulator, LocalFeatureExtractor
from tests.layers.test_modulator import batch_norm_reference, conv2d_reference, modulator_reference, randomize


def local_reference(x, layer, top, left):
    """Sec. 3.1 / EfficientFace from ``layer``'s weights, quadrants cut at ``top`` and ``left``."""
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    weights = lambda sub: [np.asarray(w, dtype="float64") for w in sub.get_weights()]  # noqa: E731
    patches = (x[:, :top, :left], x[:, :top, left:], x[:, top:, :left], x[:, top:, left:])
    out = []
    for i, patch in enumerate(patches):
        (kernel,) = weights(layer.convs[i])  # [3, 3, C, filters / C]
        kernel = kernel.reshape(3, 3, 1, -1)  # as a C-group kernel [3, 3, 1, filters]
        y = relu(batch_norm_reference(conv2d_reference(patch, kernel, stride=layer.strides, pad=1, groups=patch.shape[-1]), *weights(layer.conv_bns[i])))
        (depthwise,) = weights(layer.depthwise_convs[i])  # [3, 3, F, 1]
        depthwise = np.transpose(depthwise, (0, 1, 3, 2))  # as a grouped kernel [3, 3, 1, F]
        out.append(relu(batch_norm_reference(conv2d_reference(y, depthwise, pad=1, groups=y.shape[-1]), *weights(layer.depthwise_bns[i]))))
    return np.concatenate([np.concatenate(out[:2], axis=2), np.concatenate(out[2:], axis=2)], axis=1)


# (input shape, filters, strides, top rows, left columns): the top/left quadrant covers the
# first ceil(n / 2) of the n = ceil(side / strides) output rows/columns.
CASES = [
    ((2, 8, 8, 4), 8, 2, 4, 4),  # even: EfficientFace's half split, 2 outputs per channel
    ((2, 7, 6, 4), 8, 2, 4, 4),  # odd height: 4 + 3 rows -> 2 + 2 outputs
    ((1, 9, 5, 6), 6, 2, 6, 4),  # 9 -> 5 outputs (3 + 2), 5 -> 3 (2 + 1); 1 output per channel
    ((1, 10, 11, 3), 12, 3, 6, 6),  # stride 3: 10 -> 4 outputs (2 + 2), 11 -> 4 (2 + 2)
]


@pytest.mark.parametrize("shape, filters, strides, top, left", CASES)
def test_matches_numpy_reference(shape, filters, strides, top, left):
    layer = LocalFeatureExtractor(filters, strides=strides)
    layer.build((None,) + shape[1:])
    randomize(layer)
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    expected = local_reference(x.astype("float64"), layer, top, left)
    assert out.shape == expected.shape == (shape[0], -(-shape[1] // strides), -(-shape[2] // strides), filters)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


def test_eq_3_3_local_plus_modulated_stage2():
    """``Fea_final = Fea_local + Fea_stage2 * Z(Fea_stage2)`` on a small tensor (Eq. 3.1-3.3)."""
    stem = np.random.default_rng(3).normal(size=(2, 10, 10, 4)).astype("float32")
    stage2 = np.random.default_rng(4).normal(size=(2, 5, 5, 16)).astype("float32")
    local, modulator = LocalFeatureExtractor(16), ChannelSpatialModulator(reduction=4, dilation=2)
    local.build(stem.shape)
    modulator.build(stage2.shape)
    randomize(local, seed=5)
    randomize(modulator, seed=6)
    final = keras.ops.convert_to_numpy(local(stem, training=False) + modulator(stage2, training=False))
    _, modulated = modulator_reference(stage2.astype("float64"), modulator)
    expected = local_reference(stem.astype("float64"), local, 6, 6) + modulated
    np.testing.assert_allclose(final, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "shape, filters, expected",
    [
        ((2, 56, 56, 64), 128, (2, 28, 28, 128)),  # ResNet-18 stem at 224x224 -> stage 2
        ((1, 56, 56, 64), 512, (1, 28, 28, 512)),  # ResNet-50 stage-2 width
        ((2, 12, 12, 64), 128, (2, 6, 6, 128)),  # 48x48 input, stride-4 stem
        ((2, 24, 24, 64), 128, (2, 12, 12, 128)),  # 48x48 input, stride-2 stem
        ((2, 7, 7, 8), 16, (2, 4, 4, 16)),  # odd
        ((1, 3, 5, 8), 8, (1, 2, 3, 8)),  # smallest: each side > strides
    ],
)
def test_shapes(shape, filters, expected):
    layer = LocalFeatureExtractor(filters)
    x = keras.random.normal(shape)
    assert layer(x).shape == expected
    assert layer(x, training=True).shape == expected
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + expected[1:]


def test_unknown_spatial_size():
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, LocalFeatureExtractor(16)(inputs))
    assert model(np.zeros((1, 9, 6, 8), "float32")).shape == (1, 5, 3, 16)


def test_parameter_count():
    layer = LocalFeatureExtractor(128)
    layer.build((None, 56, 56, 64))
    # Per quadrant: 64-group 3x3 (2 outputs per input channel), depthwise 3x3, two BN.
    assert layer.count_params() == 4 * (9 * 1 * 128 + 9 * 128 + 2 * 4 * 128)
    assert len(layer.trainable_weights) == 4 * 6


def test_config_round_trip_has_every_argument():
    layer = LocalFeatureExtractor(32, strides=3, kernel_initializer="glorot_uniform", name="local")
    config = layer.get_config()
    for arg in inspect.signature(LocalFeatureExtractor.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config
    clone = LocalFeatureExtractor.from_config(config)
    assert (clone.filters, clone.strides, clone.name) == (32, 3, "local")
    assert isinstance(clone.kernel_initializer, keras.initializers.GlorotUniform)


def test_keras_file_round_trip(tmp_path):
    """Stem, local branch and modulated stage 2 added (Eq. 3.3), saved and loaded safely."""
    inputs = keras.Input((15, 15, 3))
    stem = keras.layers.Conv2D(8, 3, strides=1, padding="same")(inputs)
    stage2 = keras.layers.Conv2D(16, 3, strides=2, padding="same")(stem)
    final = ChannelSpatialModulator(reduction=4)(stage2) + LocalFeatureExtractor(16)(stem)
    model = keras.Model(inputs, final)
    x = np.random.default_rng(2).normal(size=(2, 15, 15, 3)).astype("float32")
    path = str(tmp_path / "local.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(loaded(x)))


@pytest.mark.parametrize("kwargs", [{"filters": 0}, {"filters": 8, "strides": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LocalFeatureExtractor(**kwargs)


@pytest.mark.parametrize("shape", [(None, 2, 8, 4), (None, 8, 1, 4), (None, 8, 4), (None, 8, 8, None), (None, 8, 8, 3)])
def test_bad_input_shapes(shape):
    with pytest.raises(ValueError, match="Received: input_shape"):
        LocalFeatureExtractor(8).build(shape)
