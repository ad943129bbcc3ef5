"""FGA (FAML-FGA-T2V Sec. 3.2, Algorithm 1): selection probabilities, fused kernels (Eq. 9),
batch-norm re-estimation, architecture checks, and ``python -m fer_keras.fga`` end to end."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from fer_keras.genetic_fusion import check_same_architecture, conv_weight_mask, fused_weights, reestimate_batch_norm, select_parents, selection_probabilities
from fer_keras.inference import predict_scores
from fer_keras.registry import build_model
from fer_keras.saving import load_model, save_model
from pipelines.input import eval_inputs

ROOT = pathlib.Path(__file__).resolve().parents[2]
WIDTHS = (4, 8, 8)


def test_selection_probabilities_are_inverse_loss_roulette():
    np.testing.assert_allclose(selection_probabilities([1.0, 2.0, 4.0]), np.array([4, 2, 1]) / 7)
    for bad in ([1.0, 0.0], [1.0, -1.0], [1.0, np.nan], []):
        with pytest.raises(ValueError, match="finite positive"):
            selection_probabilities(bad)


def test_selection_frequencies_follow_the_formula():
    """20,000 seeded draws: single parents appear with p_l; pairs drawn without replacement
    include network l with p_l + sum_j p_j p_l / (1 - p_j)."""
    p = selection_probabilities([0.8, 1.0, 1.6, 3.2])
    rng = np.random.default_rng(0)
    draws = 20000
    singles = np.bincount([select_parents(p, 1, rng)[0] for _ in range(draws)], minlength=4) / draws
    tolerance = 4 * np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(singles - p) < tolerance), (singles, p)
    pairs = [select_parents(p, 2, rng) for _ in range(draws)]
    assert all(len(set(pair)) == 2 for pair in pairs)
    included = np.bincount(np.concatenate(pairs), minlength=4) / draws
    expected = np.array([p[l] + sum(p[j] * p[l] / (1 - p[j]) for j in range(4) if j != l) for l in range(4)])
    assert np.all(np.abs(included - expected) < 4 * np.sqrt(expected * (1 - expected) / draws)), (included, expected)
    with pytest.raises(ValueError, match="count"):
        select_parents(p, 5, rng)


@pytest.fixture(scope="module")
def parents():
    """Three tiny baselines with different weights everywhere (dense and BN scale included)."""
    models = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        model = build_model("baseline", 7, widths=WIDTHS)
        rng = np.random.default_rng(seed)
        model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) if w.ndim == 1 else w for w in model.get_weights()])
        models.append(model)
    return models


def test_fused_kernels_are_the_mean_of_the_parents(parents):
    mask = conv_weight_mask(parents[0])
    conv_paths = [v.path for v, is_conv in zip(parents[0].weights, mask) if is_conv]
    assert len(conv_paths) == 6 and all(path.endswith("/kernel") for path in conv_paths)
    for other in ("fittest", "mean"):
        fused = fused_weights(parents, fittest=1, other_weights=other)
        for i, (variable, is_conv) in enumerate(zip(parents[0].weights, mask)):
            values = [m.get_weights()[i] for m in parents]
            statistic = "moving" in variable.path
            if is_conv or (other == "mean" and not statistic):
                np.testing.assert_allclose(fused[i], np.mean(values, axis=0), rtol=1e-6, err_msg=variable.path)
            else:
                np.testing.assert_array_equal(fused[i], values[1], err_msg=variable.path)
    assert not np.allclose(parents[0].get_weights()[0], parents[1].get_weights()[0])  # the mean is not trivial


def test_convolutions_nested_in_layers_are_fused_too():
    """R18+FA's stem is one layer (``FacialAreaFusion``) holding three convolutions: all three
    kernels are convolution weights, averaged by Eq. 9, and its fusion weights are not."""
    model = build_model("r18fa", 7, attention1=False, attention2=False, attention3=False)
    stem = {v.path: is_conv for v, is_conv in zip(model.weights, conv_weight_mask(model)) if v.path.startswith("conv1_conv/")}
    assert {path for path, is_conv in stem.items() if is_conv} == {f"conv1_conv/{name}_conv/kernel" for name in ("main", "eyes", "mouth")}
    assert stem["conv1_conv/area_weights"] is False


def test_fused_network_works_and_batch_norm_statistics_are_reestimated(parents, tmp_path):
    fused = build_model("baseline", 7, widths=WIDTHS)
    fused.set_weights(fused_weights(parents, fittest=0))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(200, 48, 48, 1)).astype(np.uint8)
    before = {v.path: v.numpy() for v in fused.weights}
    assert reestimate_batch_norm(fused, images, batch_size=64) == 3  # the last partial batch is dropped

    # The first BN sees conv0_0's output: its statistics are the mean over batches of the
    # batch mean and (biased) variance of that output.
    conv = keras.Model(fused.inputs, fused.get_layer("conv0_0").output)
    outputs = [conv(eval_inputs(images[s : s + 64], fused.fer_spec.input_spec)["face"]).numpy() for s in (0, 64, 128)]
    bn = fused.get_layer("bn0_0")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([o.var(axis=(0, 1, 2)) for o in outputs], axis=0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.9
    for variable in fused.weights:
        if "moving" not in variable.path:
            np.testing.assert_array_equal(variable.numpy(), before[variable.path], err_msg=variable.path)

    scores = predict_scores(fused, images[:10])
    assert scores.shape == (10, 7)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    path = save_model(fused, str(tmp_path / "fused.keras"))
    np.testing.assert_allclose(predict_scores(load_model(path), images[:10]), scores, atol=1e-6)


def test_different_architectures_are_a_clear_error(parents):
    wider = build_model("baseline", 7, widths=(4, 8, 16))
    with pytest.raises(ValueError, match="one architecture: b has options"):
        check_same_architecture([parents[0], wider], ["a", "b"])
    relabelled = build_model("baseline", [f"c{k}" for k in range(7)], widths=WIDTHS)
    with pytest.raises(ValueError, match="class_names"):
        fused_weights([parents[0], relabelled], 0)
    with pytest.raises(ValueError, match="at least 2"):
        check_same_architecture([parents[0]])


def _fga(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "fer_keras.fga", "--verbose=0", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_cli_runs_one_generation_on_real_fer2013_and_resumes(tiny_baseline, fer_train_subset, fer2013_dir, tmp_path):
    from tests.tiny_models import train_tiny_baseline

    first, _ = tiny_baseline
    second, _ = train_tiny_baseline(fer_train_subset.images[:800], fer_train_subset.targets[:800], fer_train_subset.class_names, seed=1, epochs=1)
    paths = [save_model(model, str(tmp_path / f"parent{k}.keras")) for k, model in enumerate((first, second))]
    out = tmp_path / "fga"
    args = [f"--members={','.join(paths)}", f"--output_dir={out}", "--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=512",
            "--finetune_epochs=1", "--batch_size=64", "--loss_images=256", "--bn_images=256"]
    run = _fga(*args)
    assert run.returncode == 0, run.stderr[-4000:]
    generation = json.loads((out / "gen_1" / "generation.json").read_text())
    selection = generation["selection"]
    np.testing.assert_allclose(selection["probabilities"], selection_probabilities(selection["losses"]))
    assert len(selection["parents"]) == 2 and all(sorted(p) == [0, 1] for p in selection["parents"])
    assert [m["kind"] for m in generation["members"]] == ["fused", "fused"]
    for member in generation["members"]:
        assert 0.0 <= member["val_accuracy_before_finetune"] <= 1.0 and member["val_accuracy"] > 0.2  # chance is 0.14
    fused = [load_model(str(out / "gen_1" / f"fused_{i}" / "fused.keras")) for i in range(2)]
    assert fused[0].fer_spec.architecture == "baseline"
    summary = json.loads((out / "fga.json").read_text())
    assert [round(m["val_accuracy"], 6) for m in summary["generations"][0]["members"]] == [round(m["val_accuracy"], 6) for m in generation["members"]]

    stamp = (out / "gen_1" / "fused_0" / "best.keras").stat().st_mtime_ns
    again = _fga(*args)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "Generation 1: finished earlier" in again.stdout
    assert (out / "gen_1" / "fused_0" / "best.keras").stat().st_mtime_ns == stamp


def test_cli_refuses_networks_of_different_architectures(tmp_path):
    paths = [save_model(build_model("baseline", 7, widths=widths), str(tmp_path / f"m{k}.keras")) for k, widths in enumerate((WIDTHS, (4, 8, 16)))]
    run = _fga(f"--members={','.join(paths)}", f"--output_dir={tmp_path / 'out'}")
    assert run.returncode == 2 and "error: FGA needs networks of one architecture" in run.stderr
