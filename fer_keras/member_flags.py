"""Flags and helpers of the CLIs that train members (``fer_keras.ensemble``, ``fer_keras.fga``, ``fer_keras.cv``).

On top of the flags every training CLI shares (``fer_keras.run_flags``, imported here): the
members to load, the model to train them as, and the output folder.
"""

from __future__ import annotations

from absl import flags

from fer_keras.members import MemberRecipe, flag_overrides
from fer_keras import run_flags
from fer_keras.run_flags import split_name
from fer_spec import InputSpec
from pipelines.datasets import LoadedArrays, load_split
from pipelines.cli import parse_options

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(run_flags)
flags.DEFINE_list("members", [], "Trained networks to load (.keras files).")
flags.DEFINE_string("output_dir", None, "Where the results go.")
flags.DEFINE_string("model", None, "Registered model name of the members to train.")


def members_model() -> str | None:
    """The registered model of the members: ``--model``, else the one the first ``--members``
    file records (``fer_keras.saving.recorded_architecture``), else None."""
    from fer_keras.saving import recorded_architecture

    if FLAGS.model or not FLAGS.members:
        return FLAGS.model
    return recorded_architecture(FLAGS.members[0])


def recipe_from_flags(model: str, model_options: dict | None = None) -> MemberRecipe:
    """The members' recipe: ``model`` with ``--preset`` and every training flag set."""
    overrides = flag_overrides(FLAGS, ("epochs", "batch_size", "learning_rate", "freeze_epochs"))
    options = dict(model_options or {}, **parse_options(FLAGS.model_options))
    return MemberRecipe.from_preset(model, FLAGS.preset, FLAGS.dataset, overrides, options, parse_options(FLAGS.objective_options, "--objective_options"))


def load_data_split(which: str, spec: InputSpec, limit: int | None = None) -> LoadedArrays:
    """Split ``which`` ("train" or "val") of ``--dataset`` shaped for ``spec``."""
    split = split_name(which)
    arrays = load_split(FLAGS.dataset, FLAGS.data_dir, split, spec, None, limit, progress=FLAGS.verbose > 0)
    if arrays.skipped.total:
        print(f"{FLAGS.dataset}/{split}: {arrays.skipped.summary()}")
    return arrays
