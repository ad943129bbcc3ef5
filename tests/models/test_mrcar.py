"""MrCAR (Lan et al. 2023): Table 1 shapes, RAF-DB config, exact parameter counts of the
Table 6 variants, label-free inference, serialisation, and real training with the loop."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.models.mrcar import MRCAR_SPEC, RAFDB_SPEC, TABLE_1, MrCAR, build_mrcar, region_sizes
from fer_keras.registry import build_model, get_model_entry


# Computed once from the layer definitions (see tests/layers/test_car_block.py for the
# per-block formula); count_params() includes the BN moving statistics.
PARAMS = {
    ("full", False): 4_137_616,
    ("global_only", False): 1_381_936,
    ("no_attention", False): 4_067_008,
    ("softmax", False): 4_137_623,
    ("full", True): 1_906_224,
}


def _inputs(spec, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(size=(batch, *shape)).astype("float32") for name, shape in spec.input_shapes().items()}


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model("mrcar", 7)


def test_registry_entry():
    entry = get_model_entry("mrcar")
    assert entry.default_preset == "fer2013"
    assert entry.input_spec == MRCAR_SPEC
    assert MRCAR_SPEC.regions == {"eyes": (20, 44), "mouth": (26, 44)} == region_sizes((44, 44))
    assert RAFDB_SPEC.regions == {"eyes": (44, 98), "mouth": (58, 98)}
    fer = entry.presets["fer2013"]
    assert fer.ten_crop and fer.settings["lr_decay_start"] == 80 and fer.settings["batch_size"] == 32
    assert fer.settings["lr_schedule"] == "step" and fer.settings["lr_decay_every"] == 5 and fer.settings["lr_decay_factor"] == 0.9
    raf = entry.presets["rafdb"]
    assert raf.input_spec.image_size == (98, 98) and raf.input_spec.source_size == (100, 100) and raf.input_spec.channels == 3
    assert raf.settings["lr_decay_start"] == 50
    assert set(entry.presets) == {"fer2013", "fer2013_cosine", "rafdb", "ckplus", "jaffe"}
    ours = entry.presets["fer2013_cosine"]
    assert ours.objective_options == {"margin_warmup_epochs": 5} and ours.model_options == {"arcface_scale": 32.0}
    assert ours.settings["lr_schedule"] == "cosine" and ours.settings["epochs"] == 60 and ours.settings["weight_decay"] == 5e-3


def test_table_1_rows_match_the_paper(shared_dir):
    text = (shared_dir / "papers" / "mrcar_coordinate_attention_arcface.txt").read_text()
    table = text[text.index("TABLE 1.") : text.index("FC. Arcface Loss")]
    rows = re.findall(r"^(\w+)\s+\(([\d,\s]+)\)", table, flags=re.M)
    paper = [(name.lower(), tuple(int(v) for v in dims.split(","))) for name, dims in rows]
    ours = [(name, shape if len(shape) == 3 else (1, 1, *shape)) for name, shape in TABLE_1]
    assert paper == ours


def test_table_1_output_shapes(model):
    for branch in ("face", "eyes", "mouth"):
        for name, shape in TABLE_1:
            layer = model.backbone.get_layer(f"{branch}_{name}")
            if branch == "face":
                assert tuple(layer.output.shape[1:]) == shape, name
            else:
                assert layer.output.shape[-1] == shape[-1], (branch, name)
    assert tuple(model.backbone.get_layer("fusion_concat").output.shape[1:]) == (1536,)
    assert tuple(model.backbone.get_layer("fc").output.shape[1:]) == (512,)
    assert model.backbone.get_layer("eyes_dsblock3").output.shape[1:3] == (2, 3)
    assert model.backbone.get_layer("mouth_dsblock3").output.shape[1:3] == (2, 3)


@pytest.mark.parametrize("variant, shared", sorted(PARAMS))
def test_parameter_counts(variant, shared):
    m = build_model("mrcar", 7, variant=variant, share_branch_weights=shared)
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    print(f"MrCAR variant={variant} shared={shared}: {m.count_params():,} parameters ({trainable:,} trainable)")
    assert m.count_params() == PARAMS[(variant, shared)]
    if variant == "no_attention":
        assert not any("coordinate_attention" in w.path for w in m.weights)


def test_outputs_probabilities_and_cosines_and_the_objective_applies_the_margin(model):
    """Inference output: softmax(s cos); the ArcFace margin lives in the registered objective
    (``fer_keras.losses.arcface_loss`` on the ``cosine`` output), equal to Eq. 10 by hand."""
    from fer_keras.objective import Targets

    x = _inputs(MRCAR_SPEC)
    out = model(x, training=False)
    p, cosine = out["probabilities"].numpy(), out["cosine"].numpy()
    assert p.shape == (2, 7) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    logits = 16.0 * cosine
    np.testing.assert_allclose(p, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), atol=1e-5)
    labels = np.array([3, 5], "int32")
    objective = get_model_entry("mrcar").objective(model, "labels")
    total, terms = objective(Targets.from_batch(keras.ops.convert_to_tensor(labels), "labels"), out)
    theta = np.arccos(np.clip(cosine[[0, 1], labels], -1, 1))
    margin_logits = logits.copy()
    margin_logits[[0, 1], labels] = 16.0 * np.cos(theta + 0.5)
    expected = -np.log(np.exp(margin_logits[[0, 1], labels]) / np.exp(margin_logits).sum(1))
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-4)
    assert np.all(total.numpy() > -np.log(p[[0, 1], labels]))  # the margin makes the loss stricter
    with pytest.raises(ValueError, match="arcface"):
        objective.check_targets("distribution")


def test_global_only_ignores_regions_and_rafdb_builds():
    m = build_mrcar(7, MRCAR_SPEC, variant="global_only")
    x = _inputs(MRCAR_SPEC)
    face_only = m({"face": x["face"]}, training=False)["probabilities"].numpy()
    np.testing.assert_allclose(m(x, training=False)["probabilities"].numpy(), face_only, atol=1e-6)
    raf = build_mrcar(7, RAFDB_SPEC)
    assert raf.backbone.get_layer("face_dsblock3").output.shape[1:] == (7, 7, 512)
    assert raf(_inputs(RAFDB_SPEC, batch=1), training=False)["probabilities"].shape == (1, 7)


def test_softmax_head_combines_with_global_only_and_smoothing_reaches_the_arcface_loss():
    """``head="softmax"`` on the global-only branch (the recipe study's proxy) returns
    probabilities and logits and trains with cross-entropy from the logits (so a saturated
    wrong prediction keeps its gradient); ``label_smoothing`` changes the ArcFace loss to the
    smoothed target's cross-entropy of the margin logits (NumPy reference)."""
    from fer_keras.objective import Targets

    m = build_mrcar(7, MRCAR_SPEC, variant="global_only", head="softmax")
    out = m({"face": _inputs(MRCAR_SPEC)["face"]}, training=False)
    assert sorted(out) == ["logits", "probabilities"] and m.get_config()["head"] == "softmax"
    np.testing.assert_allclose(out["probabilities"].numpy(), keras.ops.softmax(out["logits"]).numpy(), atol=1e-6)
    softmax_objective = get_model_entry("mrcar").objective(m, "labels")
    exploded = {"logits": keras.ops.convert_to_tensor([[200.0, 0, 0, 0, 0, 0, 0]])}
    wrong = Targets.from_batch(keras.ops.convert_to_tensor([3]), "labels")
    import tensorflow as tf

    logits = tf.Variable(exploded["logits"])
    with tf.GradientTape() as tape:
        loss, _ = softmax_objective(wrong, {"logits": logits})
    np.testing.assert_allclose(loss.numpy(), [200.0], rtol=1e-5)  # not floored at -log(1e-7)
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), [[1, 0, 0, -1, 0, 0, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="head"):
        build_mrcar(7, MRCAR_SPEC, variant="softmax", head="arcface")

    arc = build_mrcar(7, MRCAR_SPEC, variant="global_only")
    out = arc({"face": _inputs(MRCAR_SPEC)["face"]}, training=False)
    cosine = out["cosine"].numpy().astype("float64")
    labels = np.array([3, 5], "int32")
    objective = get_model_entry("mrcar").objective(arc, "labels", label_smoothing=0.1)
    total, _ = objective(Targets.from_batch(keras.ops.convert_to_tensor(labels), "labels"), out)
    logits = 16.0 * cosine
    logits[[0, 1], labels] = 16.0 * np.cos(np.arccos(np.clip(cosine[[0, 1], labels], -1, 1)) + 0.5)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.full((2, 7), 0.1 / 7)
    target[[0, 1], labels] += 0.9
    np.testing.assert_allclose(total.numpy(), -(target * log_p).sum(1), rtol=1e-4)


def _all_layer_outputs(m):
    backbone = m.backbone
    names = [layer.name for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
    return keras.Model(backbone.inputs, {name: backbone.get_layer(name).output for name in names})


def test_config_and_keras_file_round_trip(model, tmp_path):
    x = _inputs(MRCAR_SPEC, seed=5)
    expected = model(x, training=False)["probabilities"].numpy()
    clone = MrCAR.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(x, training=False)["probabilities"].numpy(), expected)
    assert clone.get_config() == model.get_config()

    path = str(tmp_path / "mrcar.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, MrCAR) and loaded.name == "mrcar"
    np.testing.assert_array_equal(loaded(x, training=False)["probabilities"].numpy(), expected)
    ours, theirs = _all_layer_outputs(model)(x), _all_layer_outputs(loaded)(x)
    assert len(ours) == 3 * (len(TABLE_1) + 2) + 2  # + bn1, relu1 per branch; concat, fc
    for name in ours:
        np.testing.assert_array_equal(ours[name].numpy(), theirs[name].numpy(), err_msg=name)
    embedding = loaded.backbone(x)
    np.testing.assert_array_equal(loaded.head.compute_logits(embedding).numpy(), model.head.compute_logits(model.backbone(x)).numpy())


def test_training_with_the_loop_on_fer2013(fer2013_dir, tmp_path):
    from fer_keras.training.loop import LoopConfig, Trainer
    from pipelines import input as input_pipeline
    from pipelines.datasets import load_arrays, open_dataset

    train = load_arrays(open_dataset("fer2013", fer2013_dir, "train"), limit=256, progress=False)
    val = load_arrays(open_dataset("fer2013", fer2013_dir, "val"), limit=64, progress=False)
    assert train.images.shape[1:] == (48, 48, 1)

    batch = next(iter(input_pipeline.train_dataset(train.images, train.targets, MRCAR_SPEC, 32)))
    inputs = batch[0]
    assert {k: tuple(v.shape[1:]) for k, v in inputs.items()} == MRCAR_SPEC.input_shapes()

    keras.utils.set_random_seed(0)
    config = LoopConfig(epochs=2, batch_size=32, optimizer="sgd", learning_rate=0.01, momentum=0.9, lr_schedule="constant", augmentation=input_pipeline.NO_AUGMENTATION, checkpoint_every=0, eval_batch_size=64, verbose=0)
    entry = get_model_entry("mrcar")
    trainer = Trainer(lambda: build_model("mrcar", 7), lambda model: entry.objective(model, "labels"), config, str(tmp_path), tf.distribute.get_strategy())
    assert [term.name for term in trainer.objective.terms] == ["arcface"] and trainer.objective.outputs == ("cosine",)
    history = trainer.fit(train.images, train.targets, val.images, val.targets)
    print("MrCAR training:", [(row["loss"], row["images_per_sec"]) for row in history])
    assert len(history) == 2
    assert np.isfinite(history[0]["loss"]) and history[1]["loss"] < history[0]["loss"]
    loaded = keras.saving.load_model(str(tmp_path / "best.keras"), safe_mode=True)
    assert loaded(inputs, training=False)["probabilities"].shape == (32, 7)
