"""Temperature scaling (one T, or a per-face T(x)): fitted correctly, stored with the model, applied by Keras scoring,
the SavedModel and TFLite alike; the calibrate CLI on real validation images."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fer_keras import weights
from fer_keras.calibration import apply_temperature, expected_calibration_error, fit_temperature, fit_temperature_weights, negative_log_likelihood, split_halves
from fer_keras.inference import inference_output
from fer_keras.inference import predict_scores
from fer_keras.saving import attach_spec, load_model, model_spec, save_model

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_fit_recovers_the_temperature_of_overconfident_scores():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(20000, 7))
    true = apply_temperature(np.exp(logits), 1.0)
    labels = np.array([rng.choice(7, p=p) for p in true])
    overconfident = apply_temperature(true, 1 / 2.5)  # softmax(2.5 * logits)
    assert fit_temperature(overconfident, labels) == pytest.approx(2.5, rel=0.05)
    assert negative_log_likelihood(apply_temperature(overconfident, 2.5), labels) < negative_log_likelihood(overconfident, labels)


def _bimodal_scores(rng, n=6000):
    """Scores over-confident on half the faces and under-confident on the rest, as an ArcFace head."""
    logits = rng.normal(scale=2.0, size=(n, 7))
    true = apply_temperature(np.exp(logits), 1.0)
    labels = np.array([rng.choice(7, p=p) for p in true])
    sharp = np.arange(n) % 2 == 0
    scores = np.where(sharp[:, None], apply_temperature(true, 1 / 4.0), apply_temperature(true, 3.0))
    return scores, labels


def test_per_face_temperature_calibrates_what_one_temperature_cannot():
    scores, labels = _bimodal_scores(np.random.default_rng(1))
    fit, held_out = split_halves(len(labels))
    weights = fit_temperature_weights(scores[fit], labels[fit])
    single = apply_temperature(scores[held_out], fit_temperature(scores[fit], labels[fit]))
    per_face = apply_temperature(scores[held_out], 1.0, weights)
    assert len(weights) == 8
    assert negative_log_likelihood(per_face, labels[held_out]) < negative_log_likelihood(single, labels[held_out]) - 0.02
    assert expected_calibration_error(per_face, labels[held_out]) < 0.5 * expected_calibration_error(single, labels[held_out])
    np.testing.assert_array_equal(per_face.argmax(1), scores[held_out].argmax(1))


def test_per_face_temperature_in_the_graph_equals_the_numpy_reference():
    from fer_spec import InputSpec, ModelSpec

    rng = np.random.default_rng(2)
    scores = apply_temperature(np.exp(rng.normal(scale=3.0, size=(50, 7))), 1.0).astype(np.float32)
    weights = (0.2, 0.1, -0.1, 0.05, 0.0, -0.2, 0.3, -0.4)
    spec = ModelSpec("baseline", InputSpec(), tuple("abcdefg"), temperature=1.5, temperature_weights=weights)
    np.testing.assert_allclose(inference_output(tf.constant(scores), spec).numpy(), apply_temperature(scores, 1.5, weights), atol=1e-5)
    # w = 0 is one temperature exp(b)
    flat = spec.replace(temperature=1.0, temperature_weights=(0.0,) * 7 + (np.log(2.0),))
    np.testing.assert_allclose(inference_output(tf.constant(scores), flat).numpy(), apply_temperature(scores, 2.0), atol=1e-5)


def test_spec_checks_and_round_trips_the_weights():
    from fer_spec import InputSpec, ModelSpec

    spec = ModelSpec("baseline", InputSpec(), ("a", "b"), temperature_weights=[0.5, -0.5, 0.1])
    assert spec.temperature_weights == (0.5, -0.5, 0.1)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert "temperature_weights" not in spec.replace(temperature_weights=()).to_dict()  # older specs read back equal
    with pytest.raises(ValueError, match=r"temperature_weights must hold num_classes \+ 1 = 3 values"):
        ModelSpec("baseline", InputSpec(), ("a", "b"), temperature_weights=(0.5, 0.1))


def test_ece_matches_a_hand_count():
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins of width 1/15: {0.95, 0.95} -> acc 0.5, conf 0.95; {0.55} -> 1 vs 0.55; {0.7} -> 1 vs 0.7
    expected = 0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.3
    assert expected_calibration_error(p, labels, bins=15) == pytest.approx(expected)


PER_FACE = (0.3, -0.2, 0.1, 0.0, 0.05, -0.1, 0.2, 0.4)


@pytest.fixture(scope="module", params=["one_temperature", "per_face"])
def calibrated_baseline(request, tmp_path_factory):
    model = weights.load_pretrained("baseline-fer2013")
    attach_spec(model, model_spec(model).replace(temperature=2.0, temperature_weights=PER_FACE if request.param == "per_face" else ()))
    return load_model(save_model(model, str(tmp_path_factory.mktemp("cal") / "calibrated.keras")))


def test_temperature_travels_with_the_model_and_is_applied(calibrated_baseline, fer_val_subset):
    spec = model_spec(calibrated_baseline)
    assert spec.temperature == 2.0 and spec.temperature_weights in ((), PER_FACE)
    raw_model = weights.load_pretrained("baseline-fer2013")
    attach_spec(raw_model, model_spec(raw_model).replace(temperature=1.0))
    images = fer_val_subset.images[:64]
    raw = predict_scores(raw_model, images)
    calibrated = predict_scores(calibrated_baseline, images)
    np.testing.assert_allclose(calibrated, apply_temperature(raw, 2.0, spec.temperature_weights), atol=1e-5)
    np.testing.assert_array_equal(calibrated.argmax(1), raw.argmax(1))
    assert np.abs(calibrated - raw).max() > 0.01


def test_savedmodel_and_tflite_give_the_calibrated_probabilities(calibrated_baseline, fer_val_subset, tmp_path):
    from fer_keras.export import convert_saved_model, export_model, make_interpreter, predict_tflite

    images = fer_val_subset.images[:32]
    expected = predict_scores(calibrated_baseline, images)
    path = export_model(calibrated_baseline, str(tmp_path), "calibrated")
    served = tf.saved_model.load(path).signatures["predict_images"](images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    metadata = json.loads((pathlib.Path(path) / "assets" / "fer_keras_metadata.json").read_text())
    assert metadata["model_spec"] == model_spec(calibrated_baseline).to_dict()
    tflite = convert_saved_model(path, str(tmp_path / "calibrated.tflite"), "none")
    np.testing.assert_allclose(predict_tflite(make_interpreter(tflite.path), images), expected, atol=1e-4)


@pytest.mark.parametrize("method", ["temperature", "parameterized"])
def test_calibrate_cli_fits_on_one_half_and_reports_on_the_other(method, fer2013_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    output = tmp_path / "mrcar-calibrated.keras"
    proc = subprocess.run([sys.executable, "-m", "fer_keras.calibrate", f"--model_path={weights.weights_path('mrcar-fer2013')}", f"--data_dir={fer2013_dir}", "--limit=600",
                           f"--output={output}", f"--method={method}"], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "mrcar-calibrated-calibration.json").read_text())
    assert report["fitted_on"] == 300 and report["num_examples"] == 300 and report["bins"] == 15 and report["method"] == method
    spec = model_spec(load_model(str(output)))
    assert spec.temperature == pytest.approx(report["temperature"]) and list(spec.temperature_weights) == pytest.approx(report["temperature_weights"])
    if method == "parameterized":
        # The shipped MrCAR's ArcFace confidence is bimodal (RESULTS.md): a per-face T calibrates it on unseen faces.
        assert len(spec.temperature_weights) == 8 and spec.temperature == 1.0
        assert report["ece_after"] < 0.6 * report["ece_before"] and report["nll_after"] < report["nll_before"]
    else:
        assert spec.temperature_weights == () and 0.05 < report["temperature"] < 20.0
    assert (tmp_path / "mrcar-calibrated-reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_cli_refuses_output_for_a_shipped_model(fer2013_dir, tmp_path):
    """--model updates the shipped file and its card together; writing elsewhere would leave the card describing another file."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "fer_keras.calibrate", "--model=mrcar-fer2013", f"--data_dir={fer2013_dir}", f"--output={tmp_path / 'x.keras'}"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "--output is for --model_path" in proc.stderr
    assert not (tmp_path / "x.keras").exists()
