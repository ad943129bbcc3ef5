"""The runs of the exact-resume tests, and their subprocess entry that dies by SIGKILL.

Usage: python resume_trainer.py ARRAYS.npz OUTPUT_DIR MODEL KILL_AFTER_STEPS
Trains ``MODEL`` (a key of ``MODELS``) on the arrays saved by the test and sends itself
SIGKILL once ``KILL_AFTER_STEPS`` training steps have run: no clean-up, nothing flushed,
as when the machine or the scheduler kills a run.

Every source of randomness the loop knows is on: dropout and Gaussian noise layers, a
layer drawing from Keras' global generator (``keras.random`` with no seed), random crops,
flips, rotations and erasing, a per-batch loss choice and a center loss with state.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fer_keras.losses import CenterLoss, CrossEntropy  # noqa: E402
from fer_keras.objective import LossChoice, Objective, Term  # noqa: E402
from fer_keras.registry import build_model  # noqa: E402
from fer_keras.saving import attach_spec, model_spec  # noqa: E402
from fer_keras.training.loop import LoopConfig, Trainer  # noqa: E402
from pipelines.input import Augmentation  # noqa: E402

# 256 images in batches of 32: 8 steps per epoch, a checkpoint every 3 steps.
CONFIG = LoopConfig(epochs=2, batch_size=32, optimizer="adam", learning_rate=2e-3, lr_schedule="cosine", augmentation=Augmentation(erase_probability=0.5), checkpoint_every=3, eval_batch_size=64, verbose=0)
STEPS_PER_EPOCH = 8


class UnseededNoise(keras.layers.Layer):
    """Multiplies by uniform noise from ``keras.random`` with no seed (Keras' global generator)."""

    def call(self, inputs, training=False):
        return inputs * keras.random.uniform(keras.ops.shape(inputs), 0.5, 1.5) if training else inputs


def _baseline():
    return build_model("baseline", 7, widths=(8, 8, 8), dropout=0.5)


def _noisy():
    """Dense layers with a Gaussian-noise layer, a globally seeded one and dropout between them."""
    inputs = keras.Input((44, 44, 1), name="face")
    x = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    x = keras.layers.Dropout(0.5)(UnseededNoise()(keras.layers.GaussianNoise(0.5)(x)))
    outputs = keras.layers.Dense(7, activation="softmax")(x)
    return attach_spec(keras.Model({"face": inputs}, outputs), model_spec(build_model("baseline", 7)))


def _objective(model):
    """FAML-style per-batch choice between two losses, plus a center loss with state."""
    choice = LossChoice([(0.5, CrossEntropy()), (0.5, CrossEntropy(label_smoothing=0.2))])
    return Objective([Term("multi_loss", choice), Term("center", CenterLoss(7, 7, alpha=0.5), weight=0.1)])


MODELS = {"baseline": _baseline, "noisy": _noisy}


def make_trainer(output_dir, model: str) -> Trainer:
    keras.utils.set_random_seed(0)
    return Trainer(MODELS[model], _objective, CONFIG, str(output_dir), tf.distribute.get_strategy())


def sigkill():
    os.kill(os.getpid(), signal.SIGKILL)


def stop_after(trainer: Trainer, steps: int, stop=sigkill) -> None:
    """Make ``trainer`` call ``stop`` (default: SIGKILL its own process) once ``steps``
    training steps have run."""
    make_train_step = trainer.make_train_step

    def make_stopping_step(*args):
        train_step, done = make_train_step(*args), []

        def step(*step_args):
            if len(done) == steps:
                stop()
            done.append(1)
            return train_step(*step_args)

        return step

    trainer.make_train_step = make_stopping_step


if __name__ == "__main__":
    arrays_path, output_dir, model, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    arrays = np.load(arrays_path)
    trainer = make_trainer(output_dir, model)
    stop_after(trainer, steps)
    trainer.fit(arrays["images"], arrays["targets"], arrays["val_images"], arrays["val_targets"])
    sys.exit("the run ended without being killed")
