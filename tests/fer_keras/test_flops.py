"""count_flops / count_multiply_adds: hand counts, our layers, ResNet-50 at 224x224, bad inputs."""

import warnings

import keras
import numpy as np
import pytest

from fer_keras.flops import count_flops, count_multiply_adds
from fer_keras.layers import ChannelSpatialModulator, LocalFeatureExtractor


def _tiny_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)  # 6x6x4
    x = keras.layers.Flatten()(x)  # 144
    return keras.Model(inputs, {"logits": keras.layers.Dense(5)(x)})


def test_tiny_conv_dense_model_by_hand():
    conv_macs = 6 * 6 * 4 * (3 * 3 * 3)  # 3888
    dense_macs = 144 * 5  # 720
    biases = 6 * 6 * 4 + 5  # BiasAdd, one FLOP per output; ReLU and Flatten count 0
    model = _tiny_model()
    assert count_multiply_adds(model) == conv_macs + dense_macs
    assert count_flops(model) == 2 * (conv_macs + dense_macs) + biases
    assert count_flops(model, batch_size=3) == 3 * count_flops(model)


def test_our_layers_and_a_grouped_conv_by_hand():
    """Depthwise (strided, multiplier 2), dilated and grouped convolutions and the modulator's FCs.
    Keras runs the grouped Conv2D as a nested XLA function on CPU: it must be counted too."""
    inputs = keras.Input((8, 8, 4), name="face")
    x = LocalFeatureExtractor(8)(inputs)  # [4, 4, 8]
    x = ChannelSpatialModulator(reduction=4, dilation=2)(x)  # 2 bottleneck channels
    x = keras.layers.Conv2D(4, 1, groups=2, use_bias=False)(x)
    model = keras.Model({"face": inputs}, {"features": x})  # our models' dict structure
    local = 4 * 4 * 8 * 9 * 2  # 4 quadrants of 2x2x8 outputs: 3x3 C-group conv + 3x3 depthwise
    channel = 8 * 2 + 2 * 8  # two FC
    spatial = 4 * 4 * (8 * 2 + 2 * (9 * 2 * 2) + 2 * 1)  # 1x1, two dilated 3x3, 1x1
    grouped = 4 * 4 * 4 * (8 // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras' warning on an input structure other than the model's
        assert count_multiply_adds(model) == local + channel + spatial + grouped


def _conv_dense_macs(model):
    """Multiply-adds from the layers' own shapes (an independent count)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            total += height * width * filters * int(np.prod(layer.kernel_size)) * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return total


def test_resnet50_at_224():
    """keras.applications' ResNet-50 is He et al.'s original layout (stride 2 on the first 1x1
    of a down-sampling block): 3.86 G multiply-adds, Table 1's "3.8 x 10^9 FLOPs". The
    often-quoted 4.1 G is torchvision's layout (stride on the 3x3)."""
    model = keras.applications.ResNet50(weights=None)
    macs = count_multiply_adds(model)
    assert macs == _conv_dense_macs(model) == 3_857_973_248
    assert abs(macs / 3.8e9 - 1) < 0.03
    flops = count_flops(model)
    assert 2 * macs < flops < 2.02 * macs  # biases, batch norm, residual adds, pooling: +0.5%


def test_bad_inputs():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="fixed input size"):
        count_flops(model)
    with pytest.raises(ValueError, match="batch_size"):
        count_flops(_tiny_model(), batch_size=0)
