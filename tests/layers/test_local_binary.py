"""LocalBinaryConv2D / LBSL (LBAN-IL Sec. 2.1): fixed sparse binary anchors (values, sparsity, no
gradient, no optimiser update, saved in .keras files), a NumPy reference, Table 2 flags, config."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.layers import LBSL, LocalBinaryConv2D
from fer_keras.layers.local_binary import local_binary_kernel


def _conv3x3_same(x, kernel, strides):
    """NumPy 3x3 convolution, "same" padding as TensorFlow's (extra padding bottom/right)."""
    n, h, w, _ = x.shape
    out_h, out_w = -(-h // strides), -(-w // strides)
    pad_h, pad_w = max((out_h - 1) * strides + 3 - h, 0), max((out_w - 1) * strides + 3 - w, 0)
    padded = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = np.zeros((n, out_h, out_w, kernel.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, i * strides : i * strides + 3, j * strides : j * strides + 3, :]
            out[:, i, j, :] = np.einsum("nhwc,hwcf->nf", patch, kernel)
    return out


@pytest.mark.parametrize("sparsity", [0.5, 0.25])
def test_kernel_has_the_requested_sparsity_and_values(sparsity):
    kernel = local_binary_kernel((3, 3, 64, 128), sparsity, seed=3)
    assert kernel.dtype == np.float32 and set(np.unique(kernel)) == {-1.0, 0.0, 1.0}
    assert (kernel == 0).sum() == round(sparsity * kernel.size)  # exactly, not only in expectation
    nonzero = kernel[kernel != 0]
    assert abs(nonzero.mean()) < 0.02  # +1 and -1 equally likely
    np.testing.assert_array_equal(kernel, local_binary_kernel((3, 3, 64, 128), sparsity, seed=3))
    assert not np.array_equal(kernel, local_binary_kernel((3, 3, 64, 128), sparsity, seed=4))


def test_layer_draws_its_kernel_from_its_seed_and_matches_numpy():
    """``y = W_1x1 relu(B * x)`` with ``B`` the seeded kernel; stride 2 with "same" padding."""
    layer = LocalBinaryConv2D(6, weight_size=5, strides=2, seed=7)
    x = np.random.default_rng(0).normal(size=(2, 7, 6, 4)).astype("float32")
    y = layer(x).numpy()
    anchor = layer.anchor_kernel.numpy()
    np.testing.assert_array_equal(anchor, local_binary_kernel((3, 3, 4, 5), 0.5, 7))
    pointwise = layer.pointwise.kernel.numpy()[0, 0]  # [5, 6]
    expected = np.maximum(_conv3x3_same(x, anchor, 2), 0) @ pointwise
    assert y.shape == (2, 4, 3, 6) == layer.compute_output_shape((2, 7, 6, 4))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert layer.anchors == 5 and LocalBinaryConv2D(6).anchors == 6  # weight size defaults to filters


def test_anchors_get_no_gradient_and_no_optimizer_update():
    lbsl = LBSL(8, strides=2, seed=0)
    x = tf.random.normal((4, 9, 9, 4))
    lbsl(x)
    anchor = lbsl.lbc.anchor_kernel
    assert not anchor.trainable
    assert all(w is not anchor for w in lbsl.trainable_weights)
    assert [w.path for w in lbsl.non_trainable_weights if "anchor" in w.path] == [anchor.path]
    before = anchor.numpy().copy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(lbsl(x, training=True)))
    gradients = tape.gradient(loss, [anchor, *lbsl.trainable_variables])
    assert gradients[0] is None
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients[1:])
    pointwise_before = lbsl.lbc.pointwise.kernel.numpy().copy()
    keras.optimizers.SGD(0.1).apply_gradients(zip(gradients[1:], lbsl.trainable_variables))
    np.testing.assert_array_equal(anchor.numpy(), before)
    assert not np.array_equal(lbsl.lbc.pointwise.kernel.numpy(), pointwise_before)


def _lbsl_trainable(c_in, filters, ws, local_binary=True, standard_conv=True, projection=False):
    total = 2 * c_in  # BN before the LBC layer
    total += ws * filters + (0 if local_binary else 9 * c_in * ws)  # 1x1 (+ learned 3x3 anchor)
    total += 2 * filters + 9 * filters * filters if standard_conv else 0
    total += c_in * filters if projection else 0
    return total


@pytest.mark.parametrize(
    "flags, projection",
    [
        ({}, True),  # LBAN
        ({"standard_conv": False}, True),  # LBCNN
        ({"standard_conv": False, "skip": False}, False),  # LBC
        ({"local_binary": False}, True),  # LBAN-dagger
        ({"local_binary": False, "skip": False}, False),  # LBAN-double-dagger
    ],
)
def test_table_2_flags_weights_and_shapes(flags, projection):
    lbsl = LBSL(16, weight_size=12, strides=2, seed=1, **flags)
    y = lbsl(keras.random.normal((2, 9, 8, 8)))
    assert tuple(y.shape) == (2, 5, 4, 16) == lbsl.compute_output_shape((2, 9, 8, 8))
    local_binary = flags.get("local_binary", True)
    trainable = sum(int(np.prod(w.shape)) for w in lbsl.trainable_weights)
    assert trainable == _lbsl_trainable(8, 16, 12, local_binary, flags.get("standard_conv", True), projection)
    anchors = [w for w in lbsl.non_trainable_weights if "anchor" in w.path]
    assert len(anchors) == (1 if local_binary else 0)
    assert (lbsl.projection is not None) == projection


def test_identity_skip_adds_the_input():
    lbsl = LBSL(8, seed=0)
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 8)).astype("float32")
    lbsl(x)
    assert lbsl.projection is None
    lbsl.conv.kernel.assign(np.zeros_like(lbsl.conv.kernel.numpy()))
    np.testing.assert_allclose(lbsl(x).numpy(), x, atol=1e-6)


def test_kernels_identical_after_keras_save_and_load(tmp_path):
    """The saved kernels come back, not a fresh draw from the seed: the test replaces them first."""
    inputs = keras.Input((9, 9, 4))
    model = keras.Model(inputs, LBSL(8, strides=2, seed=5, name="lbsl")(inputs))
    lbc = model.get_layer("lbsl").lbc
    lbc.anchor_kernel.assign(-lbc.anchor_kernel.numpy())
    expected_kernel = lbc.anchor_kernel.numpy()
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 4)).astype("float32")
    path = str(tmp_path / "lbsl.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    loaded_lbc = loaded.get_layer("lbsl").lbc
    np.testing.assert_array_equal(loaded_lbc.anchor_kernel.numpy(), expected_kernel)
    assert not loaded_lbc.anchor_kernel.trainable
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (LocalBinaryConv2D, {"filters": 8, "weight_size": 4, "strides": 2, "sparsity": 0.25, "seed": 3, "activation": "sigmoid"}),
        (LBSL, {"filters": 8, "weight_size": 4, "strides": 2, "local_binary": False, "standard_conv": False, "skip": False, "sparsity": 0.25, "seed": 3}),
    ],
)
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="layer")
    config = layer.get_config()
    for arg in inspect.signature(cls.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config, arg
    assert cls.from_config(config).get_config() == config
    drawn = cls(8)
    assert cls.from_config(drawn.get_config()).seed == drawn.seed  # a drawn seed is kept


@pytest.mark.parametrize("kwargs", [{"filters": 0}, {"filters": 8, "sparsity": 1.0}, {"filters": 8, "weight_size": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LocalBinaryConv2D(**kwargs)
