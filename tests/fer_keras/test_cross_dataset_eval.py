"""Cross-data-set evaluation: classes matched by name, unscorable images counted per class,
model-only classes scored as errors; the evaluation CLI on real FER+ images with a 7-class
model, and on a plain class folder without --split."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from fer_keras.evaluate import write_report
from fer_keras.label_mapping import map_classes
from fer_keras.metrics import classification_report
from fer_spec import InputSpec, ModelSpec
from pipelines.labels import BASIC7, BASIC8

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")


def test_map_classes_by_name_counts_unscorable_and_lists_model_only_classes():
    data = BASIC8  # angry disgust fear happy sad surprise neutral contempt
    model = ("neutral", "happiness", "sadness", "anger", "surprised", "fear", "disgust")  # another order and spelling
    mapping = map_classes(data, model)
    assert mapping.data_to_model.tolist() == [3, 6, 5, 1, 2, 4, 0, -1]
    assert mapping.shared_classes == model and mapping.unscorable_classes == ("contempt",)
    assert mapping.model_only_classes == ()

    targets = np.array([7, 0, 3, 7, 6, 1, 7, 2])
    mapped, scorable, unscorable = mapping.apply(targets)
    np.testing.assert_array_equal(scorable, targets != 7)
    np.testing.assert_array_equal(mapped, [3, 1, 0, 6, 5])
    assert unscorable == {"contempt": 3}
    # Distributions are scored on their argmax.
    mapped_dist, scorable_dist, unscorable_dist = mapping.apply(np.eye(8, dtype=np.float32)[targets] * 0.9 + 0.01)
    np.testing.assert_array_equal(mapped_dist, mapped)
    assert scorable_dist.tolist() == scorable.tolist() and unscorable_dist == unscorable
    # A class the data set has none of is still listed, with 0.
    assert mapping.apply(np.array([0, 1]))[2] == {"contempt": 0}

    superset = map_classes(BASIC7, BASIC8)
    assert superset.model_only_classes == ("contempt",) and superset.unscorable_classes == ()
    with pytest.raises(ValueError, match=r"thumbs_up.*no class in common"):
        map_classes(("thumbs_up", "thumbs_down"), BASIC7)
    with pytest.raises(ValueError, match="twice"):
        map_classes(("sad", "sadness"), BASIC7)
    with pytest.raises(ValueError, match=r"outside \[0, 8\)"):
        mapping.apply(np.array([8]))


def _linear_model(spec: ModelSpec, contempt_bias: float | None = None, seed: int = 0) -> keras.Model:
    """A seeded softmax-linear model on the face crop, carrying ``spec``."""
    from fer_keras.saving import attach_spec

    keras.utils.set_random_seed(seed)
    size = spec.input_spec.image_size
    face = keras.Input((*size, spec.input_spec.channels), name="face")
    dense = keras.layers.Dense(spec.num_classes, activation="softmax")
    model = keras.Model({"face": face}, dense(keras.layers.Flatten()(face)), name="linear")
    if contempt_bias is not None:
        kernel, bias = dense.get_weights()
        bias[spec.class_names.index("contempt")] = contempt_bias
        dense.set_weights([kernel, bias])
    return attach_spec(model, spec)


def test_superset_model_predictions_of_absent_classes_count_as_errors(fer_val_subset, tmp_path):
    """An 8-class model on 7-class FER2013: contempt is never the truth; choosing it is an error."""
    from fer_keras.inference import predict_scores

    spec = ModelSpec(architecture="linear", input_spec=InputSpec(), class_names=BASIC8)
    plain = _linear_model(spec)
    logits_gap = np.log(predict_scores(plain, fer_val_subset.images))
    gap = logits_gap.max(axis=1) - logits_gap[:, BASIC8.index("contempt")]
    model = _linear_model(spec, contempt_bias=float(np.quantile(gap, 0.3)))  # contempt wins on ~30%

    report = write_report(model, fer_val_subset.images, fer_val_subset.targets, fer_val_subset.class_names, str(tmp_path / "eval"), title="8 on 7")
    predicted = predict_scores(model, fer_val_subset.images).argmax(axis=1)
    truth = fer_val_subset.targets  # BASIC7 ids are BASIC8 ids
    contempt = BASIC8.index("contempt")
    assert 0 < np.sum(predicted == contempt) < len(truth)
    assert report["class_names"] == list(BASIC8) and report["shared_classes"] == list(BASIC7)
    assert report["model_only_classes"] == ["contempt"] and report["unscorable"] == {} and report["num_unscorable"] == 0
    assert report["num_examples"] == len(truth) == 300
    assert report["accuracy"] == pytest.approx(np.mean(predicted == truth))
    recalls = [np.mean(predicted[truth == c] == c) for c in range(7) if np.any(truth == c)]
    assert report["mean_class_accuracy"] == pytest.approx(np.mean(recalls))
    matrix = np.asarray(report["confusion_matrix"])
    assert matrix[contempt].sum() == 0 and matrix[:, contempt].sum() == np.sum(predicted == contempt)
    assert report["per_class"]["contempt"]["support"] == 0
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["model_only_classes"] == ["contempt"]


@pytest.fixture(scope="module")
def baseline7_path(tmp_path_factory):
    """A small baseline with the 7 FER2013 classes, saved with its spec."""
    from fer_keras.registry import build_model
    from fer_keras.saving import save_model

    keras.utils.set_random_seed(2)
    model = build_model("baseline", BASIC7, widths=(4, 8, 8))
    return save_model(model, str(tmp_path_factory.mktemp("baseline7") / "baseline7.keras"))


def test_evaluate_cli_7_class_model_on_ferplus_counts_contempt(ferplus_dir, baseline7_path, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "fer_keras.evaluate", f"--model_path={baseline7_path}", "--dataset=ferplus",
                           f"--data_dir={ferplus_dir}", "--limit=300", f"--output_dir={out}"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["shared_classes"] == list(BASIC7) and report["class_names"] == list(BASIC7)
    assert report["data_class_names"] == list(BASIC8) and report["model_only_classes"] == []
    assert "Not scored" in proc.stdout and "contempt" in proc.stdout

    # Recount in-process on the same real images.
    from fer_keras.inference import predict_scores
    from fer_keras.saving import load_model
    from pipelines.datasets import load_arrays, open_dataset

    arrays = load_arrays(open_dataset("ferplus", str(ferplus_dir), "valid"), limit=300, progress=False)
    contempt = arrays.targets == BASIC8.index("contempt")
    assert contempt.sum() > 0
    assert report["unscorable"] == {"contempt": int(contempt.sum())} and report["num_unscorable"] == int(contempt.sum())
    assert report["num_examples"] == int((~contempt).sum())
    truth = arrays.targets[~contempt]  # BASIC8 ids < 7 are the BASIC7 ids
    predicted = predict_scores(load_model(baseline7_path), arrays.images[~contempt]).argmax(axis=1)
    assert report["accuracy"] == pytest.approx(np.mean(predicted == truth))
    expected = classification_report(truth, predicted, BASIC7)
    assert report["confusion_matrix"] == expected["confusion_matrix"]
    assert report["mean_class_accuracy"] == pytest.approx(expected["mean_class_accuracy"])


def test_evaluate_cli_on_a_folder_of_class_folders_without_split(fer2013_dir, baseline7_path, tmp_path):
    """``--dataset=folder`` with ``<dir>/<class>/*`` (the README layout) and no ``--split``
    evaluates the whole folder instead of looking for ``<dir>/val``."""
    folder = tmp_path / "mine"
    for name in ("happy", "sad"):
        sources = sorted((fer2013_dir / "val" / name).glob("*.png"))[:5]
        (folder / name).mkdir(parents=True)
        for source in sources:
            Image.open(source).save(folder / name / source.name)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "fer_keras.evaluate", f"--model_path={baseline7_path}", "--dataset=folder",
                           f"--data_dir={folder}", f"--output_dir={out}"], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["num_examples"] == 10 and "folder/all" in report["title"]
    assert report["per_class"]["happy"]["support"] == 5 and report["per_class"]["sad"]["support"] == 5
