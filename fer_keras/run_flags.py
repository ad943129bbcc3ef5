"""Flags every training CLI shares (``fer_keras.train``, ``ensemble``, ``fga``, ``cv``), defined once.

Importing this module defines them (once per process, as absl flags always are): the preset,
the data set and its splits, the training settings that override the preset's, seed,
threads, precision and verbosity. Each CLI adds its own flags (``--model``, ``--output_dir``, ...).
"""

from __future__ import annotations

from absl import app, flags

from fer_keras.runtime import THREADS_HELP, configure
from pipelines.datasets.splits import default_splits

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", None, "Training preset of the model (default: the model's default; 'demo' on demo data).")
flags.DEFINE_string("dataset", "demo", "Data set adapter: demo, fer2013, fer2013_csv, ferplus, rafdb, affectnet7, affectnet8, ckplus, jaffe, folder.")
flags.DEFINE_string("data_dir", None, "Root of the data set (a .csv file for fer2013_csv).")
flags.DEFINE_string("train_split", None, "Training split (default per data set, e.g. train).")
flags.DEFINE_string("val_split", None, "Validation split, the one scored (default per data set, e.g. val).")
flags.DEFINE_integer("limit", None, "Use at most this many training images (quick runs).")
flags.DEFINE_integer("epochs", None, "Number of epochs (overrides the preset).")
flags.DEFINE_integer("batch_size", None, "Global batch size (overrides the preset).")
flags.DEFINE_float("learning_rate", None, "Base learning rate (overrides the preset).")
flags.DEFINE_string("init_weights", None, "Fine-tune instead of training from fresh weights: a trained .keras file, or a shipped model's "
                    "name (e.g. vgg4-wide-fer2013), of --model with the data's classes and input. Its calibration is reset. "
                    "Ensemble and cv start every member from it (members that share a parent: FGA needs aligned members).")
flags.DEFINE_integer("freeze_epochs", None, "Frozen-then-unfrozen fine-tuning: for this many first epochs only --head_layers are updated, then every layer (with --init_weights).")
flags.DEFINE_list("head_layers", None, "Layers trained while the rest is frozen (default: predictions, the classifier of the ResNet family).")
flags.DEFINE_list("model_options", [], "Builder options as key=value (numbers, true/false and number tuples written 8:16:32 parsed), overriding the preset's, e.g. arcface_margin=0.3.")
flags.DEFINE_list("objective_options", [], "Training-objective options as key=value, overriding the preset's, e.g. label_smoothing=0.1.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order and augmentation (member k of an ensemble: seed + k).")
flags.DEFINE_bool("ten_crop", None, "Ten-crop test-time augmentation when scoring; --noten_crop: centre crop. Unset: as the "
                  "preset or the model's spec says (LBAN and MrCAR: ten-crop, as their papers test).")
flags.DEFINE_integer("threads", None, THREADS_HELP)
flags.DEFINE_bool("mixed_precision", False, "Train in mixed bfloat16: faster on CPUs with bfloat16 arithmetic (AVX512_BF16, AMX); an error elsewhere, where training ran ~6x slower than float32.")
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


def use_ten_crop(default: bool) -> bool:
    """``--ten_crop`` / ``--noten_crop`` when given, else ``default`` (the preset's or the model spec's)."""
    return default if FLAGS.ten_crop is None else FLAGS.ten_crop


def split_name(which: str) -> str:
    """The name of split ``which`` ("train" or "val") of ``--dataset`` (flag, else the data set's default)."""
    train_split, val_split = default_splits(FLAGS.dataset)
    return (FLAGS.train_split or train_split) if which == "train" else (FLAGS.val_split or val_split)
