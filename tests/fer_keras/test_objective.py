"""The model-declared objective: per-batch loss choice, option checks, registry declarations."""

import keras
import numpy as np
import pytest

from fer_keras.losses import CrossEntropy
from fer_keras.objective import Context, LossChoice, Objective, Targets, Term, call_factory
from fer_keras.registry import build_model, classification_objective, get_model_entry
from pipelines.input import Augmentation

P = keras.ops.convert_to_tensor(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32))
TARGETS = Targets.from_batch(keras.ops.convert_to_tensor(np.array([0, 1])), "labels")


def test_loss_choice_is_one_loss_per_batch_not_a_weighted_sum():
    plain, smoothed = CrossEntropy(), CrossEntropy(label_smoothing=0.3)
    objective = Objective([Term("multi_loss", LossChoice([(0.8, smoothed), (0.2, plain)]))])
    a = keras.ops.convert_to_numpy(smoothed(TARGETS, P))
    b = keras.ops.convert_to_numpy(plain(TARGETS, P))
    chosen = []
    for draw in np.linspace(0.0, 0.999, 500):
        total, _ = objective(TARGETS, {"probabilities": P}, Context(draw=keras.ops.convert_to_tensor(draw, "float32")))
        total = keras.ops.convert_to_numpy(total)
        is_a, is_b = np.allclose(total, a), np.allclose(total, b)
        assert is_a != is_b, (draw, total, a, b)  # exactly one alternative, never a mixture
        chosen.append(is_a)
    assert abs(np.mean(chosen) - 0.8) < 0.01


def test_loss_choice_rejects_probabilities_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="summing to 1"):
        LossChoice([(0.5, CrossEntropy()), (0.6, CrossEntropy())])


def test_weighted_terms_add_up_and_missing_outputs_are_named():
    objective = Objective([Term("a", CrossEntropy()), Term("b", CrossEntropy(0.1), weight=0.5)])
    total, values = objective(TARGETS, P)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(total), keras.ops.convert_to_numpy(values["a"] + 0.5 * values["b"]), rtol=1e-6)
    embedding_term = Objective([Term("c", CrossEntropy(), output="embedding")])
    with pytest.raises(ValueError, match=r"\['embedding'\]"):
        embedding_term(TARGETS, {"probabilities": P})


def test_term_weight_warms_up_linearly_over_the_first_epochs():
    objective = Objective([Term("a", CrossEntropy()), Term("b", CrossEntropy(0.1), weight=0.6, warmup_epochs=4)])
    _, values = objective(TARGETS, P)
    a, b = (keras.ops.convert_to_numpy(values[k]) for k in "ab")
    for epoch, weight in [(0.0, 0.0), (1.0, 0.15), (2.5, 0.375), (4.0, 0.6), (30.0, 0.6)]:
        total, _ = objective(TARGETS, {"probabilities": P}, Context(epoch=keras.ops.convert_to_tensor(epoch, "float32")))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(total), a + weight * b, rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_epochs must be >= 0"):
        Term("c", CrossEntropy(), warmup_epochs=-1)


def test_unknown_objective_and_model_options_name_the_known_ones():
    model = build_model("baseline", 7, widths=(4, 4, 4))
    with pytest.raises(ValueError, match=r"Unknown objective option\(s\) \['margin'\].*label_smoothing"):
        call_factory(classification_objective, model, "labels", {"margin": 0.2})
    with pytest.raises(ValueError, match=r"Unknown model option\(s\) \['width'\].*widths"):
        build_model("baseline", 7, width=3)
    with pytest.raises(ValueError, match=r"Unknown objective option\(s\) \['scale'\]"):
        get_model_entry("mrcar").check_options({}, {"scale": 3})


def test_every_registered_preset_uses_known_keys():
    from fer_keras.members import loop_setting_names

    known = set(loop_setting_names())
    for name in ("baseline", "mrcar"):
        for preset in get_model_entry(name).presets.values():
            assert set(preset.settings) <= known, (name, preset.name, set(preset.settings) - known)
            Augmentation(**preset.settings.get("augmentation", {}))  # its augmentation fields exist
