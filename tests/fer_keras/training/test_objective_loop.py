"""The one loop runs what a model declares: stateful losses resumed exactly, FER+ label modes,
soft targets from a teacher network; on real FER2013 / FER+ images."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.losses import CenterLoss, CrossEntropy
from fer_keras.objective import Objective, Term
from fer_keras.registry import build_model, classification_objective
from fer_keras.saving import attach_spec, model_spec
from fer_keras.training.loop import LoopConfig, Trainer
from pipelines import input as input_pipeline
from pipelines.datasets import load_arrays, open_dataset

CONFIG = dict(batch_size=32, optimizer="sgd", learning_rate=0.05, lr_schedule="constant", augmentation=input_pipeline.NO_AUGMENTATION, checkpoint_every=0, eval_batch_size=64, verbose=0)


def _center_objective(model):
    return Objective([Term("ce", CrossEntropy()), Term("center", CenterLoss(7, 7, alpha=0.5), weight=0.1)])


def _trainer(output_dir, epochs, objective=_center_objective, classes=7, target_kind="labels"):
    keras.utils.set_random_seed(0)
    build = lambda: build_model("baseline", classes, widths=(8, 8, 8), dropout=0.0)  # noqa: E731
    return Trainer(build, objective, LoopConfig(epochs=epochs, **CONFIG), str(output_dir), tf.distribute.get_strategy(), target_kind=target_kind)


def test_stateful_loss_state_is_checkpointed_and_a_resumed_run_matches(fer_train_subset, fer_val_subset, tmp_path):
    images, targets = fer_train_subset.images[:512], fer_train_subset.targets[:512]
    val_images, val_targets = fer_val_subset.images[:64], fer_val_subset.targets[:64]
    straight = _trainer(tmp_path / "straight", 2)
    straight.fit(images, targets, val_images, val_targets)
    first = _trainer(tmp_path / "resumed", 1)
    first.fit(images, targets, val_images, val_targets)
    resumed = _trainer(tmp_path / "resumed", 2)
    assert resumed.restore() and int(resumed.epoch.numpy()) == 1
    history = resumed.fit(images, targets, val_images, val_targets)
    centers = straight.objective.stateful_terms[0].loss.centers.numpy()
    assert np.abs(centers).max() > 0.05  # moved by the rule, not left at zero
    np.testing.assert_allclose(resumed.objective.stateful_terms[0].loss.centers.numpy(), centers, atol=1e-5)
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert len(history) == 2
    # Training state never reaches the model file: best.keras has the model's weights only.
    from fer_keras.saving import load_model

    best = load_model(str(tmp_path / "straight" / "best.keras"))
    assert not any("center" in w.path for w in best.weights)


@pytest.fixture(scope="module")
def ferplus_votes(ferplus_dir):
    """256 FER+ training images with their vote distributions (crossentropy mode)."""
    return load_arrays(open_dataset("ferplus", str(ferplus_dir), "train", label_mode="crossentropy"), image_size=(48, 48), channels=1, limit=256, progress=False)


def test_probability_mode_trains_on_labels_drawn_from_the_votes(ferplus_votes, tmp_path):
    assert ferplus_votes.target_kind == "distribution" and ferplus_votes.targets.shape[1] == 8
    spec = model_spec(build_model("baseline", 8)).input_spec
    batches = [b for b in input_pipeline.train_dataset(ferplus_votes.images, ferplus_votes.targets, spec, 32, epoch=0, sample_labels=True)]
    drawn = np.concatenate([b[1].numpy() for b in batches])
    assert drawn.dtype == np.int32 and drawn.ndim == 1
    order = input_pipeline.epoch_order(input_pipeline.draw_labels(ferplus_votes.targets, 0, 0), 0, 0, False)
    assert np.all(ferplus_votes.targets[order[: len(drawn)], drawn] > 0)  # every drawn class had votes
    val = (ferplus_votes.images[:64], ferplus_votes.targets[:64].argmax(1))
    sampled = _trainer(tmp_path / "pld", 1, lambda m: classification_objective(m, "labels"), 8, "sampled").fit(ferplus_votes.images, ferplus_votes.targets, *val)
    soft = _trainer(tmp_path / "cel", 1, lambda m: classification_objective(m, "distribution"), 8, "distribution").fit(ferplus_votes.images, ferplus_votes.targets, *val)
    assert sampled[0]["loss"] != pytest.approx(soft[0]["loss"], rel=1e-3)  # different targets, different losses


def _dense_model(kernel_initializer):
    """Flatten + softmax Dense on the baseline's 44x44 crop, spec attached (no batch norm, so
    training and inference outputs agree)."""
    inputs = keras.Input((44, 44, 1), name="face")
    outputs = keras.layers.Dense(7, activation="softmax", kernel_initializer=kernel_initializer)(keras.layers.Flatten()(inputs))
    return attach_spec(keras.Model({"face": inputs}, outputs), model_spec(build_model("baseline", 7)))


def test_teacher_distribution_replaces_the_labels(fer_train_subset, fer_val_subset, tmp_path):
    """A frozen teacher that says "uniform" makes the loss -mean_i (1/K) sum_k log p_k(x_i)."""
    images, targets = fer_train_subset.images[:256], fer_train_subset.targets[:256]
    teacher = _dense_model("zeros")
    keras.utils.set_random_seed(0)
    config = LoopConfig(epochs=1, **dict(CONFIG, learning_rate=0.0))
    objective = lambda model: Objective([Term("kd", CrossEntropy())], teacher=teacher)  # noqa: E731
    trainer = Trainer(lambda: _dense_model(keras.initializers.RandomNormal(stddev=0.05, seed=1)), objective, config, str(tmp_path), tf.distribute.get_strategy())
    history = trainer.fit(images, targets, fer_val_subset.images[:64], fer_val_subset.targets[:64])
    student = trainer.model(input_pipeline.eval_inputs(images, trainer.spec), training=False).numpy()
    expected = -np.mean(np.log(np.clip(student, 1e-7, 1)).mean(axis=1))
    assert history[0]["loss"] == pytest.approx(expected, rel=1e-4)
    with_labels = -np.mean(np.log(np.clip(student[np.arange(256), targets], 1e-7, 1)))
    assert abs(expected - with_labels) > 1e-3
