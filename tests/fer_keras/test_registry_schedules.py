"""Model registry and learning-rate schedules."""

import math

import keras
import numpy as np
import pytest

from fer_keras import registry
from fer_keras.training.schedules import learning_rate_at, make_optimizer


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="Known models: .*baseline"):
        registry.get_model_entry("no_such_model")


def test_duplicate_registration_fails():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model("baseline", registry.get_model_entry("baseline").input_spec, [registry.Preset("p", "", {})], "p")(lambda **kw: None)


def test_baseline_builds_with_named_input_and_probabilities():
    model = registry.build_model("baseline", 7)
    x = np.random.default_rng(0).random((2, 44, 44, 1)).astype("float32")
    y = model({"face": x}, training=False)
    assert tuple(y.shape) == (2, 7)
    np.testing.assert_allclose(np.sum(keras.ops.convert_to_numpy(y), axis=1), 1.0, rtol=1e-5)


def test_step_schedule_mrcar_style():
    # x0.9 every 5 epochs from epoch 80 on (0-based epoch 80 is the first decayed one).
    assert learning_rate_at(79, 0.01, "step", 200, 80, 5, 0.9) == 0.01
    assert math.isclose(learning_rate_at(80, 0.01, "step", 200, 80, 5, 0.9), 0.009)
    assert math.isclose(learning_rate_at(84, 0.01, "step", 200, 80, 5, 0.9), 0.009)
    assert math.isclose(learning_rate_at(85, 0.01, "step", 200, 80, 5, 0.9), 0.0081)


def test_cosine_schedule_and_errors():
    assert learning_rate_at(0, 1.0, "cosine", 10) == 1.0
    assert math.isclose(learning_rate_at(5, 1.0, "cosine", 10), 0.5)
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate_at(0, 1.0, "linear", 10)


def test_warmup_ramps_then_the_schedule_runs_over_the_epochs_left():
    assert [learning_rate_at(e, 1.0, "cosine", 12, warmup_epochs=2) for e in (0, 1)] == [1 / 3, 2 / 3]
    assert learning_rate_at(2, 1.0, "cosine", 12, warmup_epochs=2) == 1.0
    assert math.isclose(learning_rate_at(7, 1.0, "cosine", 12, warmup_epochs=2), 0.5)
    assert learning_rate_at(1, 0.01, "step", 200, 80, 5, 0.9, warmup_epochs=3) == pytest.approx(0.01 * 2 / 4)
    with pytest.raises(ValueError, match="warmup_epochs"):
        learning_rate_at(0, 1.0, "cosine", 10, warmup_epochs=-1)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("rmsprop", 0.1)
    assert make_optimizer("sgd", 0.1, nesterov=True).nesterov and not make_optimizer("sgd", 0.1).nesterov
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer("adam", 0.1, nesterov=True)
