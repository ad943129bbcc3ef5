"""CARBlock / DSBlock (MrCAR Fig. 4): shapes, exact weight counts, ablation flag, serialisation."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.layers import CARBlock, DSBlock


def _ca_params(channels):
    mip = max(8, channels // 32)
    return channels * mip + mip + 4 * mip + 2 * (mip * channels + channels)


def _block_params(in_channels, filters, ratio=4, attention=True, projection=None):
    mid = filters // ratio
    total = in_channels * mid + 4 * mid  # reduce 1x1 + BN
    total += mid * mid + 4 * mid  # 1x1 branch + BN
    total += 9 * mid * mid + 4 * mid  # 3x3 branch + BN
    total += _ca_params(2 * mid) if attention else 0
    total += 2 * mid * filters + 4 * filters  # expand 1x1 + BN
    if projection if projection is not None else in_channels != filters:
        total += in_channels * filters + 4 * filters  # shortcut 1x1 + BN
    return total


@pytest.mark.parametrize(
    "cls, in_shape, filters, out_shape",
    [
        (CARBlock, (2, 22, 22, 64), 128, (2, 22, 22, 128)),
        (DSBlock, (2, 22, 22, 128), 128, (2, 11, 11, 128)),
        (DSBlock, (2, 11, 11, 256), 256, (2, 6, 6, 256)),
        (DSBlock, (2, 5, 11, 64), 128, (2, 3, 6, 128)),
        (CARBlock, (2, 6, 6, 512), 512, (2, 6, 6, 512)),
    ],
)
def test_output_shapes(cls, in_shape, filters, out_shape):
    block = cls(filters)
    assert tuple(block(keras.random.normal(in_shape)).shape) == out_shape
    assert block.compute_output_shape((None, *in_shape[1:])) == (None, *out_shape[1:])


def test_exact_weight_counts():
    block = CARBlock(128)
    block.build((None, 22, 22, 64))
    assert block.count_params() == _block_params(64, 128) == 31_784
    ds = DSBlock(128)
    ds.build((None, 22, 22, 128))
    assert ds.shortcut_conv is None and ds.pool is not None  # max-pool shortcut, no weights
    assert ds.count_params() == _block_params(128, 128) == 25_128
    no_ca = CARBlock(128, use_attention=False)
    no_ca.build((None, 22, 22, 64))
    assert no_ca.attention is None
    assert no_ca.count_params() == _block_params(64, 128, attention=False)
    ds_projection = DSBlock(256)
    ds_projection.build((None, 11, 11, 128))
    assert ds_projection.count_params() == _block_params(128, 256, projection=True)


def test_identity_shortcut_when_widths_match():
    block = CARBlock(64)
    block.build((None, 8, 8, 64))
    assert block.shortcut_conv is None and block.pool is None


def test_training_step_gives_finite_gradients():
    block = DSBlock(32, bottleneck_ratio=2)
    x = tf.random.normal((2, 9, 7, 16))
    with tf.GradientTape() as tape:
        y = block(x, training=True)
        loss = tf.reduce_mean(tf.square(y))
    grads = tape.gradient(loss, block.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert np.all(y.numpy() >= 0)  # final ReLU


@pytest.mark.parametrize("cls", [CARBlock, DSBlock])
def test_config_round_trip_and_keras_file(cls, tmp_path):
    block = cls(32, bottleneck_ratio=2, use_attention=False, reduction=16, min_channels=4, name="block")
    config = block.get_config()
    for arg in inspect.signature(cls.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config, arg
    clone = cls.from_config(config)
    assert clone.get_config() == config

    inputs = keras.Input((9, 7, 16))
    model = keras.Model(inputs, cls(32, bottleneck_ratio=2)(inputs))
    x = np.random.default_rng(0).normal(size=(2, 9, 7, 16)).astype("float32")
    path = str(tmp_path / "block.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())


@pytest.mark.parametrize("kwargs", [{"filters": 0}, {"filters": 8, "bottleneck_ratio": 16}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        CARBlock(**kwargs)
