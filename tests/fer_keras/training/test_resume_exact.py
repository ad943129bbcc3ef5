"""A run killed mid-epoch and resumed ends bit-identical to the run never interrupted: the
same weights, random state and history rows (the interrupted epoch's training loss covers
the whole epoch); on real FER2013 images with every source of randomness on (see
``resume_trainer.py``). Checkpoints of older runs still resume."""

import csv
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.fer_keras.training.resume_trainer import STEPS_PER_EPOCH, make_trainer, stop_after

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = pathlib.Path(__file__).with_name("resume_trainer.py")


@pytest.fixture(scope="module")
def arrays(fer_train_subset, fer_val_subset, tmp_path_factory):
    """256 training and 64 validation images, in memory and in an .npz for the subprocess."""
    data = {"images": fer_train_subset.images[:256], "targets": fer_train_subset.targets[:256], "val_images": fer_val_subset.images[:64], "val_targets": fer_val_subset.targets[:64]}
    path = tmp_path_factory.mktemp("resume") / "arrays.npz"
    np.savez(path, **data)
    return data, path


def _fit(trainer, data):
    return trainer.fit(data["images"], data["targets"], data["val_images"], data["val_targets"])


def _history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _start_run_to_kill(path, run_dir, model, steps, log):
    """The run that SIGKILLs itself after ``steps`` steps, in its own process (output to ``log``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, str(SCRIPT), str(path), str(run_dir), model, str(steps)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


class Stopped(Exception):
    pass


def _stop():
    raise Stopped


@pytest.mark.parametrize(
    "model, killed_after, sigkill",
    [
        ("baseline", STEPS_PER_EPOCH + 5, False),  # epoch 2, two steps past its checkpoint at step 3; stopped in this process
        ("noisy", 7, True),  # epoch 1, one step past its checkpoint at step 6; SIGKILL (a small model: a fast subprocess)
    ],
)
def test_run_stopped_mid_epoch_then_resumed_is_bit_identical(arrays, tmp_path, model, killed_after, sigkill):
    data, path = arrays
    if sigkill:
        killed = _start_run_to_kill(path, tmp_path / "resumed", model, killed_after, tmp_path / "killed.log")
    else:
        stopped = make_trainer(tmp_path / "resumed", model)
        stop_after(stopped, killed_after, _stop)
        with pytest.raises(Stopped):
            _fit(stopped, data)
    straight = make_trainer(tmp_path / "straight", model)
    _fit(straight, data)
    if sigkill:
        assert killed.wait(timeout=600) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    resumed = make_trainer(tmp_path / "resumed", model)
    assert resumed.restore()
    done = int(resumed.epoch.numpy()) * STEPS_PER_EPOCH + int(resumed.step_in_epoch.numpy())
    assert 0 < done < killed_after and done % STEPS_PER_EPOCH  # resumed mid-epoch, steps lost
    _fit(resumed, data)
    # Every variable: the weights, batch-norm statistics and each random generator's state.
    assert len(straight.model.variables) == len(resumed.model.variables)
    for a, b in zip(straight.model.variables, resumed.model.variables):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    assert np.array_equal(straight.objective.stateful_terms[0].loss.centers.numpy(), resumed.objective.stateful_terms[0].loss.centers.numpy())
    expected, history = _history(tmp_path / "straight"), _history(tmp_path / "resumed")
    assert [row["epoch"] for row in history] == [1, 2]
    for a, b in zip(expected, history):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_mean_class_accuracy"):
            assert a[key] == b[key], (key, a, b)


def test_checkpoints_written_before_exact_resume_still_restore(tmp_path):
    """A checkpoint without random states or epoch totals (written by the previous version)
    resumes: the model, optimiser and position are restored, the rest starts afresh."""
    trainer = make_trainer(tmp_path, "baseline")
    trainer.model.get_layer("probabilities").kernel.assign(tf.ones_like(trainer.model.get_layer("probabilities").kernel))
    trainer.epoch.assign(1)
    trainer.step_in_epoch.assign(5)
    loss_state = {f"loss_{term.name}": term.loss for term in trainer.objective.stateful_terms}
    old = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer, epoch=trainer.epoch, step_in_epoch=trainer.step_in_epoch, best_val_accuracy=trainer.best_val_accuracy, **loss_state)
    tf.train.CheckpointManager(old, str(tmp_path / "checkpoints"), max_to_keep=2).save()
    resumed = make_trainer(tmp_path, "baseline")
    assert resumed.restore()
    assert (int(resumed.epoch.numpy()), int(resumed.step_in_epoch.numpy())) == (1, 5)
    assert np.all(resumed.model.get_layer("probabilities").kernel.numpy() == 1.0)
    assert all(float(total.numpy()) == 0.0 for total in resumed.epoch_totals.values())
    resumed.checkpoint.save()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")  # numbering continues
