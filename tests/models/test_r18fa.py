"""R18+FAML (Zhou, Xie, Tian; Sec. 3.1, 4.1): registry and presets, shapes and ablation flags,
ML's per-batch loss choice at the configured frequency through the real objective and the
loop's draws, Eq. 4-5 and the class-weighted Eq. 2 against NumPy, training on real FER2013,
and the .keras round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.models.r18fa import smoothing_for_eq4
from fer_keras.objective import Context, Targets, call_factory
from fer_keras.registry import build_model, get_model_entry
from fer_keras.saving import load_model, save_model
from fer_keras.training.loop import LoopConfig, Trainer, batch_draw
from pipelines.input import eval_inputs

CLASSES = 7


@pytest.fixture(scope="module")
def r18fa():
    keras.utils.set_random_seed(0)
    return build_model("r18fa", CLASSES, mlp_ratio=2.0)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _batch(seed, size=16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size).astype("int32")
    return Targets.from_batch(labels, "labels"), {"logits": rng.normal(0, 2, (size, CLASSES)).astype("float32")}, labels


def _objective(model, **options):
    return call_factory(get_model_entry("r18fa").objective, model, "labels", options)


def test_registry_entry_and_presets():
    from fer_keras.members import loop_setting_names

    entry = get_model_entry("r18fa")
    assert entry.default_preset == "fer2013" and set(entry.presets) == {"rafdb", "affectnet", "fer2013"}
    assert sorted(entry.objective_option_names()) == ["class_weights", "epsilon", "smoothing_probability", "weighted"]
    rafdb, affectnet = entry.presets["rafdb"], entry.presets["affectnet"]
    assert rafdb.objective_options == {"smoothing_probability": 0.8} and affectnet.objective_options == {"smoothing_probability": 0.2, "weighted": True}  # Sec. 4.1
    assert (rafdb.settings["batch_size"], affectnet.settings["batch_size"], rafdb.input_spec.image_size) == (128, 256, (224, 224))
    for preset in entry.presets.values():
        assert set(preset.settings) <= set(loop_setting_names())
        assert (preset.settings["optimizer"], preset.settings["learning_rate"], preset.settings["lr_schedule"], preset.settings["phase2_lr"]) == ("adam", 3e-4, "cosine_then_step_on_plateau", 1e-5)


def test_shapes_token_grids_and_outputs(r18fa):
    # 44x44 crops, 3x3/2 stem: stage maps 22, 11, 6, 3; attention patches 2, 1, 1 -> 11x11, 11x11, 6x6 tokens.
    for name, shape in (("conv1_conv", (22, 22, 64)), ("attention1", (22, 22, 64)), ("attention2", (11, 11, 128)), ("attention3", (6, 6, 256)), ("conv5_block2_out", (3, 3, 512))):
        assert tuple(r18fa.get_layer(name).output.shape[1:]) == shape, name
    assert [r18fa.get_layer(f"attention{i}").patch_size for i in (1, 2, 3)] == [2, 1, 1]
    out = r18fa({"face": np.random.default_rng(0).uniform(size=(2, 44, 44, 1)).astype("float32")}, training=False)
    assert sorted(out) == ["logits", "probabilities"] and out["probabilities"].shape == (2, CLASSES)
    np.testing.assert_allclose(out["probabilities"].numpy(), keras.ops.softmax(out["logits"]).numpy(), atol=1e-6)


def test_ablation_flags_and_plain_r18():
    plain = build_model("r18fa", CLASSES, fusion=False, attention1=False, attention2=False, attention3=False)
    assert plain.count_params() == build_model("resnet", CLASSES).count_params()  # Table 2's R18
    no_att2 = build_model("r18fa", CLASSES, attention2=False)
    names = {layer.name for layer in no_att2.layers}
    assert {"attention1", "attention3"} <= names and "attention2" not in names
    assert type(no_att2.get_layer("conv1_conv")).__name__ == "FacialAreaFusion"
    assert type(plain.get_layer("conv1_conv")).__name__ == "Conv2D"


@pytest.mark.parametrize("p, weighted", [(0.8, False), (0.2, True)])
def test_ml_draws_one_loss_per_batch_with_the_configured_frequency(r18fa, p, weighted):
    """Over 1,000 of the loop's batch draws, the objective's loss is exactly LSR or exactly
    (W)CE on every batch (never a mixture), LSR with frequency p (Sec. 3.1, 4.1)."""
    weights = np.linspace(0.5, 2.0, CLASSES)
    objective = _objective(r18fa, smoothing_probability=p, weighted=weighted, **({"class_weights": tuple(weights)} if weighted else {}))
    targets, outputs, labels = _batch(0)
    log_q = _log_softmax(outputs["logits"].astype("float64"))
    smooth = np.full((len(labels), CLASSES), 0.1 / (CLASSES - 1))
    smooth[np.arange(len(labels)), labels] = 0.9
    lsr = -(smooth * log_q).sum(-1)
    ce = -log_q[np.arange(len(labels)), labels] * (weights[labels] if weighted else 1.0)
    chosen = []
    for step in range(1000):
        total, _ = objective(targets, outputs, Context(batch_draw(0, step), 0.0))
        total = total.numpy()
        is_lsr, is_ce = np.allclose(total, lsr, atol=1e-5), np.allclose(total, ce, atol=1e-5)
        assert is_lsr != is_ce, step
        chosen.append(is_lsr)
    assert abs(np.mean(chosen) - p) < 0.04  # 3.3 binomial standard deviations at p = 0.8


def test_lsr_is_eq_4_and_weighted_ce_is_eq_2_times_the_class_weight(r18fa):
    targets, outputs, labels = _batch(1, size=32)
    log_q = _log_softmax(outputs["logits"].astype("float64"))
    lsr_objective = _objective(r18fa, smoothing_probability=1.0, epsilon=0.1)
    eq4 = np.full((32, CLASSES), 0.1 / (CLASSES - 1))  # Eq. 4: 1 - eps on y, eps / (C - 1) elsewhere
    eq4[np.arange(32), labels] = 0.9
    np.testing.assert_allclose(lsr_objective(targets, outputs, Context(0.5))[0].numpy(), -(eq4 * log_q).sum(-1), atol=1e-5)  # Eq. 5
    counts = np.bincount(labels, minlength=CLASSES)
    weights = np.where(counts > 0, 32 / (CLASSES * np.maximum(counts, 1)), 0.0)  # N / (K n_k), as fer_keras.train passes
    wce_objective = _objective(r18fa, smoothing_probability=0.0, weighted=True, class_weights=tuple(weights))
    eq2 = -log_q[np.arange(32), labels]  # Eq. 1-2 (one-hot p, softmax q of Eq. 3)
    np.testing.assert_allclose(wce_objective(targets, outputs, Context(0.5))[0].numpy(), weights[labels] * eq2, atol=1e-5)
    assert smoothing_for_eq4(0.1, 7) == pytest.approx(0.7 / 6)
    with pytest.raises(ValueError, match="class_weights"):
        _objective(r18fa, weighted=True)


def test_trains_on_real_fer2013(fer_train_subset, fer_val_subset, tmp_path):
    """8 steps of the fer2013 preset's recipe (ML, Adam, the plateau schedule) lower the
    cross-entropy on the training images."""
    images, labels = fer_train_subset.images[:256], fer_train_subset.targets[:256]
    entry = get_model_entry("r18fa")
    config = LoopConfig(epochs=1, batch_size=32, optimizer="adam", learning_rate=1e-3, lr_schedule="cosine_then_step_on_plateau", eval_batch_size=128, checkpoint_every=0, verbose=0)
    keras.utils.set_random_seed(0)
    trainer = Trainer(lambda: build_model("r18fa", CLASSES, mlp_ratio=2.0), lambda m: call_factory(entry.objective, m, "labels", {}), config, str(tmp_path), tf.distribute.get_strategy())

    def crossentropy():
        """Mean cross-entropy on the training images, batch-norm on batch statistics (an untrained
        network's moving statistics say nothing; dropout: none)."""
        faces = eval_inputs(images, trainer.spec)["face"]
        logits = np.concatenate([trainer.model({"face": faces[i : i + 128]}, training=True)["logits"].numpy() for i in range(0, len(images), 128)])
        return float(-_log_softmax(logits.astype("float64"))[np.arange(len(labels)), labels].mean())

    before = crossentropy()
    trainer.fit(images, labels, fer_val_subset.images[:64], fer_val_subset.targets[:64])
    assert crossentropy() < before - 0.5


def test_keras_round_trip(r18fa, tmp_path):
    path = save_model(r18fa, str(tmp_path / "r18fa.keras"))
    loaded = load_model(path)
    x = {"face": np.random.default_rng(2).uniform(size=(2, 44, 44, 1)).astype("float32")}
    for key in ("probabilities", "logits"):
        np.testing.assert_allclose(loaded(x, training=False)[key].numpy(), r18fa(x, training=False)[key].numpy(), atol=1e-5)
