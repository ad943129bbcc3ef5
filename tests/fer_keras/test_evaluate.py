"""The evaluation CLI on a real validation subset: report numbers agree with a NumPy recount."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from fer_keras import weights
from fer_keras.inference import Scorer, predict_scores
from fer_keras.registry import build_model, get_model_entry
from fer_keras.saving import attach_spec, load_model, model_spec, read_spec, save_model
from pipelines.datasets import load_arrays, open_dataset

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_evaluate_cli_writes_report_matching_a_recount(fer2013_dir, tmp_path):
    keras.utils.set_random_seed(1)
    model = build_model("baseline", ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
    model_path = tmp_path / "model.keras"
    save_model(model, str(model_path))
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "fer_keras.evaluate", f"--model_path={model_path}", "--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=300", "--ten_crop", f"--output_dir={out}"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["ten_crop"] is True and report["num_examples"] == 300
    for name in ("confusion_counts.png", "confusion_normalized.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Recount with the same model, ten-crop averaged scores, in-process.
    arrays = load_arrays(open_dataset("fer2013", str(fer2013_dir), "val"), limit=300, progress=False)
    predicted = predict_scores(load_model(str(model_path)), arrays.images, use_ten_crop=True).argmax(1)
    assert report["accuracy"] == np.mean(predicted == arrays.targets)
    counts = np.zeros((7, 7), int)
    np.add.at(counts, (arrays.targets, predicted), 1)
    assert report["confusion_matrix"] == counts.tolist()


def test_a_renamed_model_scores_exactly_like_the_original(fer_val_subset, tmp_path):
    """The spec travels in the file: a shipped baseline saved under another name keeps its
    48x48 source size (centre crop, ten distinct crops) and its accuracy, to the last image."""
    original = weights.load_pretrained("baseline-fer2013")
    renamed = keras.Model(original.inputs, original.outputs, name="baseline_v2")
    attach_spec(renamed, model_spec(original))
    path = save_model(renamed, str(tmp_path / "baseline_v2.keras"))
    loaded = load_model(path)
    assert loaded.name == "baseline_v2"
    assert model_spec(loaded).input_spec.source_size == (48, 48) and model_spec(loaded).input_spec.image_size == (44, 44)
    images, targets = fer_val_subset.images, fer_val_subset.targets
    for ten_crop in (False, True):
        expected = predict_scores(original, images, use_ten_crop=ten_crop)
        np.testing.assert_allclose(predict_scores(loaded, images, use_ten_crop=ten_crop), expected, atol=1e-6)
    centre, ten = predict_scores(loaded, images), predict_scores(loaded, images, use_ten_crop=True)
    assert np.abs(centre - ten).max() > 1e-3  # ten crops of 44x44 from 48x48, not ten identical resizes
    assert np.mean(ten.argmax(1) == targets) > 0.4


def test_the_spec_round_trips_through_a_keras_file_for_a_subclassed_model(tmp_path):
    preset = get_model_entry("mrcar").presets["rafdb"]
    model = build_model("mrcar", ("a", "b", "c"), preset.input_spec, ten_crop=True, dataset="rafdb", variant="global_only")
    path = save_model(model, str(tmp_path / "renamed.keras"))
    assert read_spec(path) == model_spec(model)
    loaded = load_model(path)
    spec = model_spec(loaded)
    assert spec.input_spec.image_size == (98, 98) and spec.input_spec.channels == 3 and spec.class_names == ("a", "b", "c")
    assert spec.ten_crop and spec.dataset == "rafdb" and spec.options == {"variant": "global_only"}


def test_a_file_without_a_spec_is_a_clear_error(tmp_path):
    inputs = keras.Input((44, 44, 1), name="face")
    bare = keras.Model({"face": inputs}, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)))
    bare.save(tmp_path / "bare.keras")
    with pytest.raises(ValueError, match="holds no fer_keras_spec.json"):
        load_model(str(tmp_path / "bare.keras"))
    with pytest.raises(ValueError, match="carries no fer_keras ModelSpec"):
        Scorer(load_model(str(tmp_path / "bare.keras"), require_spec=False))


def test_evaluate_cli_scores_the_shipped_mrcar_above_chance(fer2013_dir, tmp_path):
    """A fresh process with only a pretrained name (--model) finds MrCAR's registered classes
    and scores real val images well above chance (14%) and the majority class (25%)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "fer_keras.evaluate", "--model=mrcar-fer2013", "--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=300", f"--output_dir={tmp_path / 'eval'}"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_examples"] == 300 and report["accuracy"] > 0.4


def test_evaluate_cli_needs_exactly_one_model_source(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "fer_keras.evaluate", "--dataset=fer2013"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "exactly one of --model_path" in proc.stderr


def test_scorer_ten_crop_is_the_mean_of_the_ten_crop_scores_and_batch_independent():
    from pipelines.input import ten_crop_inputs

    model = build_model("baseline", 7, widths=(4, 4, 4))
    spec = get_model_entry("baseline").input_spec
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.uint8)
    crops = model(ten_crop_inputs(images, spec), training=False).numpy()
    expected = crops.reshape(5, 10, 7).mean(axis=1)
    np.testing.assert_allclose(Scorer(model, use_ten_crop=True, batch_size=2)(images), expected, atol=1e-6)
    scorer = Scorer(model, batch_size=2)
    np.testing.assert_allclose(scorer(images), Scorer(model, batch_size=256)(images), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 48, 48, 1\]"):
        scorer(np.zeros((2, 44, 44, 1), np.uint8))
    with pytest.raises(ValueError, match="No images"):
        scorer(np.zeros((0, 48, 48, 1), np.uint8))
