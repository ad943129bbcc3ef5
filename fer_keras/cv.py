"""K-fold cross-validation of any registered model, with B. Li's ResNet-101 protocol and statistics.

::

    python -m fer_keras.cv --model=resnet --preset=fer --folds=10 --runs=10 \\
        --dataset=fer2013 --data_dir=../shared/datasets/fer2013 --limit_per_class=100 \\
        --output_dir=../runs/cv_resnet

The examples (the training split of ``--dataset``, or ``--train_split=all`` for CK+ / JAFFE;
``--limit_per_class=N``: a seeded class-balanced subset of N per class) are cut into
``--folds`` stratified folds (``--group_by=subject``: subject-independent,
``pipelines.datasets.folds``). In round ``r`` fold ``r`` is tested, fold ``(r + 1) mod k``
selects the best epoch (``best.keras``), the other ``k - 2`` folds train. Each of the
``--runs`` runs draws its own folds (seed ``--seed + run``) and trains each round with seed
``1000 * (--seed + run) + r``.

Each round is one member (``fer_keras.members.train_member``) in
``<output_dir>/run_<j>/round_<r>/``; its test-fold predictions go to
``<output_dir>/run_<j>/round_<r>.npz`` (``test_indices``, ``labels``, ``scores``).
Resumable: a round whose ``.npz`` exists is skipped; a half-trained round resumes from its
checkpoint; a trained round whose ``.npz`` is missing is scored again (not retrained).
``cv.json`` records the protocol and the data; rerunning with other settings or data in the
same folder is an error.

``--init_weights=model.keras`` starts every round from a trained model (in-domain transfer:
e.g. a network trained on FER2013 by ``fer_keras.train``, fine-tuned on the small set). Its
architecture must be ``--model`` (its own builder options are kept; ``--model_options`` do not
apply), its classes and input the data's and the preset's: a head with other classes is
refused (train the source on the same class list), not silently re-initialised.
With ``--freeze_epochs=N`` each round first trains only the classifier (``--head_layers``,
default ``predictions``) for N epochs, then the whole network: the frozen-then-unfrozen schedule
(``fer_keras.training.loop``). The source must not have seen the cross-validated images: with a source trained on FER2013
``train`` (e.g. ``fer_keras/weights/mrcar-fer2013.keras``), cross-validate ``--train_split=val``.

The report (``fer_keras.cv_report``): per-class sensitivity per run (Table 1), overall
accuracy per run (Table 2), mean +- SD, the summed confusion matrix (Eq. 7-8), as
``cv_report.json``, CSVs, ``cv_report.md`` and PNGs in ``--output_dir``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags, logging

from fer_keras import cv_report, member_flags, run_flags
from fer_keras.cross_validation import check_manifest, cross_validate, data_fingerprint
from fer_keras.members import MemberRecipe, check_init_weights, write_json
from pipelines import cli
from pipelines.datasets import LoadedArrays
from pipelines.datasets.folds import class_balanced_indices, class_ids, take

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(member_flags)  # --help lists the shared flags too
flags.DEFINE_integer("folds", 10, "Number of folds k (>= 3): k-2 train, 1 validation, 1 test per round.")
flags.DEFINE_integer("runs", 10, "Repetitions of the k rounds, each with its own fold assignment.")
flags.DEFINE_string("group_by", None, "Meta key of the subject id (e.g. subject for CK+ / JAFFE): subject-independent folds.")
flags.DEFINE_integer("limit_per_class", None, "Cross-validate a seeded class-balanced subset: this many images per class.")


def _load_data(recipe: MemberRecipe) -> LoadedArrays:
    """The cross-validated examples: the training split (``--limit``), then ``--limit_per_class`` per class."""
    data = member_flags.load_data_split("train", recipe.input_spec(), FLAGS.limit)
    if FLAGS.limit_per_class:
        data = take(data, class_balanced_indices(data.targets, FLAGS.limit_per_class, FLAGS.seed))
    return data


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if not FLAGS.model or not FLAGS.output_dir:
        raise app.UsageError("fer_keras.cv needs --model=NAME and --output_dir=DIR.")
    if FLAGS.folds < 3 or FLAGS.runs < 1:
        raise app.UsageError(f"--folds must be >= 3 and --runs >= 1. Received: folds={FLAGS.folds}, runs={FLAGS.runs}")
    run_flags.check_data_flags()

    run_flags.configure_runtime(FLAGS.model)
    recipe = member_flags.recipe_from_flags(FLAGS.model)
    data = _load_data(recipe)
    groups = None
    if FLAGS.group_by:
        missing = sum(FLAGS.group_by not in m for m in data.meta) if data.meta else len(data.paths)
        if missing:
            raise ValueError(f"--group_by={FLAGS.group_by}: {missing} example(s) of {FLAGS.dataset} have no meta[{FLAGS.group_by!r}].")
        groups = [m[FLAGS.group_by] for m in data.meta]
    if FLAGS.init_weights:
        FLAGS.init_weights = check_init_weights(FLAGS.init_weights, recipe, data)
    sizes = np.bincount(class_ids(data.targets), minlength=len(data.class_names))
    print(f"Cross-validating {recipe.model} (preset {recipe.preset!r}) on {len(data.paths)} images of {FLAGS.dataset}/{run_flags.split_name('train')} "
          f"({', '.join(f'{n} {c}' for n, c in zip(data.class_names, sizes) if c)}): {FLAGS.folds} folds x {FLAGS.runs} runs")
    ten_crop = run_flags.use_ten_crop(recipe.ten_crop)
    manifest = {"model": recipe.model, "recipe": recipe.to_dict(), "folds": FLAGS.folds, "runs": FLAGS.runs, "seed": FLAGS.seed,
                "group_by": FLAGS.group_by, "dataset": FLAGS.dataset, "split": run_flags.split_name("train"),
                "limit": FLAGS.limit, "limit_per_class": FLAGS.limit_per_class, "num_images": len(data.paths),
                "class_names": list(data.class_names), "data_sha1": data_fingerprint(data), "init_weights": FLAGS.init_weights,
                "ten_crop": ten_crop, "mixed_precision": FLAGS.mixed_precision}
    check_manifest(FLAGS.output_dir, manifest)
    result = cross_validate(recipe, data, FLAGS.folds, FLAGS.runs, FLAGS.output_dir, FLAGS.seed, groups, FLAGS.init_weights, ten_crop, FLAGS.verbose)
    stats = dict(result["statistics"], protocol=manifest, rounds=result["rounds"],
                 command=" ".join(["python -m fer_keras.cv"] + sys.argv[1:]))
    write_json(os.path.join(FLAGS.output_dir, "cv_report.json"), stats)
    tables = cv_report.markdown_tables(stats)
    with open(os.path.join(FLAGS.output_dir, "cv_report.md"), "w") as f:
        f.write(f"{recipe.model} ({recipe.preset}), {FLAGS.folds}-fold cross-validation x {len(stats['runs'])} runs on "
                f"{len(data.paths)} images of {FLAGS.dataset}, in %.\n\n" + tables)
    cv_report.write_tables(stats, FLAGS.output_dir)
    cv_report.write_plots(stats, FLAGS.output_dir)
    print(tables)
    print(f"Rounds: {result['rounds']}. Report written to {FLAGS.output_dir}/cv_report.json, cv_report.md, *.csv, *.png")
    return 0


if __name__ == "__main__":
    cli.run(main)
