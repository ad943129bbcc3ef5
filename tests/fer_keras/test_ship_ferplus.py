"""Shipping an 8-class FER+ model: build (card scored on the majority vote of FER+ valid),
calibrate, export for serving and the Recognizer, all on a tiny model trained on real FER+."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fer_keras import weights
from fer_keras.inference import predict_scores
from fer_keras.recognizer import Recognizer
from fer_keras.registry import build_model, get_model_entry
from fer_keras.saving import model_spec, save_model
from fer_keras.weights.build import build_pretrained
from fer_keras.weights.export import export_pretrained
from pipelines.datasets import load_split, open_dataset
from pipelines.input import eval_inputs
from pipelines.labels import BASIC8

NAME = "resface-ferplus"
VALID_LIMIT = 400
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def ferplus_run(ferplus_dir, tmp_path_factory):
    """A run folder as ``fer_keras.train --dataset=ferplus --label_mode=crossentropy`` writes
    it: ``best.keras`` (a narrow baseline fitted one epoch on 512 vote distributions) and
    ``run.json``."""
    spec = get_model_entry("baseline").input_spec
    train = load_split("ferplus", str(ferplus_dir), "train", spec, "crossentropy", limit=512, progress=False)
    keras.utils.set_random_seed(0)
    model = build_model("baseline", train.class_names, spec, dataset="ferplus", widths=(8, 8, 8))
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="categorical_crossentropy")
    model.fit(eval_inputs(train.images, spec), train.targets, batch_size=64, epochs=1, verbose=0)
    run_dir = tmp_path_factory.mktemp("ferplus_run")
    save_model(model, str(run_dir / "best.keras"))
    run = {"model": "baseline", "preset": "fer2013", "dataset": "ferplus", "data_dir": str(ferplus_dir), "label_mode": "crossentropy",
           "splits": ["train", "valid"], "class_names": list(train.class_names), "train_images": len(train.images), "seed": 0,
           "command": f"python -m fer_keras.train --dataset=ferplus --data_dir={ferplus_dir} --label_mode=crossentropy --limit=512"}
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


@pytest.fixture(scope="module")
def built(ferplus_run, tmp_path_factory):
    """``(weights_dir, card)``: the run built as a shipped model into a temporary folder."""
    out = tmp_path_factory.mktemp("weights")
    card = build_pretrained(NAME, str(ferplus_run), output_dir=str(out), limit=VALID_LIMIT, ten_crop=False)
    return out, card


@pytest.fixture(scope="module")
def valid_majority(ferplus_dir):
    """The FER+ valid images the build scores: majority-vote labels, same seeded subset."""
    spec = get_model_entry("baseline").input_spec
    return load_split("ferplus", str(ferplus_dir), "valid", spec, "majority", limit=VALID_LIMIT, progress=False)


def test_build_card_scores_the_majority_vote_of_ferplus_valid(built, valid_majority, ferplus_dir):
    weights_dir, card = built
    assert card["class_names"] == list(BASIC8) and len(card["class_names"]) == 8
    assert card["dataset"] == "ferplus" and card["label_mode"] == "crossentropy"
    val = card["validation"]
    assert val["split"] == "valid" and val["label_mode"] == "majority" and val["num_examples"] == VALID_LIMIT
    # Tied and unknown/not-a-face majorities are left out, and counted, as the training CLI does.
    listing = open_dataset("ferplus", str(ferplus_dir), "valid", label_mode="majority")
    listing.records()
    assert val["skipped"] == dict(listing.skipped.counts)
    assert val["skipped"]["tied majority"] > 0 and val["skipped"]["unknown/NF majority"] > 0
    model = weights.load_pretrained(NAME, str(weights_dir))
    predicted = predict_scores(model, valid_majority.images).argmax(1)
    shipped = val["shipped"]["centre"]
    assert shipped["accuracy"] == pytest.approx(float(np.mean(predicted == valid_majority.targets)), abs=1.5 / VALID_LIMIT)
    assert set(shipped["per_class"]) == set(BASIC8)


def test_calibrate_cli_defaults_to_the_models_validation_split(built, ferplus_dir, tmp_path):
    weights_dir = tmp_path / "weights"
    shutil.copytree(built[0], weights_dir)
    proc = subprocess.run([sys.executable, "-m", "fer_keras.calibrate", f"--model={NAME}", f"--weights_dir={weights_dir}", f"--data_dir={ferplus_dir}",
                           "--limit=300", f"--report_dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = weights.model_card(NAME, str(weights_dir))
    calibration = card["calibration"]
    assert calibration["dataset"] == "ferplus" and calibration["split"] == "valid"
    assert calibration["skipped"] == built[1]["validation"]["skipped"]
    assert calibration["fitted_on"] + calibration["num_examples"] == 300
    path = weights.weights_path(NAME, str(weights_dir))
    assert card["file"]["sha256"] == weights.file_sha256(path)
    spec = model_spec(weights.load_pretrained(NAME, str(weights_dir)))
    assert spec.temperature == pytest.approx(calibration["temperature"]) and list(spec.class_names) == list(BASIC8)
    assert (tmp_path / f"{NAME}-reliability.png").exists()


def test_export_serves_eight_probabilities(built, valid_majority, tmp_path):
    weights_dir, card = built
    path = export_pretrained(NAME, str(tmp_path), version=1, served_name="resface_ferplus", weights_dir=str(weights_dir))
    assert path == str(tmp_path / "resface_ferplus" / "1")
    loaded = tf.saved_model.load(path)
    images = valid_majority.images[:6]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0]).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    outputs = loaded.signatures["serving_default"](images=tf.constant(encoded))
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (6, 8)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities, predict_scores(weights.load_pretrained(NAME, str(weights_dir)), images), atol=1e-4)
    assert [label.decode() for label in outputs["labels"].numpy()] == [BASIC8[i] for i in probabilities.argmax(1)]
    metadata = loaded.signatures["metadata"](unused=tf.constant(0))
    assert [name.decode() for name in metadata["class_names"].numpy()] == list(BASIC8)
    extra = json.loads(metadata["metadata_json"].numpy().decode())
    assert extra["pretrained_name"] == NAME and extra["weights_sha256"] == card["file"]["sha256"]


def test_recognizer_reports_the_eight_ferplus_classes(built, faces_dir):
    """Class names come from the model's spec: the built file gives 8 named probabilities."""
    weights_dir, _ = built
    recognizer = Recognizer(str(weights_dir / f"{NAME}.keras"))
    assert recognizer.class_names == list(BASIC8) and recognizer.model_name == f"{NAME}.keras"
    result = recognizer.recognize(str(faces_dir / "angry_man.png"))
    assert result.faces
    for face in result.faces:
        assert list(face.probabilities) == list(BASIC8)
        assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert face.label == max(face.probabilities, key=face.probabilities.get)
