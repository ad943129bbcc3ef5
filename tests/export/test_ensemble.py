"""Voting rules (T2V, NOI, bagging) against plain NumPy loops, and the ensemble SavedModel."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from fer_keras import voting
from fer_keras.export import METADATA_ASSET, export_ensemble
from fer_keras.inference import predict_scores
from fer_keras.saving import save_model
from fer_spec import InputSpec
from tests.paper_tables import FAML_TABLE_3
from tests.tiny_models import train_tiny_baseline


def reference_vote(scores, rule, alpha=1.9, beta=1.0):
    """Plain-loop NumPy votes; ties go to the lowest class index (within a member and overall)."""
    members, images, classes = scores.shape
    votes = np.zeros((images, classes))
    for n in range(images):
        for m in range(members):
            ranked = sorted(range(classes), key=lambda c: (-scores[m, n, c], c))
            if rule == "t2v":
                votes[n, ranked[0]] += alpha
                votes[n, ranked[1]] += beta
            elif rule == "bagging":
                votes[n, ranked[0]] += 1
            else:  # noi on probabilities: Eq. 13 with the softmax already applied by the model
                for c in range(classes):
                    votes[n, c] += scores[m, n, c]
    chosen = [min(c for c in range(classes) if votes[n, c] == votes[n].max()) for n in range(images)]
    return votes, np.array(chosen)


def as_numpy(result):
    return tuple(ops.convert_to_numpy(x) for x in result)


def test_t2v_reproduces_table_3_of_the_paper():
    outputs = FAML_TABLE_3
    votes, chosen = as_numpy(voting.t2v(outputs))
    np.testing.assert_allclose(votes[0], [8.7, 0, 0, 7.7, 0, 1, 0], atol=1e-5)
    assert chosen[0] == 0  # "Anger", although three of six members say "Fear"
    assert as_numpy(voting.bagging(outputs))[1][0] == 0  # 3 vs 3 votes: the lower index wins
    noi_votes, noi_chosen = as_numpy(voting.noi(outputs, from_logits=True))
    expected = tf.nn.softmax(outputs, axis=-1).numpy().sum(axis=0)
    np.testing.assert_allclose(noi_votes, expected, rtol=1e-5)
    assert noi_chosen[0] == expected[0].argmax()


def test_ties_go_to_the_lowest_class_index():
    tied = np.array([[[0.4, 0.4, 0.2]], [[0.2, 0.4, 0.4]]], np.float32)
    for rule in ("t2v", "noi", "bagging"):
        votes, chosen = as_numpy(voting.VOTING_RULES[rule](tied))
        expected_votes, expected_chosen = reference_vote(tied, rule)
        np.testing.assert_allclose(votes, expected_votes, atol=1e-6)
        np.testing.assert_array_equal(chosen, expected_chosen)
    np.testing.assert_allclose(as_numpy(voting.t2v(tied))[0][0], [1.9, 2.9, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="members, images, classes"):
        voting.t2v(np.zeros((3, 4)))


@pytest.fixture(scope="module")
def fer_data(fer_train_subset, fer_val_subset):
    return fer_train_subset, fer_val_subset


@pytest.fixture(scope="module")
def members(fer_data):
    """Three briefly trained members: two seeds of one baseline and a narrower baseline that
    reads a 40x40 centre crop (a different input spec)."""

    train, _ = fer_data
    narrow_spec = InputSpec(image_size=(40, 40), source_size=(48, 48), channels=1)
    configs = [(0, (16, 32, 64), None), (1, (16, 32, 64), None), (2, (8, 16, 32), narrow_spec)]
    trained = [train_tiny_baseline(train.images[:800], train.targets[:800], train.class_names, seed, widths, 2, spec) for seed, widths, spec in configs]
    return [model for model, _ in trained], [spec for _, spec in trained]


def member_scores(members, images):
    models, specs = members
    return np.stack([predict_scores(m, images) for m in models])


@pytest.mark.parametrize("rule", ["t2v", "noi", "bagging"])
def test_rules_match_numpy_loops_on_real_outputs(members, fer_data, rule):
    scores = member_scores(members, fer_data[1].images)
    votes, chosen = as_numpy(voting.VOTING_RULES[rule](scores))
    expected_votes, expected_chosen = reference_vote(scores, rule)
    np.testing.assert_allclose(votes, expected_votes, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(chosen, expected_chosen)


def test_ensemble_savedmodel_votes_match_numpy(members, fer_data, tmp_path):
    models, specs = members
    _, val = fer_data
    path = export_ensemble(models, str(tmp_path), "ensemble", default="noi")
    assert pathlib.Path(path).name == "1"
    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures) == ["bagging", "metadata", "noi", "serving_default", "t2v"]

    encoded = tf.constant([pathlib.Path(p).read_bytes() for p in val.paths])
    scores = member_scores(members, val.images)
    for rule in ("t2v", "noi", "bagging"):
        out = {k: v.numpy() for k, v in loaded.signatures[rule](images=encoded).items()}
        np.testing.assert_allclose(out["member_probabilities"], scores, atol=1e-5)
        expected_votes, expected_chosen = reference_vote(scores, rule)
        np.testing.assert_allclose(out["vote_scores"], expected_votes, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["class_ids"], expected_chosen)
        assert [s.decode() for s in out["labels"]] == [val.class_names[k] for k in expected_chosen]
        assert out["class_ids"].dtype == np.int64
    default = loaded.signatures["serving_default"](images=encoded)
    np.testing.assert_array_equal(default["class_ids"].numpy(), reference_vote(scores, "noi")[1])

    meta = json.loads((pathlib.Path(path) / "assets" / METADATA_ASSET).read_text())
    assert meta["default_vote"] == "noi" and (meta["alpha"], meta["beta"]) == (1.9, 1.0)
    assert [m["model_spec"]["input_spec"]["image_size"][0] for m in meta["members"]] == [44, 44, 40]
    signature_meta = loaded.signatures["metadata"](unused=tf.constant(0))
    assert json.loads(signature_meta["metadata_json"].numpy()) == meta


def test_cli_exports_ensemble(members, tmp_path):
    import subprocess
    import sys

    models, _ = members
    paths = []
    for k, model in enumerate(models[:2]):
        paths.append(tmp_path / f"member{k}.keras")
        save_model(model, str(paths[-1]))
    repo = pathlib.Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "fer_keras.export", "--ensemble=" + ",".join(map(str, paths)), f"--export_dir={tmp_path / 'exports'}", "--name=t2v_pair",
               "--default_vote=bagging", "--alpha=2.0", "--beta=0.5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=repo)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "serving_default = bagging" in result.stdout
    meta = json.loads((tmp_path / "exports" / "t2v_pair" / "1" / "assets" / METADATA_ASSET).read_text())
    assert (meta["default_vote"], meta["alpha"], meta["beta"], meta["class_names"][0]) == ("bagging", 2.0, 0.5, "angry")
    assert len(meta["source_models"]) == 2
