"""The evaluation CLI on a real validation subset: report numbers agree with a NumPy recount."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from fer_keras.evaluate import spec_for_model
from fer_keras.registry import build_model, get_model_entry
from fer_keras.training.loop import predict_scores
from pipelines.datasets import load_arrays, open_dataset

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_evaluate_cli_writes_report_matching_a_recount(fer2013_dir, tmp_path):
    keras.utils.set_random_seed(1)
    model = build_model("baseline", 7)
    model_path = tmp_path / "model.keras"
    model.save(model_path)
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
    predicted = predict_scores(keras.saving.load_model(model_path, safe_mode=True), arrays.images, spec_for_model(model), use_ten_crop=True).argmax(1)
    assert report["accuracy"] == np.mean(predicted == arrays.targets)
    counts = np.zeros((7, 7), int)
    np.add.at(counts, (arrays.targets, predicted), 1)
    assert report["confusion_matrix"] == counts.tolist()


def test_spec_for_model_uses_the_registered_spec():
    model = build_model("baseline", 7)
    assert spec_for_model(model) == get_model_entry("baseline").input_spec
    inputs = keras.Input((32, 32, 3), name="face")
    other = keras.Model({"face": inputs}, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)), name="custom")
    spec = spec_for_model(other)
    assert spec.image_size == (32, 32) and spec.source_size == (32, 32) and spec.channels == 3


def test_spec_for_model_reads_a_saved_subclassed_mrcar(tmp_path):
    model = build_model("mrcar", 7)
    model.save(tmp_path / "mrcar.keras")
    loaded = keras.saving.load_model(tmp_path / "mrcar.keras", safe_mode=True)
    assert spec_for_model(loaded) == get_model_entry("mrcar").input_spec


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
    from fer_keras.training.loop import Scorer
    from pipelines.input import ten_crop_inputs

    model = build_model("baseline", 7, widths=(4, 4, 4))
    spec = get_model_entry("baseline").input_spec
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.uint8)
    crops = model(ten_crop_inputs(images, spec), training=False).numpy()
    expected = crops.reshape(5, 10, 7).mean(axis=1)
    np.testing.assert_allclose(Scorer(model, spec, use_ten_crop=True, batch_size=2)(images), expected, atol=1e-6)
    scorer = Scorer(model, spec, batch_size=2)
    np.testing.assert_allclose(scorer(images), Scorer(model, spec, batch_size=256)(images), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 48, 48, 1\]"):
        scorer(np.zeros((2, 44, 44, 1), np.uint8))
    with pytest.raises(ValueError, match="No images"):
        scorer(np.zeros((0, 48, 48, 1), np.uint8))
