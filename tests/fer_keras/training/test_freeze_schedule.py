"""Frozen-then-unfrozen fine-tuning (``LoopConfig.freeze_epochs``, ``head_layers``): while
frozen only the head's variables move (no step, no weight decay on the rest), afterwards every
variable does; a resumed run freezes by the epoch; a head that does not exist is an error; the
CLIs' recipes carry the settings."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.members import MemberRecipe
from fer_keras.registry import build_model, classification_objective
from fer_keras.training.loop import LoopConfig, Trainer

# 128 images in batches of 32: 4 steps per epoch. AdamW with weight decay: a frozen variable
# that the optimiser touched would shrink even with a zero gradient.
CONFIG = dict(batch_size=32, optimizer="adamw", learning_rate=2e-3, weight_decay=0.05, lr_schedule="constant", eval_batch_size=64, verbose=0)
HEAD = "probabilities"  # the baseline's classifier


@pytest.fixture(scope="module")
def data(fer_train_subset, fer_val_subset):
    return fer_train_subset.images[:128], fer_train_subset.targets[:128], fer_val_subset.images[:32], fer_val_subset.targets[:32]


def _trainer(output_dir, **settings):
    keras.utils.set_random_seed(0)
    config = LoopConfig(**dict(CONFIG, **settings))
    return Trainer(lambda: build_model("baseline", 7, widths=(8, 8, 8), dropout=0.5), lambda m: classification_objective(m, "labels"), config, str(output_dir), tf.distribute.get_strategy())


def _weights(model):
    """``{path: value}`` of the trainable variables, split into (head, rest)."""
    head = {v.path: v.numpy().copy() for v in model.get_layer(HEAD).trainable_variables}
    rest = {v.path: v.numpy().copy() for v in model.trainable_variables if v.path not in head}
    return head, rest


def test_frozen_epochs_move_only_the_head_then_everything_moves(data, tmp_path):
    trainer = _trainer(tmp_path, epochs=1, freeze_epochs=1, head_layers=(HEAD,))
    head0, rest0 = _weights(trainer.model)
    moving0 = {v.path: v.numpy().copy() for v in trainer.model.non_trainable_variables}
    trainer.fit(*data)
    head1, rest1 = _weights(trainer.model)
    assert rest0.keys() == rest1.keys() and len(rest0) > 2
    for path in rest0:
        np.testing.assert_array_equal(rest1[path], rest0[path], err_msg=path)
    assert all(not np.array_equal(head1[p], head0[p]) for p in head0)
    # Batch normalisation still runs in training mode: its moving statistics follow the data.
    assert any(not np.array_equal(v.numpy(), moving0[v.path]) for v in trainer.model.non_trainable_variables)

    # The same run, continued to epoch 2 (restored from its checkpoint): now everything moves.
    resumed = _trainer(tmp_path, epochs=2, freeze_epochs=1, head_layers=(HEAD,))
    assert resumed.restore() and int(resumed.epoch.numpy()) == 1
    resumed.fit(*data)
    _, rest2 = _weights(resumed.model)
    assert all(not np.array_equal(rest2[p], rest1[p]) for p in rest1)


def test_without_freezing_the_first_epoch_moves_the_backbone(data, tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    _, rest0 = _weights(trainer.model)
    trainer.fit(*data)
    _, rest1 = _weights(trainer.model)
    assert all(not np.array_equal(rest1[p], rest0[p]) for p in rest0)


def test_a_head_layer_the_model_lacks_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="head_layers \\['predictions'\\].*no such layer"):
        _trainer(tmp_path, epochs=1, freeze_epochs=1)  # the default head, absent from the baseline


def test_member_recipes_carry_the_freeze_settings():
    recipe = MemberRecipe.from_preset("resnet", "fer", "fer2013", {"freeze_epochs": 3, "head_layers": ["predictions"]})
    config = recipe.loop_config(seed=0)
    assert config.freeze_epochs == 3 and tuple(config.head_layers) == ("predictions",)
    assert MemberRecipe.from_preset("resnet", "fer", "fer2013").loop_config(seed=0).freeze_epochs == 0


def test_the_train_cli_has_the_freeze_flags():
    from fer_keras.members import loop_setting_names
    from fer_keras.train import FLAGS

    assert {"freeze_epochs", "head_layers"} <= set(loop_setting_names())
    assert "freeze_epochs" in FLAGS and "head_layers" in FLAGS
