"""FAML's two learning-rate phases (``cosine_then_step_on_plateau``): the plateau rule on a
synthetic loss sequence, the phase-2 step schedule, the loop switching at the rule's epoch,
and a run stopped after the switch resuming bit-identically with the rule's state."""

import csv
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.registry import build_model
from fer_keras.registry import classification_objective
from fer_keras.training.loop import LoopConfig, Trainer
from fer_keras.training.schedules import PLATEAU_SCHEDULE, SCHEDULES, PlateauState, learning_rate_at, plateau_update
from tests.fer_keras.training.resume_trainer import stop_after


def _run_rule(losses, patience, min_delta):
    state, states = PlateauState(), []
    for epoch, loss in enumerate(losses):
        state = plateau_update(state, epoch, loss, patience, min_delta)
        states.append(state)
    return states


def test_rule_switches_after_patience_bad_epochs_then_stops():
    # Gains > 0.01 up to epoch 3; epochs 4, 5, 6 gain < 0.01 over the best (1.10): bad, bad, bad.
    losses = [2.0, 1.5, 1.2, 1.10, 1.095, 1.20, 1.091, 0.5, 0.4]
    states = _run_rule(losses, patience=3, min_delta=0.01)
    assert [s.bad_epochs for s in states[:7]] == [0, 0, 0, 0, 1, 2, 3]
    assert [s.switch_epoch for s in states] == [-1] * 6 + [7, 7, 7]  # first phase-2 epoch: 7
    assert states[-1] == states[6]  # frozen after the switch: no second switch, best kept
    # A gain larger than min_delta resets the count.
    states = _run_rule([1.0, 0.995, 0.98, 0.975, 0.97], patience=2, min_delta=0.01)
    assert [s.bad_epochs for s in states] == [0, 1, 0, 1, 2] and states[-1].switch_epoch == 5
    with pytest.raises(ValueError, match="plateau_patience"):
        plateau_update(PlateauState(), 0, 1.0, 0, 0.0)


def test_learning_rate_cosine_then_step_from_the_switch():
    lr = lambda epoch, switch: learning_rate_at(epoch, 3e-4, PLATEAU_SCHEDULE, 40, decay_every=10, decay_factor=0.1, switch_epoch=switch, phase2_lr=1e-5)  # noqa: E731
    assert [lr(e, -1) for e in (0, 20)] == [3e-4, pytest.approx(1.5e-4)]  # phase 1: cosine over the 40 epochs
    assert lr(11, 12) == learning_rate_at(11, 3e-4, "cosine", 40)
    assert [lr(e, 12) for e in (12, 21)] == [1e-5, 1e-5]
    assert math.isclose(lr(22, 12), 1e-6) and math.isclose(lr(32, 12), 1e-7)
    assert PLATEAU_SCHEDULE in SCHEDULES


def test_new_loop_settings_are_known_and_have_flags():
    from fer_keras.members import loop_setting_names
    from fer_keras.train import FLAGS

    for name in ("plateau_patience", "plateau_min_delta", "phase2_lr"):
        assert name in loop_setting_names() and name in FLAGS


# 128 images in batches of 32: 4 steps per epoch, 3 epochs, a checkpoint every 3 steps. The rule
# with patience 1 and an unreachable min_delta: epoch 0 improves on inf, epoch 1 is bad, so
# epochs 0-1 are cosine and epoch 2 is phase 2.
CONFIG = LoopConfig(epochs=3, batch_size=32, optimizer="adam", learning_rate=2e-3, lr_schedule=PLATEAU_SCHEDULE, plateau_patience=1, plateau_min_delta=1e6, phase2_lr=1e-4, checkpoint_every=3, eval_batch_size=64, verbose=0)


@pytest.fixture(scope="module")
def data(fer_train_subset, fer_val_subset):
    return fer_train_subset.images[:128], fer_train_subset.targets[:128], fer_val_subset.images[:32], fer_val_subset.targets[:32]


def _trainer(output_dir):
    keras.utils.set_random_seed(0)
    return Trainer(lambda: build_model("baseline", 7, widths=(8, 8, 8), dropout=0.5), lambda m: classification_objective(m, "labels"), CONFIG, str(output_dir), tf.distribute.get_strategy())


def _learning_rates(run_dir):
    with open(run_dir / "history.csv") as f:
        return [float(row["learning_rate"]) for row in csv.DictReader(f)]


class Stopped(Exception):
    pass


def _stop():
    raise Stopped


def test_loop_switches_and_a_run_stopped_after_the_switch_resumes_identically(data, tmp_path):
    straight = _trainer(tmp_path / "straight")
    straight.fit(*data)
    assert int(straight.plateau["switch_epoch"].numpy()) == 2
    assert _learning_rates(tmp_path / "straight") == [2e-3, pytest.approx(learning_rate_at(1, 2e-3, "cosine", 3)), 1e-4]

    stopped = _trainer(tmp_path / "resumed")
    stop_after(stopped, 2 * 4 + 3, _stop)  # in epoch 3 (phase 2), after its checkpoint at step 3 of 4
    with pytest.raises(Stopped):
        stopped.fit(*data)
    resumed = _trainer(tmp_path / "resumed")
    assert resumed.restore()
    assert (int(resumed.epoch.numpy()), int(resumed.step_in_epoch.numpy())) == (2, 3)
    assert int(resumed.plateau["switch_epoch"].numpy()) == 2
    resumed.fit(*data)
    assert _learning_rates(tmp_path / "resumed") == _learning_rates(tmp_path / "straight")
    for a, b in zip(straight.model.variables, resumed.model.variables):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    for name in ("best_loss", "bad_epochs", "switch_epoch"):
        assert straight.plateau[name].numpy() == resumed.plateau[name].numpy()


def test_other_schedules_keep_their_checkpoint_layout(tmp_path):
    trainer = Trainer(lambda: build_model("baseline", 7, widths=(8, 8, 8)), lambda m: classification_objective(m, "labels"), LoopConfig(verbose=0), str(tmp_path), tf.distribute.get_strategy())
    assert trainer.plateau == {} and "plateau" not in trainer.checkpoint.parts
