"""Center, island and islets losses (LBAN-IL Eq. 1-5) against NumPy: values, the gradient
to the embedding, the Eq. 4 centre update; centres under a 2-replica MirroredStrategy and in
the run checkpoint."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.losses import CenterLoss, CrossEntropy, IslandLoss, IsletsLoss
from fer_keras.objective import Objective, Targets, Term
from fer_keras.registry import build_model
from fer_keras.saving import attach_spec, load_model, model_spec
from fer_keras.training.loop import LoopConfig, Trainer
from pipelines.input import NO_AUGMENTATION
from tests.cli_output import ROOT, cli_env

ALPHA, LAMBDA1, LAMBDA2 = 0.5, 0.2, 0.9
LABELS = np.array([0, 2, 2, 0, 3, 0])  # class 1 absent from the batch


# -- NumPy reference of the paper's equations (float64, explicit loops) -----------------
def np_cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else a @ b / (na * nb)


def np_island(c):
    """sum_j sum_{k != j} (cos(c_j, c_k) + 1)."""
    n = len(c)
    return sum(np_cos(c[j], c[k]) + 1 for j in range(n) for k in range(n) if j != k)


def np_islets(c):
    """Eq. 1: exp(-1/2 sum_j sum_{k != j} ||c_j - c_k||)."""
    n = len(c)
    return np.exp(-0.5 * sum(np.linalg.norm(c[j] - c[k]) for j in range(n) for k in range(n) if j != k))


def np_value(kind, x, labels, c):
    value = 0.5 * ((x - c[labels]) ** 2).sum(1)
    if kind in ("island", "islets"):
        value = value + LAMBDA1 * np_island(c)
    if kind == "islets":
        value = value + LAMBDA2 * np_islets(c)
    return value


def np_centre_terms(kind, c):
    """The centre-only terms of Eq. 4, as printed."""
    n = len(c)
    step = np.zeros_like(c)
    for j in range(n):
        for k in range(n):
            if j == k:
                continue
            cj, ck = c[j], c[k]
            if kind in ("island", "islets"):
                nj, nk = np.linalg.norm(cj), np.linalg.norm(ck)
                step[j] += LAMBDA1 / (n - 1) * (ck / (nj * nk) - (cj @ ck) / (nj**3 * nk) * cj)
            if kind == "islets":
                step[j] -= LAMBDA2 / (2 * n) * (cj - ck) / np.linalg.norm(cj - ck) * np_islets(c)
    return step


def np_update(kind, x, labels, c):
    """Eq. 4 and Algorithm 1 step 5: c_j <- c_j - alpha * Delta c_j."""
    delta = np_centre_terms(kind, c)
    for j in range(len(c)):
        members = labels == j
        delta[j] += (c[j] - x[members]).sum(0) / (1 + members.sum())
    return c - ALPHA * delta


def make_loss(kind, classes=4, dim=3):
    if kind == "center":
        return CenterLoss(classes, dim, alpha=ALPHA)
    if kind == "island":
        return IslandLoss(classes, dim, alpha=ALPHA, lambda1=LAMBDA1)
    return IsletsLoss(classes, dim, alpha=ALPHA, lambda1=LAMBDA1, lambda2=LAMBDA2)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    # Centres close together so that L_p (Eq. 1) is far from 0 and its update term visible.
    centers = (0.2 * rng.normal(size=(4, 3))).astype(np.float32)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    return centers, x


@pytest.mark.parametrize("kind", ["center", "island", "islets"])
def test_value_gradient_and_centre_update_match_numpy(kind, batch):
    centers, x = batch
    loss = make_loss(kind)
    loss.centers.assign(centers)
    targets = Targets.from_batch(tf.constant(LABELS), "labels")
    embedding = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(embedding)
        value = loss.call(targets, embedding)
        mean = tf.reduce_mean(value)
    c64, x64 = centers.astype(np.float64), x.astype(np.float64)
    np.testing.assert_allclose(value.numpy(), np_value(kind, x64, LABELS, c64), rtol=1e-5)
    # Only the center-loss part reaches the embedding (Eq. 3), averaged over the batch.
    np.testing.assert_allclose(tape.gradient(mean, embedding).numpy(), (x64 - c64[LABELS]) / len(x), rtol=1e-5, atol=1e-7)
    loss.apply_statistics(*loss.statistics(targets, embedding))
    np.testing.assert_allclose(loss.centers.numpy(), np_update(kind, x64, LABELS, c64), rtol=1e-4, atol=1e-6)
    assert not loss.trainable_weights and len(loss.non_trainable_weights) == 1


def test_each_penalty_changes_value_and_update(batch):
    """Island differs from center, islets from island, by more than the tolerances above."""
    centers, x = batch
    c64, x64 = centers.astype(np.float64), x.astype(np.float64)
    updates = {kind: np_update(kind, x64, LABELS, c64) for kind in ("center", "island", "islets")}
    assert np.abs(updates["island"] - updates["center"]).max() > 0.05
    assert np.abs(updates["islets"] - updates["island"]).max() > 0.01
    assert 0.1 < np_islets(c64) < 1.0  # L_p matters at these centres


def test_eq4_centre_terms_are_scaled_gradients_of_eq1_and_the_island_term(batch):
    """Our reading of Eq. 1 (a double sum over ordered pairs) makes Eq. 4 consistent:
    its island term is lambda1/(2(|N|-1)) grad(island) and its islets term lambda2/(2|N|) grad(L_p)."""
    c = batch[0].astype(np.float64)
    n, h = len(c), 1e-6

    def numeric_gradient(f):
        grad = np.zeros_like(c)
        for index in np.ndindex(c.shape):
            step = np.zeros_like(c)
            step[index] = h
            grad[index] = (f(c + step) - f(c - step)) / (2 * h)
        return grad

    expected = LAMBDA1 / (2 * (n - 1)) * numeric_gradient(np_island) + LAMBDA2 / (2 * n) * numeric_gradient(np_islets)
    np.testing.assert_allclose(np_centre_terms("islets", c), expected, rtol=1e-5, atol=1e-8)
    loss = make_loss("islets")
    loss.centers.assign(c.astype(np.float32))
    np.testing.assert_allclose(loss.center_step(tf.constant(c, tf.float32)).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_zero_centres_give_finite_values_and_updates():
    """The initial state (all centres zero): cos taken as 0, no direction; the center-loss part moves them."""
    loss = IsletsLoss(4, 3)
    x = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    targets = Targets.from_batch(tf.constant(LABELS), "labels")
    value = loss.call(targets, tf.constant(x)).numpy()
    # 12 ordered pairs of cosine 0 (+1 each), L_p = exp(0) = 1.
    np.testing.assert_allclose(value, 0.5 * (x**2).sum(1) + LAMBDA1 * 12 + LAMBDA2, rtol=1e-5)
    loss.apply_statistics(*loss.statistics(targets, tf.constant(x)))
    # The first step is the center-loss part alone; an absent class stays at zero.
    np.testing.assert_allclose(loss.centers.numpy(), np_update("center", x.astype(np.float64), LABELS, np.zeros((4, 3))), rtol=1e-5)
    for _ in range(3):
        loss.apply_statistics(*loss.statistics(targets, tf.constant(x)))
        assert np.isfinite(loss.centers.numpy()).all()


def test_config_round_trip_serialization_and_bad_arguments():
    loss = IsletsLoss(7, 128, alpha=0.3, lambda1=0.1, lambda2=0.5, name="islets")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is IsletsLoss
    assert (clone.num_classes, clone.embedding_dim, clone.alpha, clone.lambda1, clone.lambda2) == (7, 128, 0.3, 0.1, 0.5)
    assert type(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(IslandLoss(7, 8)))) is IslandLoss
    for bad in (dict(num_classes=1), dict(lambda1=-0.1), dict(lambda2=-1.0), dict(alpha=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IsletsLoss(**{"num_classes": 7, "embedding_dim": 8, **bad})


# -- the training loop: replicas and the run checkpoint ------------------------------------
# Trains a Dense model (no batch norm, no dropout: replicas compute what one device does)
# with cross-entropy + 0.6 x islets on its "embedding" output (Eq. 5) on real FER2013
# images, once on one device and once under MirroredStrategy on 2 logical CPUs.
_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.losses.test_island import train_islets
    from pipelines.datasets import load_arrays, open_dataset
    data_dir, output_dir = sys.argv[1:3]
    train = load_arrays(open_dataset("fer2013", data_dir, "train"), limit=256, progress=False)
    val = load_arrays(open_dataset("fer2013", data_dir, "val"), limit=64, progress=False)
    single = train_islets(tf.distribute.get_strategy(), train, val, output_dir + "/single")
    mirrored = train_islets(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), train, val, output_dir + "/mirrored")
    print("CENTERS " + json.dumps({"single": single.tolist(), "mirrored": mirrored.tolist()}))
    """
)


def _embedding_model():
    inputs = keras.Input((44, 44, 1), name="face")
    embedding = keras.layers.Dense(16, name="embedding")(keras.layers.Flatten()(inputs))
    probabilities = keras.layers.Dense(7, activation="softmax", name="probabilities")(embedding)
    model = keras.Model({"face": inputs}, {"probabilities": probabilities, "embedding": embedding})
    return attach_spec(model, model_spec(build_model("baseline", 7)))


def _islets_objective(model):
    return Objective([Term("ce", CrossEntropy()), Term("islets", IsletsLoss(7, 16), "embedding", weight=0.6)])


def _trainer(strategy, output_dir, epochs=1):
    keras.utils.set_random_seed(0)
    config = LoopConfig(epochs=epochs, batch_size=32, optimizer="sgd", learning_rate=0.01, lr_schedule="constant", augmentation=NO_AUGMENTATION, checkpoint_every=0, eval_batch_size=64, verbose=0)
    return Trainer(_embedding_model, _islets_objective, config, str(output_dir), strategy)


def train_islets(strategy, train, val, output_dir) -> np.ndarray:
    """The islets centres after one epoch of the loop under ``strategy``."""
    trainer = _trainer(strategy, output_dir)
    trainer.fit(train.images, train.targets, val.images, val.targets)
    return trainer.objective.stateful_terms[0].loss.centers.numpy()


def test_mirrored_two_replicas_hold_the_single_device_centres(fer2013_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, str(fer2013_dir), str(tmp_path)], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("CENTERS ")][-1]
    centers = {name: np.array(value) for name, value in json.loads(line[len("CENTERS "):]).items()}
    assert np.abs(centers["single"]).max() > 0.05  # moved from zero by the rule
    np.testing.assert_allclose(centers["mirrored"], centers["single"], rtol=1e-4, atol=1e-5)


def test_centres_are_in_the_run_checkpoint_not_in_the_model_file(fer_train_subset, fer_val_subset, tmp_path):
    images, targets = fer_train_subset.images[:256], fer_train_subset.targets[:256]
    first = _trainer(tf.distribute.get_strategy(), tmp_path, epochs=1)
    first.fit(images, targets, fer_val_subset.images[:64], fer_val_subset.targets[:64])
    centers = first.objective.stateful_terms[0].loss.centers.numpy()
    assert np.abs(centers).max() > 0.05
    resumed = _trainer(tf.distribute.get_strategy(), tmp_path, epochs=2)
    assert not np.array_equal(resumed.objective.stateful_terms[0].loss.centers.numpy(), centers)
    assert resumed.restore()
    np.testing.assert_array_equal(resumed.objective.stateful_terms[0].loss.centers.numpy(), centers)
    # The .keras model holds the network only: the centres are training state.
    best = load_model(str(tmp_path / "best.keras"))
    assert not any("center" in weight.path for weight in best.weights)
