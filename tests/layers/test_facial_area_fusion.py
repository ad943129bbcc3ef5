"""FacialAreaFusion (FAML Sec. 3.1, Fig. 1): NumPy reference (crops aligned on the main grid,
weighted addition), the default face areas, shapes, config, .keras round trip, bad arguments."""

import inspect

import keras
import numpy as np
import pytest

from fer_keras.layers import FacialAreaFusion
from fer_keras.layers.facial_area_fusion import FACE_AREAS


def _conv(x, kernel, stride):
    """Zero-padded (k // 2 each side) strided convolution, float64."""
    k = kernel.shape[0]
    pad = k // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows, cols = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], rows, cols, kernel.shape[-1]))
    for i in range(rows):
        for j in range(cols):
            out[:, i, j] = np.einsum("bhwc,hwcf->bf", x[:, i * stride : i * stride + k, j * stride : j * stride + k], kernel)
    return out


def _reference(x, layer, cells):
    out = _conv(x, layer.main_conv.kernel.numpy().astype("float64"), layer.strides)
    for (r0, c0, r1, c1), conv, weight in zip(cells, layer.area_convs, layer.area_weights.numpy()):
        s = layer.strides
        area = _conv(x[:, r0 * s : r1 * s, c0 * s : c1 * s], conv.kernel.numpy().astype("float64"), s)
        out[:, r0:r1, c0:c1] += weight * area
    return out


@pytest.mark.parametrize(
    "shape, kernel_size, strides, cells",
    [
        # 44x44 crop, 3x3/2 stem: 22x22 grid; eyes rows 4..13 (0.2*22=4.4, 0.55*22=12.1), cols 2..20; mouth rows 13..22, cols 4..18
        ((2, 44, 44, 1), 3, 2, [(4, 2, 13, 20), (13, 4, 22, 18)]),
        # odd side, stride 1, 5x5 kernel: 9x9 grid
        ((1, 9, 9, 2), 5, 1, [(1, 0, 5, 9), (5, 1, 9, 8)]),
        # 7 -> 4 outputs at stride 2: the mouth crop reaches past the input's last row
        ((1, 7, 7, 3), 3, 2, [(0, 0, 3, 4), (2, 0, 4, 4)]),
    ],
)
def test_matches_numpy_reference(shape, kernel_size, strides, cells):
    layer = FacialAreaFusion(4, kernel_size, strides, area_weight=0.7)
    layer.build(shape)
    assert list(layer.area_cells(shape[1], shape[2]).values()) == cells
    layer.area_weights.assign([0.3, -1.2])
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (shape[0], -(-shape[1] // strides), -(-shape[2] // strides), 4)
    np.testing.assert_allclose(out, _reference(x.astype("float64"), layer, cells), atol=1e-4, rtol=0)


def test_zero_area_weights_give_the_plain_convolution_and_weights_learn():
    layer = FacialAreaFusion(8, 3, 2, area_weight=0.0)
    x = np.random.default_rng(1).normal(size=(2, 12, 12, 1)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, _conv(x.astype("float64"), layer.main_conv.kernel.numpy().astype("float64"), 2), atol=1e-4)
    assert any(v is layer.area_weights for v in layer.trainable_weights) and len(layer.trainable_weights) == 4
    frozen = FacialAreaFusion(8, trainable_area_weights=False)
    frozen.build((None, 12, 12, 1))
    assert not any(v is frozen.area_weights for v in frozen.trainable_weights)


def test_default_areas_are_eyes_and_mouth_of_different_sizes():
    assert list(FACE_AREAS) == ["eyes", "mouth"]
    (t1, l1, b1, r1), (t2, l2, b2, r2) = FACE_AREAS.values()
    assert b1 <= t2 and (b1 - t1) * (r1 - l1) != (b2 - t2) * (r2 - l2)


def test_config_round_trip_and_keras_file(tmp_path):
    layer = FacialAreaFusion(6, 5, 2, {"left": (0, 0, 1, 0.5)}, 0.2, False, True, name="fa")
    config = layer.get_config()
    assert set(inspect.signature(FacialAreaFusion.__init__).parameters) - {"self", "kwargs"} <= set(config)
    inputs = keras.Input((10, 10, 3))
    model = keras.Model(inputs, FacialAreaFusion.from_config(config)(inputs))
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        FacialAreaFusion(8, kernel_size=4)
    with pytest.raises(ValueError, match="top < bottom"):
        FacialAreaFusion(8, areas={"x": (0.5, 0.0, 0.4, 1.0)})
    with pytest.raises(ValueError, match="H, W and C known"):
        FacialAreaFusion(8).build((None, None, None, 1))
