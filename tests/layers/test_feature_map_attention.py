"""FeatureMapSelfAttention (FAML Sec. 3.1, Fig. 4): NumPy reference on a small map (pixel and
patch tokens, odd sides), shapes, config, .keras round trip, bad arguments."""

import inspect

import keras
import numpy as np
import pytest

from fer_keras.layers import FeatureMapSelfAttention


def _layer_norm(x, gamma, beta, epsilon=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def _gelu(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def _reference(x, layer):
    """The block from ``layer``'s weights in float64 NumPy: patchify, pre-norm MHSA + MLP, fold back."""
    w = {v.path.split("/", 1)[1]: np.asarray(v.numpy(), "float64") for v in layer.weights}
    b, h, wd, c = x.shape
    p = layer.patch_size
    rows, cols = -(-h // p), -(-wd // p)
    padded = np.zeros((b, rows * p, cols * p, c))
    padded[:, :h, :wd] = x
    tokens = padded.reshape(b, rows, p, cols, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, rows * cols, p * p * c)
    y = _layer_norm(tokens, w["attention_norm/gamma"], w["attention_norm/beta"])
    if layer.position_embedding:
        y = y + w["positions"]
    q = np.einsum("btc,chd->bthd", y, w["attention/query/kernel"]) + w["attention/query/bias"]
    k = np.einsum("btc,chd->bthd", y, w["attention/key/kernel"]) + w["attention/key/bias"]
    v = np.einsum("btc,chd->bthd", y, w["attention/value/kernel"]) + w["attention/value/bias"]
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    attended = np.einsum("bhqk,bkhd->bqhd", scores, v)
    tokens = tokens + np.einsum("bqhd,hdc->bqc", attended, w["attention/attention_output/kernel"]) + w["attention/attention_output/bias"]
    if layer.mlp_ratio:
        hidden = _gelu(_layer_norm(tokens, w["mlp_norm/gamma"], w["mlp_norm/beta"]) @ w["mlp_hidden/kernel"] + w["mlp_hidden/bias"])
        tokens = tokens + hidden @ w["mlp_output/kernel"] + w["mlp_output/bias"]
    out = tokens.reshape(b, rows, cols, p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, rows * p, cols * p, c)
    return out[:, :h, :wd]


def _randomized(layer, shape, seed=0):
    layer.build(shape)
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32") + (1.0 if v.path.endswith("gamma") else 0.0))
    return layer


@pytest.mark.parametrize(
    "shape, heads, mlp_ratio, patch_size, positions",
    [
        ((2, 4, 4, 8), 2, 2.0, 1, True),  # every pixel a token
        ((2, 5, 3, 4), 4, 1.0, 2, True),  # 2x2 patches, odd sides padded then cropped
        ((1, 3, 3, 6), 3, 0.0, 1, False),  # attention only, no position embedding
    ],
)
def test_matches_numpy_reference(shape, heads, mlp_ratio, patch_size, positions):
    layer = _randomized(FeatureMapSelfAttention(heads, mlp_ratio, patch_size, positions), shape)
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, _reference(x.astype("float64"), layer), atol=2e-4, rtol=0)


@pytest.mark.parametrize("shape, patch_size, tokens", [((2, 22, 22, 64), 2, 121), ((2, 11, 11, 128), 1, 121), ((2, 6, 6, 256), 1, 36), ((1, 7, 9, 16), 3, 9)])
def test_shapes_and_token_count(shape, patch_size, tokens):
    layer = FeatureMapSelfAttention(4, 2.0, patch_size)
    out = layer(keras.random.normal(shape))
    assert tuple(out.shape) == shape
    assert tuple(layer.positions.shape) == (1, tokens, shape[-1] * patch_size**2)


def test_config_round_trip_and_keras_file(tmp_path):
    layer = FeatureMapSelfAttention(2, 1.5, 2, False, 0.1, name="att")
    assert set(inspect.signature(FeatureMapSelfAttention.__init__).parameters) - {"self", "kwargs"} <= set(layer.get_config())
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, FeatureMapSelfAttention.from_config(layer.get_config())(inputs))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 8)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        FeatureMapSelfAttention(3).build((None, 4, 4, 8))
    with pytest.raises(ValueError, match="patch_size"):
        FeatureMapSelfAttention(patch_size=0)
    with pytest.raises(ValueError, match="H and W"):
        FeatureMapSelfAttention(2).build((None, None, None, 8))
