"""Train a registered model: ``python -m fer_keras.train --model=baseline --dataset=fer2013 --data_dir=...``.

With no ``--dataset`` it trains on the built-in demo faces (procedurally drawn, not real
data) so the whole loop (train -> evaluate -> saved model) runs in a few minutes.

Writes into ``--output_dir``: ``checkpoints/`` (resume with ``--resume``), ``history.csv``,
``history.png``, ``logs/`` (TensorBoard), ``best.keras`` (best validation accuracy),
``final.keras``, ``report.json`` + confusion matrices of the best model, ``run.json``;
with ``--teacher=MODEL_NAME``, the teacher's own run in ``teacher/``.

``--init_weights=FILE.keras`` (or a shipped model's name) fine-tunes a trained model of
``--model`` instead of building fresh weights: e.g. a second learning-rate cycle, or a shipped
FER2013 model adapted to your own folder of faces with the same classes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import app, flags, logging

from fer_keras import run_flags
from fer_keras.training.schedules import OPTIMIZERS, SCHEDULES
from fer_keras.training.strategy import STRATEGIES
from pipelines import cli

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(run_flags)  # --help lists the shared flags too
flags.DEFINE_string("model", "baseline", "Registered model name (see --list_models).")
flags.DEFINE_bool("list_models", False, "Print the registered models and their presets, then exit.")
flags.DEFINE_string("label_mode", None, "FER+ training label mode (Barsoum et al. 2016): majority, probability (a label drawn from the votes each epoch), crossentropy (the vote distribution as target), multi_target (-log of the summed probability of the voted labels). Validation always uses the majority vote.")
flags.DEFINE_string("teacher", None, "Label distribution generator (ResFace Sec. 3.3): a saved model (PATH.keras) whose softmax on each training batch becomes the target, or a registered model name, first trained with hard labels on the same data into <output_dir>/teacher/ (resumable with --resume). The model's objective must take a teacher.")
flags.DEFINE_list("teacher_model_options", [], "Builder options of a --teacher trained by name, as key=value (e.g. depth=50).")
flags.DEFINE_enum("optimizer", None, OPTIMIZERS, "Optimiser (overrides the preset).")
flags.DEFINE_float("momentum", None, "SGD momentum.")
flags.DEFINE_bool("nesterov", None, "SGD with Nesterov momentum (overrides the preset).")
flags.DEFINE_float("weight_decay", None, "Decoupled weight decay.")
flags.DEFINE_enum("lr_schedule", None, SCHEDULES, "Learning-rate schedule (overrides the preset).")
flags.DEFINE_integer("lr_decay_start", None, "step schedule: first epoch (0-based) of decay.")
flags.DEFINE_integer("lr_decay_every", None, "step schedule: epochs between decays.")
flags.DEFINE_float("lr_decay_factor", None, "step schedule: multiplier per decay.")
flags.DEFINE_integer("plateau_patience", None, "cosine_then_step_on_plateau: bad epochs (training loss not lower than the best by more than --plateau_min_delta) before learning-rate phase 2.")
flags.DEFINE_float("plateau_min_delta", None, "cosine_then_step_on_plateau: smallest decrease of the epoch's training loss that counts as an improvement.")
flags.DEFINE_float("phase2_lr", None, "cosine_then_step_on_plateau: learning rate of phase 2 (then x lr_decay_factor every lr_decay_every epochs).")
flags.DEFINE_integer("warmup_epochs", None, "Epochs of linear learning-rate warm-up before the schedule (overrides the preset).")
flags.DEFINE_float("erase_probability", None, "Random erasing (Zhong et al. 2020): probability per training image of zeroing a random rectangle.")
flags.DEFINE_bool("oversample", False, "Class-balanced resampling of the training set each epoch.")
flags.DEFINE_bool("class_weighting", False, "Weight the loss by inverse class frequency.")
flags.DEFINE_string("output_dir", None, "Run directory (default runs/<model>-<dataset>).")
flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_bool("jit_compile", False, "Compile the per-replica training step with XLA (measure first: see benchmarks/RESULTS.md).")
flags.DEFINE_bool("resume", False, "Continue from the checkpoint in --output_dir.")
flags.DEFINE_integer("checkpoint_every", 200, "Save a resumable checkpoint every N steps (and at each epoch end).")

DEMO_NOTICE = (
    "NOTE: training on the built-in DEMO data set: procedurally drawn faces, not real photos.\n"
    "      Pass --dataset=fer2013 --data_dir=/path/to/fer2013 (or another adapter) for real data."
)


SETTING_FLAGS = ("epochs", "batch_size", "optimizer", "learning_rate", "momentum", "nesterov", "weight_decay", "lr_schedule", "lr_decay_start", "lr_decay_every", "lr_decay_factor", "warmup_epochs", "plateau_patience", "plateau_min_delta", "phase2_lr", "freeze_epochs")


def _setting_overrides() -> dict:
    """The training settings the user set by flag (they override the preset's)."""
    from fer_keras.members import flag_overrides

    overrides = flag_overrides(FLAGS, SETTING_FLAGS)
    if FLAGS.erase_probability is not None:
        overrides["augmentation"] = {"erase_probability": FLAGS.erase_probability}
    return overrides


def _load_split(dataset: str, split: str, spec, label_mode=None, limit=None):
    from pipelines.datasets import load_split

    arrays = load_split(dataset, FLAGS.data_dir, split, spec, label_mode, limit, progress=FLAGS.verbose > 0)
    if arrays.skipped.total:
        print(f"{dataset}/{split}: {arrays.skipped.summary()}")
    return arrays


def _teacher_path(entry, config, spec, class_names, train, val, output_dir, strategy) -> str | None:
    """The ``.keras`` file of ``--teacher``: the given path, or the best model of the named
    registered model trained (or resumed) with hard labels on the same data and settings,
    the student's input spec and classes, in ``<output_dir>/teacher/``."""
    import numpy as np

    from fer_keras.objective import call_factory
    from fer_keras.registry import build_model, get_model_entry
    from fer_keras.saving import save_model
    from fer_keras.training.loop import Trainer

    if not FLAGS.teacher:
        return None
    if "teacher" not in entry.objective_option_names():
        raise app.UsageError(f"--teacher: the objective of {entry.name!r} takes no teacher (options {entry.objective_option_names()}).")
    if FLAGS.teacher.endswith(".keras"):
        if not os.path.isfile(FLAGS.teacher):
            raise app.UsageError(f"--teacher={FLAGS.teacher}: no such file.")
        return FLAGS.teacher
    try:
        teacher_entry = get_model_entry(FLAGS.teacher)
        options = cli.parse_options(FLAGS.teacher_model_options, "--teacher_model_options")
        teacher_entry.check_options(options, {})
    except ValueError as error:
        raise app.UsageError(f"--teacher is a .keras file or a registered model name: {error}") from None
    teacher_dir = os.path.join(output_dir, "teacher")
    if os.path.isdir(os.path.join(teacher_dir, "checkpoints")) and not FLAGS.resume:
        raise app.UsageError(f"{teacher_dir} already holds a teacher run. Pass --resume to continue it, or choose another --output_dir.")
    print(f"Teacher: training {FLAGS.teacher} with hard labels into {teacher_dir}")
    labels = train.targets if train.targets.ndim == 1 else np.argmax(train.targets, axis=1).astype(np.int32)
    trainer = Trainer(
        lambda: build_model(FLAGS.teacher, class_names, spec, dataset=FLAGS.dataset, **options),
        lambda model: call_factory(teacher_entry.objective, model, "labels", {}),
        config,
        teacher_dir,
        strategy,
    )
    if FLAGS.resume and trainer.restore():
        print(f"Teacher resumed at epoch {int(trainer.epoch.numpy())}, step {int(trainer.step_in_epoch.numpy())}.")
    trainer.fit(train.images, labels, val.images, val.targets)
    if trainer.is_chief:
        save_model(trainer.model, os.path.join(teacher_dir, "final.keras"))
    return os.path.join(teacher_dir, "best.keras")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from fer_keras.registry import get_model_entry, model_names

    if FLAGS.list_models:
        for name in model_names():
            entry = get_model_entry(name)
            print(f"{name}: presets {', '.join(entry.presets)} (default {entry.default_preset})")
        return 0
    run_flags.check_data_flags()
    from fer_keras.members import MemberRecipe

    entry = get_model_entry(FLAGS.model)
    try:
        recipe = MemberRecipe.from_preset(FLAGS.model, FLAGS.preset, FLAGS.dataset, _setting_overrides(), cli.parse_options(FLAGS.model_options),
                                          cli.parse_options(FLAGS.objective_options, "--objective_options"))
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    preset, settings = entry.presets[recipe.preset], recipe.settings
    output_dir = FLAGS.output_dir or os.path.join("runs", f"{FLAGS.model}-{FLAGS.dataset}")
    if os.path.isdir(os.path.join(output_dir, "checkpoints")) and not FLAGS.resume:
        raise app.UsageError(f"{output_dir} already holds a run. Pass --resume to continue it, or choose another --output_dir.")
    os.makedirs(output_dir, exist_ok=True)

    import keras

    from fer_keras.evaluate import write_report
    from fer_keras.objective import call_factory
    from fer_keras.plots import plot_history
    from fer_keras.registry import build_model
    from fer_keras.saving import load_model, save_model
    from fer_keras.training.loop import Trainer
    from fer_keras.training.strategy import make_strategy
    from fer_keras.members import check_init_weights, data_objective_options, load_initial_model

    run_flags.configure_runtime(FLAGS.model)
    keras.utils.set_random_seed(FLAGS.seed)
    strategy = make_strategy(FLAGS.strategy)

    if FLAGS.dataset == "demo":
        print(DEMO_NOTICE)
    print(f"Model {FLAGS.model}, preset {preset.name!r}: {preset.description}")
    print("Settings: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())))
    train_split, val_split = run_flags.split_name("train"), run_flags.split_name("val")
    spec, model_options, objective_options = recipe.input_spec(), recipe.model_options, recipe.objective_options
    if model_options:
        print("Model options: " + ", ".join(f"{k}={v}" for k, v in sorted(model_options.items())))
    if objective_options:
        print("Objective options: " + ", ".join(f"{k}={v}" for k, v in sorted(objective_options.items())))
    train = _load_split(FLAGS.dataset, train_split, spec, FLAGS.label_mode, FLAGS.limit)
    # Validation is scored on the majority vote whatever the training label mode (FER+).
    val = _load_split(FLAGS.dataset, val_split, spec, "majority" if FLAGS.label_mode else None)
    class_names = tuple(train.class_names)
    spec = dataclasses.replace(spec, framing=train.framing)  # photos are framed like the training faces
    print(f"Data: {FLAGS.dataset} {train_split} {len(train.images)} images ({train.target_kind} targets), {val_split} {len(val.images)} images, classes {', '.join(class_names)}")

    init_weights = None
    if FLAGS.init_weights:
        try:
            init_weights = check_init_weights(FLAGS.init_weights, recipe, train)
        except ValueError as error:
            raise app.UsageError(str(error)) from None
        print(f"Fine-tuning from {init_weights}")
    config = dataclasses.replace(recipe.loop_config(FLAGS.seed, FLAGS.verbose), oversample=FLAGS.oversample, class_weighting=FLAGS.class_weighting, checkpoint_every=FLAGS.checkpoint_every, jit_compile=FLAGS.jit_compile)
    ten_crop = run_flags.use_ten_crop(recipe.ten_crop)
    teacher_path = _teacher_path(entry, config, spec, class_names, train, val, output_dir, strategy)
    # The teacher is loaded inside the strategy scope (the objective factory runs there).
    teacher = lambda: {"teacher": load_model(teacher_path)} if teacher_path else {}
    objective_options = data_objective_options(entry, objective_options, train.targets, len(class_names))

    def build():
        if init_weights:
            return load_initial_model(init_weights, spec.framing, FLAGS.dataset, ten_crop)
        return build_model(FLAGS.model, class_names, spec, ten_crop=ten_crop, dataset=FLAGS.dataset, **model_options)

    trainer = Trainer(
        build,
        lambda model: call_factory(entry.objective, model, "labels" if train.target_kind == "sampled" else train.target_kind, dict(objective_options, **teacher())),
        config,
        output_dir,
        strategy,
        target_kind=train.target_kind,
    )
    if FLAGS.resume and trainer.restore():
        print(f"Resumed from {output_dir}/checkpoints at epoch {int(trainer.epoch.numpy())}, step {int(trainer.step_in_epoch.numpy())}.")
    started = time.time()
    history = trainer.fit(train.images, train.targets, val.images, val.targets)
    if not trainer.is_chief:
        return 0
    save_model(trainer.model, os.path.join(output_dir, "final.keras"))
    plot_history({k: [row[k] for row in history] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}, os.path.join(output_dir, "history.png"))
    best = load_model(os.path.join(output_dir, "best.keras"))
    report = write_report(best, val.images, val.targets, class_names, output_dir, use_ten_crop=ten_crop, title=f"{FLAGS.model} on {FLAGS.dataset}/{val_split}")
    run = {
        "model": FLAGS.model,
        "preset": preset.name,
        "settings": settings,
        "dataset": FLAGS.dataset,
        "data_dir": FLAGS.data_dir,
        "label_mode": FLAGS.label_mode,
        "objective_options": objective_options,
        "teacher": teacher_path,
        "init_weights": init_weights,
        "splits": [train_split, val_split],
        "class_names": list(class_names),
        "train_images": len(train.images),
        "val_images": len(val.images),
        "strategy": FLAGS.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "mixed_precision": FLAGS.mixed_precision,
        "model_options": model_options,
        "ten_crop": ten_crop,
        "seed": FLAGS.seed,
        "wall_seconds_this_session": time.time() - started,
        "parameters": int(best.count_params()),
        "best_val_accuracy": report["accuracy"],
        "best_val_mean_class_accuracy": report["mean_class_accuracy"],
        "command": " ".join(["python -m fer_keras.train"] + sys.argv[1:]),
    }
    with open(os.path.join(output_dir, "run.json"), "w") as f:
        json.dump(run, f, indent=2)
    print(f"Best {val_split} accuracy {report['accuracy']:.4f} (mean per-class {report['mean_class_accuracy']:.4f}); model saved to {output_dir}/best.keras")
    return 0


if __name__ == "__main__":
    cli.run(main)
