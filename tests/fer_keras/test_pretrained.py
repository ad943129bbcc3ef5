"""Shipped pretrained models: offline safe_mode loading, model cards, float16 storage."""

from __future__ import annotations

import os
import pathlib
import zipfile

import h5py
import numpy as np
import pytest

import fer_keras
from fer_keras import weights

from fer_keras.inference import Scorer, predict_scores
from fer_keras.saving import load_model, model_spec, save_model

NAME = "baseline-fer2013"
SHIPPED = ("baseline-fer2013", "mrcar-fer2013", "resface-ferplus", "vgg4-fer2013", "vgg4-wide-fer2013")
# Images each card's validation split is scored on: all of FER2013 val; FER+ valid on the
# majority vote without the 130 tied and 53 unknown / not-a-face majorities.
VALIDATION_IMAGES = {"fer2013": 3589, "ferplus": 3396}
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped():
    return fer_keras.pretrained(NAME)


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def each_shipped(request):
    return request.param, fer_keras.pretrained(request.param)


def test_known_names_and_unknown_name_lists_them():
    assert weights.pretrained_names() == list(SHIPPED)
    with pytest.raises(ValueError, match=f"Unknown pretrained model 'nope'. Known pretrained models: .*{NAME}"):
        fer_keras.pretrained("nope")


def test_loads_offline_with_safe_mode_as_float32(each_shipped, monkeypatch):
    import keras

    name, shipped = each_shipped
    calls = []
    original = keras.saving.load_model
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: calls.append(k) or original(*a, **k))
    model = weights.load_pretrained(name)
    assert calls and calls[0]["safe_mode"] is True
    assert all(v.dtype == "float32" for v in model.weights)
    assert model.count_params() == shipped.count_params()


def test_model_card_fields_consistent_with_file(each_shipped):
    name, shipped = each_shipped
    card = weights.model_card(name)
    for key in ("name", "model", "preset", "dataset", "class_names", "training_command", "parameters", "model_spec", "file", "validation"):
        assert key in card, key
    assert card["model_spec"] == model_spec(shipped).to_dict()  # the card repeats the file's spec
    assert card["class_names"] == list(model_spec(shipped).class_names)
    path = weights.weights_path(name)
    assert card["file"]["bytes"] == os.path.getsize(path) < 25_000_000
    assert card["file"]["sha256"] == weights.file_sha256(path)
    assert card["parameters"] == shipped.count_params()
    assert card["training_command"].startswith("python -m fer_keras.train")
    val = card["validation"]
    assert val["num_examples"] == VALIDATION_IMAGES[card["dataset"]]
    shipped_dtype = card["file"]["weights_dtype"]
    assert val["shipped"] == val[shipped_dtype]
    for variant in ("float32", "float16"):
        for mode in ("centre", "ten_crop"):
            row = val[variant][mode]
            assert set(row["per_class"]) == set(card["class_names"])
            assert 0.5 < row["accuracy"] < 1.0


def test_cards_name_no_machine_paths():
    """Cards name the command and the data set relative to the repository."""
    for name in SHIPPED:
        text = (REPO / "fer_keras" / "weights" / f"{name}.json").read_text()
        assert "/work/" not in text and "/root/" not in text and '"/' not in text, name


@pytest.fixture(scope="module")
def validation_split(shared_dir):
    """The whole validation split a card was measured on (FER+ on the majority vote), loaded once per data set."""
    from pipelines.datasets import load_split

    loaded = {}

    def load(card, spec):
        key = (card["dataset"], card["validation"]["split"])
        if key not in loaded:
            label_mode = "majority" if card.get("label_mode") else None
            loaded[key] = load_split(key[0], str(shared_dir / "datasets" / key[0]), key[1], spec.input_spec, label_mode, progress=False)
        return loaded[key]

    return load


def test_shipped_accuracy_is_what_its_card_says(each_shipped, validation_split):
    """Re-measured now on the card's split, not compared with constants typed into the test."""
    name, model = each_shipped
    full = weights.model_card(name)
    card = full["validation"]
    data = validation_split(full, model_spec(model))
    assert card["split"] in ("val", "valid") and card["num_examples"] == len(data.targets) == VALIDATION_IMAGES[full["dataset"]]
    predicted = predict_scores(model, data.images).argmax(1)
    accuracy = float(np.mean(predicted == data.targets))
    assert accuracy == pytest.approx(card["shipped"]["centre"]["accuracy"], abs=1.5 / len(predicted))
    per_class = {cls: float(np.mean(predicted[data.targets == k] == k)) for k, cls in enumerate(data.class_names)}
    for cls, row in card["shipped"]["centre"]["per_class"].items():
        assert per_class[cls] == pytest.approx(row["sensitivity"], abs=1.5 / row["support"]), cls


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_stores_the_weights_dtype_of_its_card(name):
    card = weights.model_card(name)
    with zipfile.ZipFile(weights.weights_path(name)) as archive, archive.open("model.weights.h5") as f:
        dtypes = set()
        with h5py.File(f, "r") as h5:
            h5.visititems(lambda key, obj: dtypes.add(str(obj.dtype)) if isinstance(obj, h5py.Dataset) else None)
    stored = card["file"]["weights_dtype"]
    assert stored in dtypes and not dtypes & ({"float16", "float32"} - {stored})


def test_float16_storage_agrees_with_float32_on_real_val_images(tiny_baseline, fer_val_subset, tmp_path):
    """A model trained on real images, stored as float16, predicts like its float32 self."""
    model, _ = tiny_baseline
    half = load_model(save_model(model, str(tmp_path / "half.keras"), "float16"))
    a = predict_scores(model, fer_val_subset.images).argmax(1)
    b = predict_scores(half, fer_val_subset.images).argmax(1)
    assert np.mean(a == b) >= 0.99


def test_trained_model_survives_a_keras_save_load_round_trip(each_shipped, fer_val_subset, tmp_path):
    """The trained weights, saved again as .keras and loaded with safe_mode: identical outputs."""
    name, model = each_shipped
    restored = load_model(save_model(model, str(tmp_path / f"{name}.keras")))
    images = fer_val_subset.images[:64]
    assert model_spec(restored) == model_spec(model)
    # Fresh scorers for both: one graph of one shape each (a scorer cached by earlier tests may
    # have traced a batch-agnostic graph whose kernels round differently in the last bits).
    np.testing.assert_array_equal(Scorer(restored)(images), Scorer(model)(images))


def test_float16_save_round_trip(tmp_path):
    from fer_keras.registry import build_model

    model = build_model("baseline", 7, widths=(8, 16, 32))
    path = save_model(model, str(tmp_path / "m.keras"), "float16")
    plain = save_model(model, str(tmp_path / "m32.keras"), "float32")
    assert os.path.getsize(path) < 0.7 * os.path.getsize(plain)
    import keras

    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = np.random.default_rng(0).uniform(size=(4, 44, 44, 1)).astype("float32")
    for original, restored in zip(model.weights, loaded.weights):
        assert restored.dtype == "float32"
        np.testing.assert_allclose(restored.numpy(), original.numpy().astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(loaded({"face": x}).numpy(), model({"face": x}).numpy(), atol=2e-2)


def test_build_pretrained_from_a_run_dir(tmp_path, fer2013_dir):
    """The one-call builder the lead uses for new runs (small data limit to stay fast)."""
    import json

    from fer_keras.registry import build_model
    from fer_keras.weights.build import build_pretrained

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = build_model("baseline", ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"], widths=(8, 16, 32))
    save_model(model, str(run_dir / "best.keras"))
    (run_dir / "run.json").write_text(json.dumps({"model": "baseline", "preset": "fer2013", "dataset": "fer2013", "data_dir": str(fer2013_dir),
                                                  "splits": ["train", "val"], "class_names": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
                                                  "command": "python -m fer_keras.train --dataset=fer2013"}))
    card = build_pretrained("tiny-test", str(run_dir), output_dir=str(tmp_path / "out"), limit=64)
    assert card["file"]["bytes"] == os.path.getsize(tmp_path / "out" / "tiny-test.keras")
    assert card["validation"]["num_examples"] == 64
    assert set(card["validation"]["float16_float32_top1_agreement"]) == {"centre", "ten_crop"}
    assert json.loads((tmp_path / "out" / "tiny-test.json").read_text())["name"] == "tiny-test"
    assert not os.path.isabs(card["data_dir"]) and "/" + "work" not in json.dumps(card)


def test_export_for_serving(shipped, tmp_path, fer_val_subset):
    import json

    import tensorflow as tf

    from fer_keras.weights.export import export_pretrained

    path = export_pretrained(NAME, str(tmp_path), version=3, served_name="baseline")
    assert path == str(tmp_path / "baseline" / "3")
    metadata = json.loads((tmp_path / "baseline" / "3" / "assets" / "fer_keras_metadata.json").read_text())
    assert metadata["class_names"] == weights.model_card(NAME)["class_names"] and metadata["pretrained_name"] == NAME
    assert metadata["model_spec"] == model_spec(shipped).to_dict() and "ALIGNED FACE" in metadata["expected_input"]
    images = fer_val_subset.images[:16]
    served = tf.saved_model.load(path).signatures["predict_images"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), predict_scores(shipped, images), atol=1e-5)


# The SavedModels committed for `docker compose up` in serving/: served name -> shipped model.
COMMITTED_SERVABLES = {"baseline": "baseline-fer2013", "mrcar": "mrcar-fer2013", "vgg4": "vgg4-fer2013", "vgg4_wide": "vgg4-wide-fer2013",
                       "resface_ferplus": "resface-ferplus"}  # float16 variables: the shipped values exactly


@pytest.mark.parametrize("served_name", sorted(COMMITTED_SERVABLES))
def test_committed_servable_is_the_shipped_model(served_name, fer_val_subset):
    """The version TF Serving loads (the highest under serving/models/<name>) answers like
    fer_keras.pretrained(<shipped name>) on real images."""
    import json

    import tensorflow as tf

    name = COMMITTED_SERVABLES[served_name]
    versions = [path for path in (REPO / "serving" / "models" / served_name).iterdir() if path.name.isdigit()]
    version_dir = max(versions, key=lambda path: int(path.name))
    metadata = json.loads((version_dir / "assets" / "fer_keras_metadata.json").read_text())
    assert metadata["pretrained_name"] == name and metadata["weights_sha256"] == weights.model_card(name)["file"]["sha256"]
    model = fer_keras.pretrained(name)
    images = fer_val_subset.images[:32]
    served = tf.saved_model.load(str(version_dir)).signatures["predict_images"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), predict_scores(model, images), atol=1e-5)


def test_mrcar_run_builds_and_exports(tmp_path, fer2013_dir):
    """The path the lead takes for mrcar-fer2013: a subclassed model with region inputs."""
    import json

    import tensorflow as tf

    from fer_keras.registry import build_model
    from fer_keras.weights.build import build_pretrained
    from fer_keras.export.savedmodel import export_model
    from pipelines.input import eval_inputs

    run_dir = tmp_path / "mrcar-run"
    run_dir.mkdir()
    save_model(build_model("mrcar", ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]), str(run_dir / "best.keras"))
    (run_dir / "run.json").write_text(json.dumps({"model": "mrcar", "preset": "fer2013", "dataset": "fer2013", "data_dir": str(fer2013_dir),
                                                  "splits": ["train", "val"], "class_names": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
                                                  "command": "python -m fer_keras.train --model=mrcar --dataset=fer2013"}))
    card = build_pretrained("mrcar-test", str(run_dir), output_dir=str(tmp_path / "out"), limit=32, ten_crop=False)
    assert card["model_spec"]["input_spec"]["regions"] == {"eyes": [20, 44], "mouth": [26, 44]}
    model = load_model(str(tmp_path / "out" / "mrcar-test.keras"))
    path = export_model(model, str(tmp_path / "serving"), "mrcar", version=1)
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 1)).astype(np.uint8)
    served = tf.saved_model.load(path).signatures["predict_images"](images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(served, model(eval_inputs(x, model_spec(model).input_spec), training=False)["probabilities"].numpy(), atol=1e-5)


def test_import_fer_keras_stays_light():
    import subprocess
    import sys

    code = "import sys, fer_keras; assert callable(fer_keras.pretrained); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
