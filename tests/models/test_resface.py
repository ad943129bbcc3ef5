"""ResFace (Qu & Niu 2023): shapes at 48 and 224, the ablation rows of Tables 1-4, .keras round
trip, the objective (Eq. 3.5 or cross-entropy; a frozen teacher's softmax as target), and
real FER+ training in a few steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.layers import ChannelSpatialModulator, LocalFeatureExtractor
from fer_keras.losses import CrossEntropy, LabelDistribution
from fer_keras.models.resface import PAPER_SPEC, ROWS, check_teacher
from fer_keras.objective import Targets
from fer_keras.registry import build_model, get_model_entry
from fer_keras.saving import load_model, save_model
from fer_keras.training.loop import LoopConfig, Trainer
from pipelines import input as input_pipeline
from pipelines.datasets import load_arrays, open_dataset
from pipelines.labels import BASIC8


def _faces(n, size=44, channels=1, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, channels)).astype("float32")


@pytest.fixture(scope="module")
def resface():
    keras.utils.set_random_seed(0)
    return build_model("resface", BASIC8)


@pytest.fixture(scope="module")
def ferplus_votes(ferplus_dir):
    """128 FER+ training images with their vote distributions."""
    return load_arrays(open_dataset("ferplus", str(ferplus_dir), "train", label_mode="crossentropy"), image_size=(48, 48), channels=1, limit=128, progress=False)


def test_registry_entry_and_presets():
    from fer_keras.members import loop_setting_names

    entry = get_model_entry("resface")
    assert entry.default_preset == "ferplus" and set(entry.presets) == {"paper", "ferplus"}
    assert sorted(entry.option_names()) == ["depth", "dilation", "dropout", "local_extractor", "modulator", "reduction", "stem", "use_bias", "weights"]
    assert sorted(entry.objective_option_names()) == ["loss", "teacher"]
    paper = entry.presets["paper"]
    assert (paper.input_spec.image_size, paper.input_spec.channels, paper.model_options["stem"]) == ((224, 224), 3, "imagenet")
    assert (paper.settings["optimizer"], paper.settings["learning_rate"], paper.settings["batch_size"]) == ("sgd", 0.1, 64)  # Sec. 4.2
    for preset in entry.presets.values():
        assert set(preset.settings) <= set(loop_setting_names())


def test_shapes_at_48(resface):
    # 44x44 crops of 48x48 faces, 3x3/2 stem: stage 2 at 11x11, where B and C meet (Eq. 3.3).
    for name, shape in (("conv1_relu", (22, 22, 64)), ("conv3_block2_out", (11, 11, 128)), ("modulator", (11, 11, 128)), ("local_features", (11, 11, 128)), ("local_global", (11, 11, 128)), ("conv5_block2_out", (3, 3, 512))):
        assert tuple(resface.get_layer(name).output.shape[1:]) == shape, name
    out = resface({"face": _faces(2)}, training=False)
    assert sorted(out) == ["logits", "probabilities"] and out["probabilities"].shape == (2, 8)
    np.testing.assert_allclose(out["probabilities"].numpy(), keras.ops.softmax(out["logits"]).numpy(), atol=1e-6)


def test_shapes_at_224_with_the_imagenet_stem():
    model = build_model("resface", 7, PAPER_SPEC, stem="imagenet", depth=50)
    # Sec. 3.1: Fea_conv1 is 56x56 at 224x224; stage 2 (ResNet-50: 512 channels) at 28x28.
    assert tuple(model.get_layer("pool1_pool").output.shape[1:]) == (56, 56, 64)
    assert tuple(model.get_layer("local_global").output.shape[1:]) == (28, 28, 512)
    assert model({"face": _faces(1, 224, 3)}, training=False)["probabilities"].shape == (1, 7)


def test_ablation_flags_change_the_graph():
    counts, layers = {}, {}
    for row, (local, modulator) in ROWS.items():
        model = build_model("resface", 7, local_extractor=local, modulator=modulator)
        kinds = {type(layer) for layer in model.layers}
        assert (LocalFeatureExtractor in kinds, ChannelSpatialModulator in kinds) == (local, modulator), row
        counts[row] = model.count_params()
        layers[row] = {layer.name: layer.count_params() for layer in model.layers}
    # The rows differ by exactly their extra layers, which add up (A+B+C = A + B + C).
    assert counts["A+B"] - counts["A"] == layers["A+B"]["local_features"] > 0
    assert counts["A+C"] - counts["A"] == layers["A+C"]["modulator"] > 0
    assert counts["A+B+C"] == counts["A"] + layers["A+B"]["local_features"] + layers["A+C"]["modulator"]
    assert "local_global" not in layers["A"] and "local_global" not in layers["A+C"]


def test_keras_round_trip_safe_mode(resface, tmp_path):
    path = save_model(resface, str(tmp_path / "resface.keras"))
    loaded = load_model(path)  # safe_mode=True
    x = {"face": _faces(3)}
    np.testing.assert_allclose(loaded(x, training=False)["probabilities"].numpy(), resface(x, training=False)["probabilities"].numpy(), atol=1e-6)


def test_objective_ldl_and_crossentropy(resface):
    entry = get_model_entry("resface")
    ldl, ce = entry.objective(resface, "distribution").terms[0], entry.objective(resface, "labels", loss="crossentropy").terms[0]
    assert (ldl.output, type(ldl.loss), ldl.loss.from_logits) == ("logits", LabelDistribution, True)
    assert (ce.output, type(ce.loss), ce.loss.from_logits) == ("logits", CrossEntropy, True)
    out = resface({"face": _faces(4)}, training=False)
    labels = Targets.from_batch(tf.constant([0, 3, 6, 7]), "labels")
    total_ldl, _ = entry.objective(resface, "labels")(labels, out)
    total_ce, _ = entry.objective(resface, "labels", loss="crossentropy")(labels, out)
    np.testing.assert_allclose(total_ldl.numpy(), total_ce.numpy() / 8, rtol=1e-5)  # Eq. 3.5's 1/l
    with pytest.raises(ValueError, match="loss must be one of"):
        entry.objective(resface, "labels", loss="kl")


def test_teacher_must_match_classes_and_input(resface):
    entry = get_model_entry("resface")
    assert entry.objective(resface, "labels", teacher=build_model("resnet", BASIC8)).teacher is not None
    with pytest.raises(ValueError, match="classes"):
        check_teacher(build_model("resnet", 7), resface)
    rgb = build_model("resnet", BASIC8, PAPER_SPEC, stem="imagenet")
    with pytest.raises(ValueError, match="input"):
        entry.objective(resface, "labels", teacher=rgb)


def test_teacher_gets_no_gradient_and_its_softmax_is_the_target(ferplus_votes, tmp_path):
    """Two SGD steps against a frozen ResNet teacher: the teacher's weights (moving statistics
    included) do not move, the student's do, and the loss the loop reports is Eq. 3.5 of the
    student's (training-mode) outputs against the teacher's inference softmax."""
    images, votes = ferplus_votes.images[:64], ferplus_votes.targets[:64]
    keras.utils.set_random_seed(0)
    teacher = build_model("resnet", BASIC8)
    before = [w.numpy().copy() for w in teacher.weights]
    config = LoopConfig(epochs=1, batch_size=32, optimizer="sgd", learning_rate=0.0, lr_schedule="constant", augmentation=input_pipeline.NO_AUGMENTATION, checkpoint_every=0, eval_batch_size=64, verbose=0)
    entry = get_model_entry("resface")
    build = lambda: build_model("resface", BASIC8, local_extractor=False)
    trainer = Trainer(build, lambda m: entry.objective(m, "distribution", teacher=teacher), config, str(tmp_path / "zero"), tf.distribute.get_strategy(), target_kind="distribution")
    history = trainer.fit(images, votes, images[:32], votes[:32].argmax(1))
    expected, with_votes = [], []
    for inputs, batch_votes, _ in input_pipeline.train_dataset(images, votes, trainer.spec, 32, epoch=0, augmentation=input_pipeline.NO_AUGMENTATION):
        soft = teacher(inputs, training=False)["probabilities"].numpy()
        logits = trainer.model(inputs, training=True)["logits"].numpy().astype("float64")
        log_p = logits - logits.max(1, keepdims=True) - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        expected.append(-(soft * log_p).mean(axis=1))
        with_votes.append(-(batch_votes.numpy() * log_p).mean(axis=1))
    assert history[0]["loss"] == pytest.approx(np.concatenate(expected).mean(), rel=1e-4)
    assert history[0]["loss"] != pytest.approx(np.concatenate(with_votes).mean(), rel=1e-3)

    moving = Trainer(build, lambda m: entry.objective(m, "distribution", teacher=teacher), LoopConfig(**dict(vars(config), learning_rate=0.05)), str(tmp_path / "sgd"), tf.distribute.get_strategy(), target_kind="distribution")
    student = [w.numpy().copy() for w in moving.model.trainable_weights]
    moving.fit(images, votes, images[:32], votes[:32].argmax(1))
    for a, b in zip(before, teacher.weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(student, moving.model.trainable_weights))


def test_loss_falls_on_real_ferplus_votes(ferplus_votes):
    """A few Adam steps on 64 real FER+ faces with their vote distributions (Eq. 3.5)."""
    keras.utils.set_random_seed(0)
    model = build_model("resface", BASIC8)
    objective = get_model_entry("resface").objective(model, "distribution")
    inputs = input_pipeline.eval_inputs(ferplus_votes.images[:64], get_model_entry("resface").input_spec)
    targets = Targets.from_batch(ferplus_votes.targets[:64], "distribution")
    optimizer = keras.optimizers.Adam(1e-3)
    losses = []
    for _ in range(8):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(objective(targets, model(inputs, training=True))[0])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
