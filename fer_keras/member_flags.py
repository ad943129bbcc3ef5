"""Flags shared by the CLIs that train members (``fer_keras.ensemble``, ``fer_keras.fga``, ``fer_keras.cv``).

They mean what the same flags of ``fer_keras.train`` mean: the model, its preset, the data
set, and the training settings that override the preset's. Importing this module defines
them (once per process, as absl flags always are).
"""

from __future__ import annotations

from absl import app, flags

from fer_keras.members import MemberRecipe, flag_overrides
from fer_keras.runtime import THREADS_HELP, configure
from fer_spec import InputSpec
from pipelines.datasets import LoadedArrays, load_split
from pipelines.cli import parse_options
from pipelines.datasets.splits import default_splits

FLAGS = flags.FLAGS
flags.DEFINE_list("members", [], "Trained networks to load (.keras files).")
flags.DEFINE_string("output_dir", None, "Where the results go.")
flags.DEFINE_string("model", None, "Registered model name of the members to train.")
flags.DEFINE_string("preset", None, "Training preset of the model (default: the model's default; 'demo' on demo data).")
flags.DEFINE_string("dataset", "demo", "Data set adapter (as fer_keras.train): demo, fer2013, ferplus, rafdb, ...")
flags.DEFINE_string("data_dir", None, "Root of the data set.")
flags.DEFINE_string("train_split", None, "Training split (default per data set).")
flags.DEFINE_string("val_split", None, "Validation split, the one scored (default per data set).")
flags.DEFINE_integer("limit", None, "Use at most this many training images (quick runs).")
flags.DEFINE_integer("epochs", None, "Epochs of each member (overrides the preset).")
flags.DEFINE_integer("batch_size", None, "Batch size (overrides the preset).")
flags.DEFINE_float("learning_rate", None, "Base learning rate (overrides the preset).")
flags.DEFINE_integer("freeze_epochs", None, "Frozen-then-unfrozen fine-tuning: for this many first epochs only --head_layers are updated, then every layer.")
flags.DEFINE_list("head_layers", None, "Layers trained while the rest is frozen (default: predictions, the classifier of the ResNet family).")
flags.DEFINE_list("model_options", [], "Builder options as key=value (numbers and true/false parsed), overriding the preset's.")
flags.DEFINE_list("objective_options", [], "Objective options as key=value, overriding the preset's.")
flags.DEFINE_integer("seed", 0, "Seed of the first member; member k uses seed + k.")
flags.DEFINE_bool("ten_crop", False, "Score the validation split with ten-crop testing.")
flags.DEFINE_integer("threads", None, THREADS_HELP)
flags.DEFINE_bool("mixed_precision", False, "Train in mixed bfloat16 (faster on AVX-512 CPUs).")
flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bars.")


def check_data_flags() -> None:
    if FLAGS.dataset != "demo" and not FLAGS.data_dir:
        raise app.UsageError(f"--dataset={FLAGS.dataset} needs --data_dir (the folder or CSV of the data set).")


def configure_runtime(model: str | None) -> None:
    """Apply ``--threads`` and ``--mixed_precision`` (before any model is built or loaded);
    ``model`` (registered name, or None when unknown) chooses the thread plan (``fer_keras.runtime``)."""
    from fer_keras.registry import get_model_entry

    plan = configure(FLAGS.threads, FLAGS.mixed_precision, bool(model) and get_model_entry(model).parallel_branches)
    if FLAGS.verbose:
        print(f"Threads: {plan.describe()}")


def recipe_from_flags(model: str, model_options: dict | None = None) -> MemberRecipe:
    """The members' recipe: ``model`` with ``--preset`` and every training flag set."""
    overrides = flag_overrides(FLAGS, ("epochs", "batch_size", "learning_rate", "freeze_epochs"))
    options = dict(model_options or {}, **parse_options(FLAGS.model_options))
    return MemberRecipe.from_preset(model, FLAGS.preset, FLAGS.dataset, overrides, options, parse_options(FLAGS.objective_options, "--objective_options"))


def split_name(which: str) -> str:
    """The name of split ``which`` ("train" or "val") of ``--dataset`` (flag, else the data set's default)."""
    train_split, val_split = default_splits(FLAGS.dataset)
    return (FLAGS.train_split or train_split) if which == "train" else (FLAGS.val_split or val_split)


def load_data_split(which: str, spec: InputSpec, limit: int | None = None) -> LoadedArrays:
    """Split ``which`` ("train" or "val") of ``--dataset`` shaped for ``spec``."""
    split = split_name(which)
    arrays = load_split(FLAGS.dataset, FLAGS.data_dir, split, spec, None, limit, progress=FLAGS.verbose > 0)
    if arrays.skipped.total:
        print(f"{FLAGS.dataset}/{split}: {arrays.skipped.summary()}")
    return arrays
