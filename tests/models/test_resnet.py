"""ResNet builders: parameter counts against keras.applications and the published ResNet-18,
Keras' ImageNet layout weight for weight, stems and stage shapes, local weights files."""

import keras
import numpy as np
import pytest

from fer_keras.models.resnet import (
    KERAS_IMAGENET_FILES,
    build_resnet,
    resnet_backbone,
    stage_channels,
)
from fer_keras.registry import build_model, get_model_entry
from fer_spec import InputSpec

RGB_224 = InputSpec(image_size=(224, 224), source_size=(224, 224), channels=3)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet18_has_the_published_11_69m_parameters():
    # torchvision's resnet18 (He et al. 2016 Table 1, no convolution biases): 11,689,512.
    assert _trainable(build_resnet(1000, RGB_224, depth=18, stem="imagenet")) == 11_689_512


def test_resnet50_equals_keras_applications():
    ours = build_resnet(1000, RGB_224, depth=50, stem="imagenet", use_bias=True)
    reference = keras.applications.ResNet50(weights=None)
    assert ours.count_params() == reference.count_params() == 25_636_712
    assert _trainable(ours) == _trainable(reference)
    # Without the redundant convolution biases: torchvision's resnet50, 25,557,032.
    assert _trainable(build_resnet(1000, RGB_224, depth=50, stem="imagenet")) == 25_557_032


def test_keras_imagenet_layout_loads_weight_for_weight(tmp_path):
    """A Keras ResNet50 weights file (the layout of the ImageNet file) loads by layer name and
    gives the same features: our graph is Keras' own."""
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    path = str(tmp_path / "resnet50_notop.h5")
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, reference)
    spec = InputSpec(image_size=(64, 64), source_size=(64, 64), channels=3)
    ours = build_resnet(3, spec, depth=50, stem="imagenet", use_bias=True, weights=path)
    features = keras.Model(ours.inputs, ours.get_layer("conv5_block3_out").output)
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(features({"face": x}).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "depth, stem, size, sides",
    [(18, "small", 48, (48, 48, 24, 12, 6)), (18, "small_s2", 44, (22, 22, 11, 6, 3)), (50, "small_s2", 48, (24, 24, 12, 6, 3)), (18, "imagenet", 224, (56, 56, 28, 14, 7))],
)
def test_stems_and_stage_shapes(depth, stem, size, sides):
    inputs = keras.Input((size, size, 1))
    outputs = resnet_backbone(inputs, depth, stem)
    assert list(outputs) == ["stem", "stage1", "stage2", "stage3", "stage4"]
    for (name, tensor), side in zip(outputs.items(), sides):
        channels = 64 if name == "stem" else stage_channels(depth, int(name[-1]))
        assert tuple(tensor.shape[1:]) == (side, side, channels), name


def test_registered_classifier_and_local_weights(tmp_path):
    entry = get_model_entry("resnet")
    assert entry.default_preset == "fer" and set(entry.presets) == {"fer", "imagenet"}
    keras.utils.set_random_seed(0)
    source = build_model("resnet", 7)
    out = source({"face": np.zeros((2, 44, 44, 1), "float32")})
    assert sorted(out) == ["logits", "probabilities"] and out["probabilities"].shape == (2, 7)
    path = str(tmp_path / "resnet18.h5")
    source.save(path)  # Keras' .h5 format: weights by layer name
    keras.utils.set_random_seed(1)
    loaded = build_model("resnet", 7, weights=path)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_are_never_downloaded():
    for depth, name in KERAS_IMAGENET_FILES.items():
        with pytest.raises(ValueError, match=name):
            build_resnet(7, depth=depth, weights="imagenet")
    with pytest.raises(ValueError, match="no ImageNet ResNet-18"):
        build_resnet(7, depth=18, weights="imagenet")
    with pytest.raises(FileNotFoundError, match="No weights file"):
        build_resnet(7, weights="/nonexistent/resnet.h5")
    with pytest.raises(ValueError, match="Keras .h5 file"):
        build_resnet(7, weights="resnet.keras")


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth must be one of"):
        build_resnet(7, depth=20)
    with pytest.raises(ValueError, match="stem must be one of"):
        build_resnet(7, stem="vit")
