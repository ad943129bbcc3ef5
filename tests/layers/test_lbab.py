"""LBAB (LBAN-IL Sec. 2.2, Fig. 2): shapes for 2/1/0 samplings, the encoder-decoder and the
``(1 + M) * T`` combination against NumPy, exact weight counts, serialisation."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.layers import LBAB


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_mask(block, d0):
    """``sigmoid(Conv1x1(relu(BN(d_0))))`` in NumPy (BN in inference mode)."""
    bn = block.mask_bn
    normalised = (d0 - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) * bn.gamma.numpy() + bn.beta.numpy()
    return _sigmoid(np.maximum(normalised, 0) @ block.mask_conv.kernel.numpy()[0, 0] + block.mask_conv.bias.numpy())


@pytest.mark.parametrize(
    "samplings, size",
    [(2, (20, 20)), (1, (10, 10)), (0, (5, 5)), (2, (11, 9)), (1, (7, 6))],  # FER2013 sizes, then odd ones
)
def test_output_shapes_and_levels(samplings, size):
    block = LBAB(16, samplings, seed=0)
    x = keras.random.normal((2, *size, 16))
    assert tuple(block(x).shape) == (2, *size, 16) == block.compute_output_shape((2, *size, 16))
    assert len(block.encoder) == samplings + 1 and len(block.pools) == len(block.deconvs) == samplings
    assert tuple(block.attention(x).shape) == (2, *size, 16)


@pytest.mark.parametrize("samplings", [0, 1, 2])
def test_mask_and_combination_match_numpy(samplings):
    """``e_0 = LBSL_0(x)``, ``e_i = LBSL_i(MaxPool(e_{i-1}))``; ``d_{i-1} = crop(Deconv(d_i)) + e_{i-1}``;
    ``M = sigmoid(Conv1x1(relu(BN(d_0))))``; ``y = (1 + M) * T(x)``; the encoder steps come from
    the block's own sublayers, the decoder sums, the mask and the combination are NumPy."""
    block = LBAB(8, samplings, seed=2)
    x = np.random.default_rng(samplings).normal(size=(2, 7, 5, 8)).astype("float32")
    block(x)
    levels = [block.encoder[0](x).numpy()]
    for pool, lbsl in zip(block.pools, block.encoder[1:]):
        levels.append(lbsl(pool(levels[-1])).numpy())
    assert [level.shape[1:3] for level in levels] == [(7, 5), (4, 3), (2, 2)][: samplings + 1]
    d = levels[-1]
    for deconv, skip in zip(reversed(block.deconvs), reversed(levels[:-1])):
        up = deconv(d).numpy()
        d = up[:, : skip.shape[1], : skip.shape[2]] + skip
    # Inference statistics of the mask's BN from d_0 itself, so the mask is not saturated.
    block.mask_bn.moving_mean.assign(d.mean(axis=(0, 1, 2)))
    block.mask_bn.moving_variance.assign(d.var(axis=(0, 1, 2)))
    mask = _numpy_mask(block, d)
    np.testing.assert_allclose(block.attention(x).numpy(), mask, rtol=1e-4, atol=1e-5)
    trunk = block.trunk(x).numpy()
    np.testing.assert_allclose(block(x).numpy(), (1.0 + mask) * trunk, rtol=1e-4, atol=1e-4)
    assert np.all((mask > 0) & (mask < 1)) and mask.std() > 0.1


def _lbsl_params(c_in, filters):
    """Trainable weights of an LBSL with an LBC layer, standard conv, identity skip (see
    tests/layers/test_local_binary.py)."""
    return 2 * c_in + filters * filters + 2 * filters + 9 * filters * filters


@pytest.mark.parametrize("samplings", [0, 1, 2])
def test_exact_weight_counts(samplings):
    c = 16
    block = LBAB(c, samplings, seed=0)
    block.build((None, 10, 10, c))
    lbsls = samplings + 2  # trunk + one per encoder level
    expected = lbsls * _lbsl_params(c, c) + samplings * 9 * c * c + 2 * c + c * c + c  # deconvs, mask BN, mask 1x1
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == expected
    anchors = [w for w in block.non_trainable_weights if "anchor" in w.path]
    assert len(anchors) == lbsls and all(tuple(w.shape) == (3, 3, c, c) for w in anchors)
    # Different anchors in every LBSL of the block.
    assert len({w.numpy().tobytes() for w in anchors}) == lbsls


def test_training_step_gives_finite_gradients_to_both_streams():
    block = LBAB(8, 2, seed=0)
    x = tf.random.normal((2, 9, 7, 8))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(block(x, training=True)))
    gradients = tape.gradient(loss, block.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    names = {v.path for v, g in zip(block.trainable_variables, gradients) if np.any(g.numpy() != 0)}
    assert any("trunk" in n for n in names) and any("mask_conv" in n for n in names) and any("deconv" in n for n in names)


def test_config_round_trip_and_keras_file(tmp_path):
    block = LBAB(8, 1, weight_size=4, local_binary=False, standard_conv=False, skip=False, sparsity=0.25, seed=3, name="block")
    config = block.get_config()
    for arg in inspect.signature(LBAB.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config, arg
    assert LBAB.from_config(config).get_config() == config

    inputs = keras.Input((7, 6, 8))
    model = keras.Model(inputs, LBAB(8, 2, seed=4, name="lbab")(inputs))
    x = np.random.default_rng(0).normal(size=(2, 7, 6, 8)).astype("float32")
    path = str(tmp_path / "lbab.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("kwargs", [{"filters": 0, "samplings": 1}, {"filters": 8, "samplings": -1}, {"filters": 8, "samplings": 1, "sparsity": -0.1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LBAB(**kwargs)
