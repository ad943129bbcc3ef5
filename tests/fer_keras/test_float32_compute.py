"""``float32_compute``: a model trained under ``mixed_bfloat16`` is shipped and exported computing in float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_keras.export.tflite import analyze_ops
from fer_keras.registry import build_model
from fer_keras.saving import float32_compute, model_spec


@pytest.fixture
def mixed_model():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = build_model("resnet", 8, depth=18, stem="small_s2")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return model


def _policies(model):
    return {layer.dtype_policy.name for layer in model._flatten_layers(include_self=True, recursive=True)}


def test_mixed_model_gets_a_float32_copy_with_its_weights_and_spec(mixed_model, fer_val_subset):
    assert "mixed_bfloat16" in _policies(mixed_model)
    copy = float32_compute(mixed_model)
    assert copy is not mixed_model and _policies(copy) == {"float32"}
    assert model_spec(copy) == model_spec(mixed_model)
    for a, b in zip(mixed_model.weights, copy.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Reference: the same weights in a model built in float32 from the start.
    reference = build_model("resnet", 8, depth=18, stem="small_s2")
    reference.set_weights(mixed_model.get_weights())
    x = fer_val_subset.images[:8, 2:46, 2:46].astype("float32") / 255.0
    np.testing.assert_allclose(copy({"face": x})["probabilities"].numpy(), reference({"face": x})["probabilities"].numpy(), rtol=1e-5, atol=1e-6)


def test_float32_model_is_returned_as_is():
    model = build_model("baseline", 7, widths=(4, 4, 4))
    assert float32_compute(model) is model


def test_exported_mixed_model_converts_to_tflite_builtins(mixed_model, tmp_path):
    """Before, the bfloat16 graph failed TFLite conversion ('tf.Conv2D' op is neither a custom op nor a flex op)."""
    import tensorflow as tf

    from fer_keras.export.savedmodel import export_model

    path = export_model(mixed_model, str(tmp_path), "mixed", version=1)
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["predict_images"])
    content = converter.convert()
    ops, _ = analyze_ops(content)
    assert ops and not any("Flex" in op or "BF16" in op.upper() for op in ops)
