"""K-fold cross-validation (fer_keras.cv): the paper's statistics, resumption, the CLI end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

from fer_keras import cross_validation as cv, cv_report
from fer_keras.members import MemberRecipe, check_init_weights
from fer_keras.registry import build_model
from fer_keras.saving import save_model
from pipelines.datasets.folds import assign_folds, class_balanced_indices, take
from tests.cli_output import run_cli

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _paper_table(text: str, title: str) -> np.ndarray:
    """Rows of a table of the paper (run rows, then the Mean+SD row) as floats."""
    block = text[text.index(title):]
    rows = re.findall(r"^(\d+|Mean\+SD)\t(.+)$", block, re.M)
    runs = [[float(v) for v in values.split("\t")] for name, values in rows[:11] if name != "Mean+SD"][:10]
    mean_sd = [[float(x) for x in re.findall(r"[\d.]+", cell)] for cell in rows[10][1].split("\t")]
    return np.array(runs), np.array(mean_sd)


def test_mean_and_sd_are_the_papers_tables_1_and_2(shared_dir):
    """Our mean +- SD (sample SD) of the paper's per-run rows gives its printed Mean+SD rows."""
    text = (shared_dir / "papers" / "resnet101_transfer_learning.txt").read_text()
    for title in ("Table 1. Statistical analysis on the sensitivities", "Table 2. Statistical analysis on the overall accuracies"):
        runs, printed = _paper_table(text, title)
        mean, sd = cv_report._mean_sd(runs)
        np.testing.assert_allclose(mean, printed[:, 0], atol=0.006)
        np.testing.assert_allclose(sd, printed[:, 1], atol=0.006)


def _fake_rounds(output_dir, runs: int, k: int, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = []
    for run in range(runs):
        labels, predicted = [], []
        for r in range(k):
            y = rng.integers(0, 7, size=n)
            scores = rng.random((n, 7)) + 2.0 * (rng.random(n) < 0.6)[:, None] * np.eye(7)[y]
            path = cv.round_paths(str(output_dir), run, r)[1]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            np.savez(path, test_indices=np.arange(n), labels=y, scores=scores)
            labels.append(y)
            predicted.append(scores.argmax(axis=1))
        truth.append((np.concatenate(labels), np.concatenate(predicted)))
    return truth


def test_statistics_match_numpy_from_stored_predictions(tmp_path):
    truth = _fake_rounds(tmp_path, runs=3, k=4)
    labels, predicted, complete = cv.collect_predictions(str(tmp_path), runs=4, k=4)  # run 3 does not exist: left out
    assert complete == [0, 1, 2]
    stats = cv_report.cv_statistics(labels, predicted, CLASSES)

    matrices = np.zeros((3, 7, 7))
    for j, (y, p) in enumerate(truth):
        np.add.at(matrices[j], (y, p), 1)
    sens = np.array([np.diag(m) / m.sum(axis=1) for m in matrices])
    acc = np.array([np.trace(m) / m.sum() for m in matrices])
    total = matrices.sum(axis=0)
    for j in range(3):
        np.testing.assert_allclose([stats["runs"][j]["sensitivity"][c] for c in CLASSES], sens[j])
        assert stats["runs"][j]["accuracy"] == pytest.approx(acc[j])
    np.testing.assert_allclose([stats["sensitivity_mean"][c] for c in CLASSES], sens.mean(axis=0))
    np.testing.assert_allclose([stats["sensitivity_sd"][c] for c in CLASSES], sens.std(axis=0, ddof=1))
    assert stats["accuracy_mean"] == pytest.approx(acc.mean()) and stats["accuracy_sd"] == pytest.approx(acc.std(ddof=1))
    np.testing.assert_array_equal(stats["pooled"]["confusion_matrix"], total)
    np.testing.assert_allclose([stats["pooled"]["sensitivity"][c] for c in CLASSES], np.diag(total) / total.sum(axis=1))  # Eq. 7
    assert stats["pooled"]["accuracy"] == pytest.approx(np.trace(total) / total.sum())  # Eq. 8

    written = cv_report.write_tables(stats, str(tmp_path)) + cv_report.write_plots(stats, str(tmp_path))
    assert all(os.path.getsize(p) > 0 for p in written)
    rows = open(tmp_path / "accuracy.csv").read().splitlines()
    assert rows[0] == "run,accuracy" and float(rows[1].split(",")[1]) == pytest.approx(100 * acc[0], abs=1e-3)
    assert f"| Mean+SD | {100 * acc.mean():.2f} ± {100 * acc.std(ddof=1):.2f} |" in cv_report.markdown_tables(stats)
    one_run = cv_report.cv_statistics(labels[:1], predicted[:1], CLASSES)
    assert f"| Mean+SD | {100 * acc[0]:.2f} ± n/a |" in cv_report.markdown_tables(one_run)  # one run has no SD


def _tree_times(output_dir) -> dict:
    return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f)) for d, _, files in os.walk(output_dir) for f in files if f.endswith(".keras")}


def test_resume_skips_finished_rounds_and_redoes_missing_ones(fer_train_subset, tmp_path):
    data = take(fer_train_subset, class_balanced_indices(fer_train_subset.targets, 6, seed=0))
    recipe = MemberRecipe.from_preset("baseline", "demo", "fer2013", {"epochs": 1, "batch_size": 8}, {"widths": (4, 8, 8)})
    out = str(tmp_path / "cv")
    first = cv.cross_validate(recipe, data, k=3, runs=1, output_dir=out, verbose=0)
    assert first["rounds"] == {"trained": 3}
    tested = np.concatenate([np.load(cv.round_paths(out, 0, r)[1])["test_indices"] for r in range(3)])
    assert sorted(tested.tolist()) == list(range(len(data.paths)))
    models = _tree_times(out)

    second = cv.cross_validate(recipe, data, k=3, runs=1, output_dir=out, verbose=0)
    assert second["rounds"] == {"skipped": 3} and _tree_times(out) == models  # nothing retrained
    assert second["statistics"]["runs"] == first["statistics"]["runs"]

    os.remove(cv.round_paths(out, 0, 1)[1])  # predictions lost, model kept: scored again, not retrained
    member_dir, npz = cv.round_paths(out, 0, 2)  # round 2 lost entirely: retrained
    os.remove(npz)
    shutil.rmtree(member_dir)
    third = cv.cross_validate(recipe, data, k=3, runs=1, output_dir=out, verbose=0)
    assert third["rounds"] == {"skipped": 1, "scored": 1, "trained": 1}
    after = _tree_times(out)
    assert {p: t for p, t in after.items() if "round_2" not in p} == {p: t for p, t in models.items() if "round_2" not in p}


def test_cli_end_to_end_on_real_fer2013(fer2013_dir, tmp_path):
    out = tmp_path / "cv"
    args = ["-m", "fer_keras.cv", "--model=baseline", "--preset=demo", "--dataset=fer2013", f"--data_dir={fer2013_dir}",
            "--limit=1000", "--limit_per_class=10", "--folds=3", "--runs=1", "--epochs=1", "--batch_size=8",
            f"--output_dir={out}", "--verbose=0"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 70 images" in result.stdout
    report = json.loads((out / "cv_report.json").read_text())
    assert report["protocol"]["num_images"] == 70 and report["rounds"] == {"trained": 3}
    for name in ("cv_report.md", "sensitivity.csv", "accuracy.csv", "confusion_matrix.csv", "confusion_matrix.png", "accuracy_per_run.png"):
        assert (out / name).stat().st_size > 0
    labels = np.concatenate([np.load(cv.round_paths(str(out), 0, r)[1])["labels"] for r in range(3)])
    predicted = np.concatenate([np.load(cv.round_paths(str(out), 0, r)[1])["scores"].argmax(axis=1) for r in range(3)])
    assert np.bincount(labels, minlength=7).tolist() == [10] * 7
    assert report["accuracy_mean"] == pytest.approx(np.mean(labels == predicted))
    assert np.sum(report["pooled"]["confusion_matrix"]) == 70

    again = run_cli(*args)
    assert again.returncode == 0 and json.loads((out / "cv_report.json").read_text())["rounds"] == {"skipped": 3}


def test_manifest_refuses_another_protocol_in_the_same_folder(tmp_path):
    manifest = {"folds": 10, "runs": 2, "data_sha1": "abc"}
    cv.check_manifest(str(tmp_path), manifest)
    cv.check_manifest(str(tmp_path), dict(manifest, runs=5))  # more runs: the same protocol, extended
    with pytest.raises(ValueError, match="another folds"):
        cv.check_manifest(str(tmp_path), dict(manifest, folds=5))


def test_init_weights_start_every_round_and_need_the_same_classes(fer_train_subset, tmp_path):
    data = take(fer_train_subset, class_balanced_indices(fer_train_subset.targets, 6, seed=0))
    recipe = MemberRecipe.from_preset("baseline", "demo", "fer2013", {"epochs": 1, "batch_size": 8}, {"widths": (4, 8, 8)})
    source = str(tmp_path / "source.keras")
    save_model(build_model("baseline", data.class_names, recipe.input_spec(), dataset="fer2013", widths=(4, 8, 8)), source)
    folds = assign_folds(data.targets, 3, seed=0)
    assert cv.run_round(recipe, data, folds, 0, 0, str(tmp_path / "cv"), seed=0, init_weights=source, verbose=0) == "trained"
    recorded = json.loads((tmp_path / "cv" / "run_0" / "round_0" / "recipe.json").read_text())
    assert recorded["initial_model"] == source

    other = str(tmp_path / "three.keras")
    save_model(build_model("baseline", ("a", "b", "c"), recipe.input_spec(), widths=(4, 8, 8)), other)
    with pytest.raises(ValueError, match="the data has"):
        check_init_weights(other, recipe, data)


def test_init_weights_must_read_the_presets_crop(fer_train_subset, tmp_path):
    """A parent cropping 40x40 from 48x48 cannot start a preset that crops 44x44: its spec would
    record one crop while training feeds another. Framing alone may differ (the data sets it)."""
    data = take(fer_train_subset, class_balanced_indices(fer_train_subset.targets, 2, seed=0))
    recipe = MemberRecipe.from_preset("baseline", "demo", "fer2013", {"epochs": 1}, {"widths": (4, 8, 8)})
    wanted = recipe.input_spec()
    parent = str(tmp_path / "crop40.keras")
    save_model(build_model("baseline", data.class_names, dataclasses.replace(wanted, image_size=(40, 40)), widths=(4, 8, 8)), parent)
    with pytest.raises(ValueError, match=r"reads image_size=\[40, 40\]; preset 'demo' of baseline reads image_size=\[44, 44\]"):
        check_init_weights(parent, recipe, data)
    reframed = str(tmp_path / "reframed.keras")
    other_framing = "fer2013_box" if wanted.framing == "aligned" else "aligned"
    save_model(build_model("baseline", data.class_names, dataclasses.replace(wanted, framing=other_framing), widths=(4, 8, 8)), reframed)
    assert check_init_weights(reframed, recipe, data) == reframed
