"""TFLite conversion from the exported SavedModel: builtin ops only, parity with Keras on real
FER2013 images (float32, float16, int8), the LiteRT interpreter, the CLI."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from fer_keras.export import convert_saved_model, export_model, make_interpreter, predict_tflite
from fer_keras.inference import predict_scores

REPO = pathlib.Path(__file__).resolve().parents[2]


def builtin_op_names() -> set[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {name for name in vars(schema.BuiltinOperator) if name.isupper()}


@pytest.fixture(scope="module")
def fer_data(fer_train_subset, fer_val_subset):
    return fer_train_subset, fer_val_subset


@pytest.fixture(scope="module")
def converted(fer_data, tiny_baseline, tmp_path_factory):
    train, _ = fer_data
    model, spec = tiny_baseline
    root = tmp_path_factory.mktemp("tflite")
    saved_model = export_model(model, str(root), "baseline")
    results = {q: convert_saved_model(saved_model, str(root / f"baseline-{q}.tflite"), q, train.images[:300]) for q in ("none", "float16", "int8")}
    return model, spec, saved_model, results


def test_ops_are_builtin_and_sizes_shrink(converted):
    *_, results = converted
    builtins = builtin_op_names()
    for quantize, result in results.items():
        assert result.ops and set(result.ops) <= builtins, (quantize, result.ops)
        assert "CONV_2D" in result.ops and "Op#0" in result.analysis
        assert pathlib.Path(result.path).stat().st_size == result.size_bytes
        print(f"{quantize}: {result.size_bytes / 1e3:.1f} kB, ops {result.ops}")
    assert results["float16"].size_bytes < 0.6 * results["none"].size_bytes
    assert results["int8"].size_bytes < 0.4 * results["none"].size_bytes
    assert "QUANTIZE" in results["int8"].ops


def test_tflite_matches_keras_on_real_images(converted, fer_data):
    model, spec, _, results = converted
    _, val = fer_data
    keras_scores = predict_scores(model, val.images)
    keras_accuracy = (keras_scores.argmax(1) == val.targets).mean()
    assert keras_accuracy > 0.25  # learned something (chance is ~0.14-0.25 on FER2013)

    interpreter = make_interpreter(results["none"].path)
    assert type(interpreter).__module__.startswith("ai_edge_litert")
    outputs = interpreter.get_signature_runner("predict_images")(images=val.images[:5])
    assert set(outputs) == {"probabilities", "class_ids", "labels"}
    assert [s.decode() for s in outputs["labels"]] == [val.class_names[k] for k in outputs["class_ids"]]

    agreement = {}
    accuracy = {}
    for quantize, result in results.items():
        scores = predict_tflite(make_interpreter(result.path), val.images)
        agreement[quantize] = (scores.argmax(1) == keras_scores.argmax(1)).mean()
        accuracy[quantize] = (scores.argmax(1) == val.targets).mean()
    print(f"Keras accuracy {keras_accuracy:.3f}; TFLite agreement {agreement}, accuracy {accuracy}")
    assert agreement["none"] >= 0.995
    assert agreement["float16"] >= 0.99
    assert agreement["int8"] >= 0.85
    assert accuracy["int8"] >= keras_accuracy - 0.04


def test_non_builtin_ops_fail_with_their_names(tmp_path):
    module = tf.Module()
    module.predict_images = tf.function(
        lambda images: {"probabilities": tf.math.igamma(tf.cast(images, tf.float32) + 1.0, 2.0)},
        input_signature=[tf.TensorSpec([None, 4], tf.uint8, name="images")],
    )
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"predict_images": module.predict_images})
    with pytest.raises(ValueError, match="Igamma"):
        convert_saved_model(str(tmp_path / "sm"), str(tmp_path / "x.tflite"))
    assert not (tmp_path / "x.tflite").exists()
    with pytest.raises(ValueError, match="representative_images"):
        convert_saved_model(str(tmp_path / "sm"), str(tmp_path / "x.tflite"), "int8")


def test_cli_int8_from_saved_model(converted, fer2013_dir, tmp_path):
    _, _, saved_model, _ = converted
    command = [sys.executable, "-m", "fer_keras.export", f"--saved_model_dir={saved_model}", f"--export_dir={tmp_path}", "--name=cli", "--format=tflite"]
    result = subprocess.run(command + ["--quantize=int8", f"--data_dir={fer2013_dir}", "--representative_count=40"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "cli-int8.tflite").stat().st_size > 0 and "ops: " in result.stdout
    missing = subprocess.run(command + ["--quantize=int8"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert missing.returncode != 0 and "--data_dir" in missing.stderr


def test_multi_region_mrcar_converts_to_builtin_ops(fer_val_subset, tmp_path):
    """MrCAR's eye and mouth crops are part of the exported graph; they must not need Flex ops."""
    import keras
    import numpy as np

    from fer_keras.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model("mrcar", 7)
    saved_model = export_model(model, str(tmp_path), "mrcar")
    result = convert_saved_model(saved_model, str(tmp_path / "mrcar.tflite"), "none")
    assert "GATHER" in result.ops and set(result.ops) <= builtin_op_names(), result.ops
    images = fer_val_subset.images[:16]
    np.testing.assert_allclose(predict_tflite(make_interpreter(result.path), images), predict_scores(model, images), atol=1e-4)
