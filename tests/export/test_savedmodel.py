"""SavedModel export: TF-only loading, every signature on real images, parity with Keras,
Serving compatibility (saved_model_cli, builtin ops, no XLA), atomic versioned writes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fer_keras.export import METADATA_ASSET, export_model
from fer_keras.registry import build_model
from fer_keras.inference import predict_scores
from fer_keras.saving import load_model, model_spec, save_model
from pipelines.datasets import load_arrays, open_dataset

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # the adapter's (Kaggle) order

# Runs in a fresh interpreter that can import TensorFlow but not fer_keras: a TF Serving-like
# client that knows nothing of our code or Keras custom objects.
TF_ONLY_CLIENT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

export_dir, inputs_path, outputs_path = sys.argv[1:4]
inputs = np.load(inputs_path, allow_pickle=True)
loaded = tf.saved_model.load(export_dir)
out = {"signatures": sorted(loaded.signatures.keys())}
fer = [bytes(b) for b in inputs["fer_bytes"]]
faces = [bytes(b) for b in inputs["face_bytes"]]
serve = loaded.signatures["serving_default"]
first = serve(images=tf.constant(fer))
second = serve(images=tf.constant(fer))
for key in ("probabilities", "class_ids", "labels"):
    out["fer_" + key] = first[key].numpy().tolist() if key != "labels" else [s.decode() for s in first[key].numpy()]
out["repeat_identical"] = all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)
faces_out = serve(images=tf.constant(faces))
out["faces_probabilities"] = faces_out["probabilities"].numpy().tolist()
out["faces_class_ids"] = faces_out["class_ids"].numpy().tolist()
arrays_out = loaded.signatures["predict_images"](images=tf.constant(inputs["fer_images"]))
out["arrays_probabilities"] = arrays_out["probabilities"].numpy().tolist()
out["arrays_class_ids"] = arrays_out["class_ids"].numpy().tolist()
meta = loaded.signatures["metadata"](unused=tf.constant(0))
def plain(value):
    value = value.numpy()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [x.decode() for x in value]
    return value.item()
out["metadata"] = {k: plain(v) for k, v in meta.items()}
try:
    serve(images=tf.constant([b"this is not an image"]))
    out["invalid_error"] = None
except tf.errors.InvalidArgumentError as error:
    out["invalid_error"] = type(error).__name__

proto = saved_model_pb2.SavedModel()
with open(export_dir + "/saved_model.pb", "rb") as f:
    proto.ParseFromString(f.read())
graph = proto.meta_graphs[0].graph_def
functions = {f.signature.name for f in graph.library.function}
ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
out["ops"] = sorted(ops - functions)
out["unknown_ops"] = sorted(op for op in ops - functions if not hasattr(tf.raw_ops, op))
out["xla"] = sorted(f.signature.name for f in graph.library.function if f.attr["_XlaMustCompile"].b)
out["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in ("fer_keras", "pipelines"))
with open(outputs_path, "w") as f:
    json.dump(out, f)
"""


@pytest.fixture(scope="module")
def fer_val(fer2013_dir):
    return load_arrays(open_dataset("fer2013", fer2013_dir, "val"), limit=48, progress=False)


@pytest.fixture(scope="module")
def exported(tiny_baseline, fer_train_subset, tmp_path_factory):
    model, _ = tiny_baseline
    root = tmp_path_factory.mktemp("exports")
    path = export_model(model, str(root), "baseline", extra_metadata={"note": "test"})
    return model, path


def run_tf_only_client(export_dir, fer_val, faces_dir, tmp_path):
    face_paths = sorted(p for p in pathlib.Path(faces_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    inputs = tmp_path / "inputs.npz"
    np.savez(
        inputs,
        fer_bytes=np.array([pathlib.Path(p).read_bytes() for p in fer_val.paths], dtype=object),
        face_bytes=np.array([p.read_bytes() for p in face_paths], dtype=object),
        fer_images=fer_val.images,
    )
    script = tmp_path / "client.py"
    script.write_text(TF_ONLY_CLIENT)
    outputs = tmp_path / "outputs.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    subprocess.run([sys.executable, str(script), export_dir, str(inputs), str(outputs)], cwd=tmp_path, env=env, check=True, timeout=600)
    return json.loads(outputs.read_text()), face_paths


def test_tf_only_client_matches_keras(exported, fer_val, faces_dir, tmp_path):
    model, export_dir = exported
    spec = model_spec(model).input_spec
    out, face_paths = run_tf_only_client(export_dir, fer_val, faces_dir, tmp_path)

    assert out["imported"] == []
    assert out["signatures"] == ["metadata", "predict_images", "serving_default"]
    expected = predict_scores(model, fer_val.images)
    for prefix in ("fer", "arrays"):  # encoded PNG bytes and uint8 arrays of the same images
        np.testing.assert_allclose(np.array(out[f"{prefix}_probabilities"]), expected, atol=1e-5)
        np.testing.assert_array_equal(out[f"{prefix}_class_ids"], expected.argmax(axis=1))
    assert out["fer_labels"] == [fer_val.class_names[k] for k in expected.argmax(axis=1)]
    assert out["repeat_identical"]
    assert out["invalid_error"] == "InvalidArgumentError"

    # Real photos of any size and format: the in-graph decode + resize agrees with Keras on
    # the same decoded pixels, and those pixels stay close to the Pillow path of pipelines/.
    from fer_keras.export.savedmodel import decode_images
    from pipelines.images import decode_image, resize_image, to_channels

    face_bytes = [p.read_bytes() for p in face_paths]
    decoded = decode_images(tf.constant(face_bytes), spec).numpy()
    expected_faces = predict_scores(model, decoded)
    np.testing.assert_allclose(np.array(out["faces_probabilities"]), expected_faces, atol=1e-5)
    np.testing.assert_array_equal(out["faces_class_ids"], expected_faces.argmax(axis=1))
    pillow = np.stack([resize_image(to_channels(decode_image(b, channels=3), spec.channels), spec.source_size) for b in face_bytes]).astype(np.float32)
    assert np.abs(decoded - pillow).mean() < 3.0

    meta = out["metadata"]
    assert meta["class_names"] == CLASS_NAMES == list(fer_val.class_names)
    assert (meta["input_height"], meta["input_width"], meta["channels"]) == (44, 44, 1)
    assert (meta["source_height"], meta["source_width"], meta["num_classes"]) == (48, 48, 7)
    assert meta["model_name"] == "baseline" and meta["dataset_name"] == "fer2013" and meta["fer_keras_version"]
    assert json.loads(meta["metadata_json"])["note"] == "test"

    assert out["unknown_ops"] == []
    assert not any(op.startswith("Addons") for op in out["ops"])
    assert "DecodeImage" in out["ops"] or any(op.startswith("Decode") for op in out["ops"])
    assert out["xla"] == []


def test_asset_and_saved_model_cli(exported):
    _, export_dir = exported
    asset = json.loads((pathlib.Path(export_dir) / "assets" / METADATA_ASSET).read_text())
    assert asset["class_names"] == CLASS_NAMES and asset["source_height"] == 48
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli), "show", "--all", "--dir", export_dir], capture_output=True, text=True, check=True, timeout=300).stdout
    for name in ("serving_default", "predict_images", "metadata"):
        assert f"signature_def['{name}']" in shown
    for name in ("probabilities", "class_ids", "labels", "class_names", "metadata_json"):
        assert f"outputs['{name}']" in shown
    assert "dtype: DT_STRING" in shown and "dtype: DT_UINT8" in shown


def test_each_weight_is_stored_once(exported):
    model, export_dir = exported
    stored = tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))
    stored_values = sum(int(np.prod(shape)) for name, shape in stored if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
    model_values = sum(int(np.prod(v.shape)) for v in model.weights)
    assert stored_values == model_values
    data_bytes = os.path.getsize(os.path.join(export_dir, "variables", "variables.data-00000-of-00001"))
    assert data_bytes < 1.1 * 4 * model_values


def _versions(model_dir):
    return sorted(name for name in os.listdir(model_dir) if name.isdigit())


def test_versions_and_atomic_rename(tmp_path, monkeypatch):
    model = build_model("baseline", 7, widths=(4, 4, 4))
    root = str(tmp_path)
    model_dir = tmp_path / "tiny"
    renames, seen_during_save = [], []
    real_rename, real_save = os.rename, tf.saved_model.save

    def recording_rename(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        return real_rename(src, dst)

    def watching_save(obj, export_dir, *args, **kwargs):
        seen_during_save.append((os.path.basename(export_dir), sorted(os.listdir(model_dir))))
        return real_save(obj, export_dir, *args, **kwargs)

    monkeypatch.setattr(os, "rename", recording_rename)
    monkeypatch.setattr(tf.saved_model, "save", watching_save)
    assert export_model(model, root, "tiny").endswith(os.path.join("tiny", "1"))
    assert export_model(model, root, "tiny").endswith(os.path.join("tiny", "2"))
    assert export_model(model, root, "tiny", version=7).endswith(os.path.join("tiny", "7"))
    assert _versions(model_dir) == ["1", "2", "7"]
    assert [dst for _, dst in renames] == ["1", "2", "7"]
    for src, _ in renames:
        assert src.startswith(".tmp-") and not src.isdigit()
    for tmp_name, listing in seen_during_save:
        assert tmp_name.startswith(".tmp-")
        assert tmp_name not in _versions(model_dir)
    assert seen_during_save[0][1] == [seen_during_save[0][0]]  # only the hidden temp dir while writing v1
    with pytest.raises(FileExistsError):
        export_model(model, root, "tiny", version=2)
    assert sorted(os.listdir(model_dir)) == ["1", "2", "7"]


@pytest.mark.parametrize("when", ["before_writing", "after_writing"])
def test_interrupted_export_leaves_no_version(tmp_path, monkeypatch, when):
    model = build_model("baseline", 7, widths=(4, 4, 4))
    real_save = tf.saved_model.save

    def crashing_save(obj, export_dir, *args, **kwargs):
        if when == "after_writing":
            real_save(obj, export_dir, *args, **kwargs)
        raise RuntimeError("simulated crash during save")

    monkeypatch.setattr(tf.saved_model, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_model(model, str(tmp_path), "tiny")
    assert os.listdir(tmp_path / "tiny") == []
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    assert os.path.basename(export_model(model, str(tmp_path), "tiny")) == "1"
    assert os.listdir(tmp_path / "tiny") == ["1"]


def test_cli_exports_savedmodel(exported, tmp_path):
    model, _ = exported
    model_path = tmp_path / "run" / "best.keras"
    model_path.parent.mkdir()
    save_model(model, str(model_path))  # class names and data set travel inside the file
    result = subprocess.run(
        [sys.executable, "-m", "fer_keras.export", f"--model_path={model_path}", f"--export_dir={tmp_path / 'exports'}", "--name=cli", "--version=3"],
        capture_output=True, text=True, timeout=600, cwd=pathlib.Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Wrote SavedModel" in result.stdout
    asset = json.loads((tmp_path / "exports" / "cli" / "3" / "assets" / METADATA_ASSET).read_text())
    assert asset["class_names"] == CLASS_NAMES and asset["dataset_name"] == "fer2013"
    usage = subprocess.run([sys.executable, "-m", "fer_keras.export", "--name=x"], capture_output=True, text=True, timeout=300, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert usage.returncode != 0 and "exactly one of --model_path" in usage.stderr


def test_float16_weights_halve_the_file_and_serve_the_rounded_model(exported, fer_val, tmp_path):
    model, float32_dir = exported
    path = export_model(model, str(tmp_path), "half", weights_dtype="float16")
    stored = dict(tf.train.list_variables(os.path.join(path, "variables", "variables")))
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    float_values = sum(int(np.prod(v.shape)) for v in model.weights if v.dtype == "float32")
    assert sum(int(np.prod(stored[n])) for n, d in dtypes.items() if d == tf.float16) == float_values  # every float weight, once, as float16
    data = lambda d: os.path.getsize(os.path.join(d, "variables", "variables.data-00000-of-00001"))  # noqa: E731
    assert data(path) < 0.55 * data(float32_dir)
    assert json.loads(tf.saved_model.load(path).signatures["metadata"](unused=tf.constant(0))["metadata_json"].numpy())["weights_dtype"] == "float16"

    # The servable computes the float32 model whose weights are rounded to float16.
    rounded = load_model(save_model(model, str(tmp_path / "half.keras"), "float16"))  # a shipped file's float16 storage
    served = tf.saved_model.load(path).signatures["predict_images"](images=tf.constant(fer_val.images))["probabilities"].numpy()
    np.testing.assert_allclose(served, predict_scores(rounded, fer_val.images), atol=1e-5)
    np.testing.assert_allclose(served, predict_scores(model, fer_val.images), atol=2e-2)  # and stays close to the original
    with pytest.raises(ValueError, match="weights_dtype must be float32 or float16"):
        export_model(model, str(tmp_path), "bad", weights_dtype="bfloat16")
