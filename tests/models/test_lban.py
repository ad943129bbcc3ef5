"""LBAN-IL (Li et al. 2021): registry entry and presets, Fig. 2 shapes, exact parameter counts of
the Table 2 variants, the Eq. 5 objective for each Table 4 loss, serialisation, and real
training with the loop and the islets objective."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.losses import CenterLoss, IslandLoss, IsletsLoss
from fer_keras.models.lban import (
    ALIGNED_SPEC,
    FER2013_SPEC,
    PAPER_PARAMS,
    VARIANTS,
    build_lban,
)
from fer_keras.objective import Targets
from fer_keras.registry import build_model, get_model_entry
from fer_keras.saving import load_model, save_model

# Learnable (trainable) weights and fixed LBC anchors at the paper's widths, FER2013 input;
# computed once from the layer definitions (see tests/layers/test_local_binary.py and
# test_lbab.py for the per-layer formulas).
PARAMS = {
    "lban": (12_788_679, 8_626_176),
    "lbcnn": (2_607_815, 8_626_176),
    "lbc": (2_435_783, 8_626_176),
    "lban_dagger": (21_414_855, 0),
    "lban_double_dagger": (21_242_823, 0),
}
PROJECTIONS = 64 * 128 + 128 * 256 + 256 * 512  # the 1x1 skips of the three down-sampling LBSLs
SMALL = {"widths": (8, 16, 16, 16)}

# Fig. 2 at a 40x40 FER2013 crop: (layer, output shape).
SHAPES = (
    ("stem_relu", (40, 40, 64)),
    ("lbsl1", (20, 20, 128)),
    ("lbab1", (20, 20, 128)),
    ("lbsl2", (10, 10, 256)),
    ("lbab2", (10, 10, 256)),
    ("lbsl3", (5, 5, 512)),
    ("lbab3", (5, 5, 512)),
    ("avgpool", (512,)),
    ("embedding", (128,)),
    ("logits", (7,)),
)


def _count(weights, anchors=False):
    return sum(int(np.prod(w.shape)) for w in weights if ("anchor_kernel" in w.path) == anchors)


def _labels(values):
    return Targets.from_batch(keras.ops.convert_to_tensor(np.array(values, "int32")), "labels")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model("lban", 7)


def test_registry_entry_and_presets():
    from fer_keras.members import loop_setting_names
    from pipelines.input import Augmentation

    entry = get_model_entry("lban")
    assert entry.default_preset == "fer2013" and entry.input_spec == FER2013_SPEC
    assert (FER2013_SPEC.image_size, FER2013_SPEC.source_size, FER2013_SPEC.channels) == ((40, 40), (48, 48), 1)
    assert (ALIGNED_SPEC.image_size, ALIGNED_SPEC.source_size, ALIGNED_SPEC.channels) == ((80, 80), (100, 100), 3)
    assert set(entry.presets) == {"fer2013", "fer2013_adamw", "rafdb", "sfew"}
    for name in ("fer2013", "rafdb", "sfew"):  # the paper's protocol
        preset = entry.presets[name]
        settings = preset.settings
        assert preset.ten_crop and set(settings) <= set(loop_setting_names())
        assert (settings["optimizer"], settings["momentum"], settings["batch_size"], settings["learning_rate"]) == ("sgd", 0.9, 64, 0.001)
        assert (settings["lr_schedule"], settings["lr_decay_start"], settings["lr_decay_every"], settings["lr_decay_factor"]) == ("step", 20, 5, 0.9)
        augmentation = Augmentation(**settings["augmentation"])  # crops and flips only
        assert augmentation.flip and augmentation.translate and augmentation.max_rotation == 0 and augmentation.scale_range == (1.0, 1.0)
    fast = entry.presets["fer2013_adamw"]  # ours: the paper's network, data and loss; AdamW + cosine, lambda warm-up
    assert (fast.settings["optimizer"], fast.settings["learning_rate"], fast.settings["lr_schedule"], fast.settings["warmup_epochs"]) == ("adamw", 0.001, "cosine", 1)
    assert fast.objective_options == {"lambda_warmup_epochs": 5} and fast.ten_crop and fast.input_spec is None
    assert entry.presets["fer2013"].input_spec is None
    assert entry.presets["rafdb"].input_spec == entry.presets["sfew"].input_spec == ALIGNED_SPEC
    assert sorted(entry.objective_option_names()) == ["alpha", "lambda1", "lambda2", "lambda_", "lambda_warmup_epochs", "loss"]


def test_fig_2_shapes_and_outputs(model):
    for name, shape in SHAPES:
        assert tuple(model.get_layer(name).output.shape[1:]) == shape, name
    out = model({"face": np.random.default_rng(0).uniform(size=(2, 40, 40, 1)).astype("float32")}, training=False)
    assert sorted(out) == ["embedding", "logits", "probabilities"]
    assert all(value.dtype == tf.float32 for value in out.values())
    np.testing.assert_allclose(out["probabilities"].numpy(), keras.ops.softmax(out["logits"]).numpy(), atol=1e-6)
    assert out["embedding"].shape == (2, 128)
    assert model.get_layer("dropout").rate == 0.5
    # Sec. 4.5: the first LBSL (64 -> 128, weight size 128) saves 64 x 128 x 3 x 3 learnable weights.
    assert tuple(model.get_layer("lbsl1").lbc.anchor_kernel.shape) == (3, 3, 64, 128)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_table_2_parameter_counts(variant):
    m = build_model("lban", 7, variant=variant)
    learnable, anchors = _count(m.trainable_weights), _count(m.non_trainable_weights, anchors=True)
    print(f"LBAN variant={variant}: {learnable / 1e6:.2f} M learnable (paper {PAPER_PARAMS[variant]} M), {anchors / 1e6:.2f} M fixed anchors")
    assert (learnable, anchors) == PARAMS[variant]
    assert _count(m.trainable_weights, anchors=True) == 0


def test_parameter_differences_between_variants():
    """What Table 2's differences stand for: the learnable 3x3 replacing the anchors
    (LBAN-dagger - LBAN = the anchors), the projection skips (dagger - double dagger,
    LBCNN - LBC), and the count does not depend on the input size (global pooling) apart
    from the stem's input channels."""
    learnable = {variant: counts[0] for variant, counts in PARAMS.items()}
    assert learnable["lban_dagger"] - learnable["lban"] == PARAMS["lban"][1]
    assert learnable["lban_dagger"] - learnable["lban_double_dagger"] == PROJECTIONS == learnable["lbcnn"] - learnable["lbc"]
    raf = build_lban(7, ALIGNED_SPEC)
    assert _count(raf.trainable_weights) == learnable["lban"] + 9 * 2 * 64  # RGB stem
    assert raf.get_layer("lbab3").output.shape[1:] == (10, 10, 512)


def test_objective_for_each_table_4_loss():
    m = build_model("lban", 7, **SMALL)
    entry = get_model_entry("lban")
    assert [t.name for t in entry.objective(m, "labels", loss="softmax").terms] == ["crossentropy"]
    for loss, cls in (("center", CenterLoss), ("island", IslandLoss), ("islets", IsletsLoss)):
        objective = entry.objective(m, "labels", loss=loss, lambda_=0.3, alpha=0.25)
        ce, feature = objective.terms
        assert (ce.name, ce.output, ce.weight, ce.loss.from_logits) == ("crossentropy", "logits", 1.0, True)
        assert (feature.name, feature.output, feature.weight) == (loss, "embedding", 0.3)
        assert isinstance(feature.loss, cls) and (feature.loss.num_classes, feature.loss.embedding_dim, feature.loss.alpha) == (7, 128, 0.25)
        assert objective.stateful_terms == [feature]
    islets = entry.objective(m, "labels").terms[1].loss  # the default: the islets loss, Sec. 4.2 weights
    assert isinstance(islets, IsletsLoss) and (islets.lambda1, islets.lambda2) == (0.2, 0.9)
    assert (entry.objective(m, "labels").terms[1].weight, entry.objective(m, "labels").terms[1].warmup_epochs) == (0.6, 0.0)
    assert entry.objective(m, "labels", **entry.presets["fer2013_adamw"].objective_options).terms[1].warmup_epochs == 5
    with pytest.raises(ValueError, match="loss must be one of"):
        entry.objective(m, "labels", loss="arcface")

    # Eq. 5 on a batch: cross-entropy from the logits + lambda x the feature loss.
    objective = entry.objective(m, "labels", loss="center")
    out = m({"face": np.random.default_rng(1).uniform(size=(3, 40, 40, 1)).astype("float32")}, training=True)
    total, _ = objective(_labels([0, 4, 6]), out)
    logits = out["logits"].numpy().astype("float64")
    top = logits.max(1)
    ce = top + np.log(np.exp(logits - top[:, None]).sum(1)) - logits[np.arange(3), [0, 4, 6]]
    center = 0.5 * (out["embedding"].numpy() ** 2).sum(1)  # centres start at 0
    np.testing.assert_allclose(total.numpy(), ce + 0.6 * center, rtol=1e-4)


def test_bad_options():
    with pytest.raises(ValueError, match="variant"):
        build_model("lban", 7, variant="resnet")
    with pytest.raises(ValueError, match="samplings"):
        build_model("lban", 7, samplings=(2, 1))


def test_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    m = build_model("lban", 7, variant="lban", dataset="fer2013", **SMALL)
    x = {"face": np.random.default_rng(2).uniform(size=(2, 40, 40, 1)).astype("float32")}
    expected = m(x, training=False)
    path = save_model(m, str(tmp_path / "lban.keras"))
    loaded = keras.saving.load_model(path, safe_mode=True)
    got = loaded(x, training=False)
    for name in ("probabilities", "logits", "embedding"):
        np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy(), err_msg=name)
    anchors = [w.numpy() for w in m.non_trainable_weights if "anchor_kernel" in w.path]
    assert len(anchors) == 3 * 1 + 4 + 3 + 2  # one per LBSL: 3 before the blocks, 2+2, 1+2, 0+2 in them
    np.testing.assert_array_equal(np.concatenate([a.ravel() for a in anchors]), np.concatenate([w.numpy().ravel() for w in loaded.non_trainable_weights if "anchor_kernel" in w.path]))
    spec = load_model(path).fer_spec
    assert spec.architecture == "lban" and spec.output == "probabilities" and tuple(spec.options["widths"]) == (8, 16, 16, 16)


def test_training_with_the_loop_and_the_islets_objective_on_fer2013(fer2013_dir, tmp_path):
    from fer_keras.training.loop import LoopConfig, Trainer
    from pipelines import input as input_pipeline
    from pipelines.datasets import load_arrays, open_dataset

    train = load_arrays(open_dataset("fer2013", fer2013_dir, "train"), limit=256, progress=False)
    val = load_arrays(open_dataset("fer2013", fer2013_dir, "val"), limit=64, progress=False)
    keras.utils.set_random_seed(0)
    config = LoopConfig(epochs=2, batch_size=32, optimizer="sgd", learning_rate=0.01, momentum=0.9, lr_schedule="constant", augmentation=input_pipeline.NO_AUGMENTATION, checkpoint_every=0, eval_batch_size=64, verbose=0)
    entry = get_model_entry("lban")
    trainer = Trainer(lambda: build_model("lban", 7, **SMALL), lambda model: entry.objective(model, "labels"), config, str(tmp_path), tf.distribute.get_strategy())
    assert [term.name for term in trainer.objective.terms] == ["crossentropy", "islets"]
    assert trainer.objective.outputs == ("logits", "embedding")
    centers = trainer.objective.terms[1].loss.centers
    before = centers.numpy().copy()
    history = trainer.fit(train.images, train.targets, val.images, val.targets)
    print("LBAN training:", [(row["loss"], row["images_per_sec"]) for row in history])
    assert np.isfinite(history[0]["loss"]) and history[1]["loss"] < history[0]["loss"]
    assert not np.array_equal(centers.numpy(), before)  # the centres moved by their rule
    loaded = keras.saving.load_model(str(tmp_path / "best.keras"), safe_mode=True)
    assert loaded({"face": np.zeros((1, 40, 40, 1), "float32")}, training=False)["probabilities"].shape == (1, 7)
