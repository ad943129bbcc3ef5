"""The run's checkpoint: everything a killed run needs to continue bit-identically.

Training state that is not a function of ``(seed, epoch, step)``: the model's variables,
the optimiser's, the state of stateful losses, the run's position (epoch, step, best
validation accuracy), the running totals of the interrupted epoch's metrics, and the state
of every random generator the training step draws from (``random_states``).

A checkpoint written before a part existed (``OPTIONAL_PARTS``: runs started by an older
version) still restores: that part keeps its initial value, and the run continues.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

# Keras has no public handle on the generator that unseeded ``keras.random`` calls use.
from keras.src.random.seed_generator import global_seed_generator

# Parts added after the first checkpoints were written; any of them may be absent.
OPTIONAL_PARTS = ("random_states", "epoch_totals")


def random_states(layers) -> list:
    """The state variables of every random generator the ``layers`` draw from.

    Keras layers that draw random numbers (``Dropout``, ``GaussianNoise``, the random
    augmentation layers...) each own a ``keras.random.SeedGenerator`` whose state is a
    variable: ``layer.variables`` lists it, ``layer.weights`` does not, and
    ``tf.train.Checkpoint`` does not reach it through the layer. Unseeded ``keras.random``
    calls draw from Keras' global generator, which is created here if need be (call this
    inside the strategy scope, so its state is a distributed variable like the others; a
    later ``keras.utils.set_random_seed`` replaces it). Keras keeps that generator per
    thread, so under a strategy with several local replicas such calls fail to trace at all.
    """
    states, seen = [], set()
    for layer in layers:
        weights = {id(weight) for weight in layer.weights}
        for variable in layer.variables:
            if id(variable) not in weights and id(variable) not in seen:
                states.append(variable)
                seen.add(id(variable))
    states.append(global_seed_generator().state)
    return states


class RunCheckpoint:
    """Saves ``parts`` (name -> trackable) every call to ``save``, keeping the last two.

    Args:
        parts: dict of the checkpoint's top-level names and their trackables.
        directory: str. Where ``save`` writes.
    """

    def __init__(self, parts: dict, directory: str):
        self.parts = dict(parts)
        self.checkpoint = tf.train.Checkpoint(**self.parts)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)

    def save(self) -> None:
        self.manager.save()

    def restore(self, directory: str) -> bool:
        """Restore the latest checkpoint in ``directory`` if there is one; True when one was.

        Every part must match the checkpoint, except that ``OPTIONAL_PARTS`` a checkpoint
        does not hold are left as they are (a warning names them).
        """
        latest = tf.train.latest_checkpoint(directory)
        if latest is None:
            return False
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(latest)}
        absent = [name for name in OPTIONAL_PARTS if name in self.parts and name not in saved]
        if not absent:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            return True
        older = tf.train.Checkpoint(**{name: part for name, part in self.parts.items() if name not in absent})
        older.restore(latest).assert_existing_objects_matched()
        self.checkpoint.save_counter.assign(older.save_counter)  # numbering continues
        logging.warning("%s was written without %s: the random generators restart from their seeds and the interrupted epoch's training metrics cover the steps from here on. The run resumes, but not bit-identically.", latest, ", ".join(absent))
        return True
