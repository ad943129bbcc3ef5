"""FGA generations over trained networks of one architecture: ``python -m fer_keras.fga`` (Algorithm 1).

::

    python -m fer_keras.fga --members=runs/ens/member_0/best.keras,runs/ens/member_1/best.keras,runs/ens/member_2/best.keras \\
        --output_dir=runs/fga --generations=1 --dataset=fer2013 --data_dir=../shared/datasets/fer2013

Each generation (``fer_keras.genetic_fusion``): score every input network's loss on training
images, turn the losses into selection probabilities, draw ``--parents`` networks for each of
``--num_fused`` fused networks, fuse their convolution kernels (Eq. 9), re-estimate the
batch-norm statistics, fine-tune each fused network for ``--finetune_epochs`` through the
training loop (``fer_keras.members``, the recipe of ``fer_keras.train`` for the parents'
architecture with ``--preset`` and the training flags), train ``--num_new`` freshly
initialised networks beside them, and pass all of them to the next generation.

Written into ``--output_dir``: ``gen_<g>/selection.json`` (losses, probabilities, parents;
drawn once, so a resumed run fuses the same parents), ``gen_<g>/fused_<i>/`` (``fused.keras``
before fine-tuning, then a training run), ``gen_<g>/new_<j>/``, ``gen_<g>/generation.json``
(the generation is finished; a rerun loads it) and ``fga.json`` (every generation's members'
validation accuracy). Resumable per generation, and per member inside one.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags, logging

from fer_keras import member_flags, run_flags
from fer_keras.genetic_fusion import OTHER_WEIGHTS, check_same_architecture, fused_weights, reestimate_batch_norm, select_parents, selection_probabilities
from fer_keras.inference import evaluate_arrays
from fer_keras.members import train_member, write_json
from fer_keras.saving import load_model, model_spec, save_model
from pipelines import cli

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(member_flags)  # --help lists the shared flags too
flags.DEFINE_integer("generations", 1, "Number of FGA generations G.")
flags.DEFINE_integer("num_fused", None, "Fused networks per generation (default: as many as the input networks).")
flags.DEFINE_integer("num_new", 0, "Freshly initialised networks trained beside the fused ones each generation (Algorithm 1, line 8).")
flags.DEFINE_integer("parents", 2, "Networks averaged into each fused network.")
flags.DEFINE_enum("other_weights", "fittest", OTHER_WEIGHTS, "Non-convolution weights of a fused network: the fittest parent's, or the parents' mean.")
flags.DEFINE_integer("finetune_epochs", 2, "Epochs of fine-tuning of each fused network.")
flags.DEFINE_float("finetune_learning_rate", None, "Learning rate of the fine-tuning (default: a tenth of the preset's).")
flags.DEFINE_integer("loss_images", 2000, "Training images whose loss ranks the networks (a fixed seeded subset).")
flags.DEFINE_integer("bn_images", 2048, "Training images that re-estimate a fused network's batch-norm statistics.")


def _sample(arrays, count: int, seed: int):
    """``count`` images and targets of ``arrays`` (a fixed seeded subset, or all)."""
    order = np.random.default_rng(seed).permutation(len(arrays.images))[:count]
    return arrays.images[order], arrays.targets[order]


def _select(gen_dir: str, paths: list[str], models, train, generation: int) -> dict:
    """The generation's selection (``selection.json``): read back, or scored and drawn once."""
    path = os.path.join(gen_dir, "selection.json")
    if os.path.isfile(path):
        with open(path) as f:
            selection = json.load(f)
        if selection["inputs"] != paths:
            raise ValueError(f"{path} selected among {selection['inputs']}, not {paths}. Choose another --output_dir.")
        return selection
    images, targets = _sample(train, FLAGS.loss_images, FLAGS.seed)
    losses = [evaluate_arrays(model, images, targets)["loss"] for model in models]
    probabilities = selection_probabilities(losses)
    rng = np.random.default_rng([FLAGS.seed, generation])
    parents = [select_parents(probabilities, FLAGS.parents, rng) for _ in range(FLAGS.num_fused or len(models))]
    selection = {"inputs": paths, "losses": losses, "probabilities": probabilities.tolist(), "parents": parents,
                 "fittest": [min(chosen, key=lambda j: losses[j]) for chosen in parents], "other_weights": FLAGS.other_weights}
    os.makedirs(gen_dir, exist_ok=True)
    write_json(path, selection)
    return selection


def _fuse(fused_dir: str, paths: list[str], models, chosen: list[int], fittest: int, train, val) -> dict:
    """Write ``fused.keras`` (kernels averaged, statistics re-estimated) unless it is there;
    returns its validation scores before fine-tuning (``fused.json``)."""
    record_path = os.path.join(fused_dir, "fused.json")
    if os.path.isfile(record_path):
        with open(record_path) as f:
            return json.load(f)
    parents = [models[j] for j in chosen]
    fused = load_model(paths[fittest])
    fused.set_weights(fused_weights(parents, chosen.index(fittest), FLAGS.other_weights))
    images, _ = _sample(train, FLAGS.bn_images, FLAGS.seed + 1)
    reestimate_batch_norm(fused, images)
    os.makedirs(fused_dir, exist_ok=True)
    save_model(fused, os.path.join(fused_dir, "fused.keras"))
    scores = evaluate_arrays(fused, val.images, val.targets, use_ten_crop=run_flags.use_ten_crop(model_spec(fused).ten_crop))
    record = {"parents": [paths[j] for j in chosen], "fittest": paths[fittest], "val_accuracy_before_finetune": scores["accuracy"],
              "val_mean_class_accuracy_before_finetune": scores["mean_class_accuracy"]}
    write_json(record_path, record)
    return record


def _val_accuracy(path: str, val) -> dict:
    model = load_model(path)
    scores = evaluate_arrays(model, val.images, val.targets, use_ten_crop=run_flags.use_ten_crop(model_spec(model).ten_crop))
    return {"path": path, "val_accuracy": scores["accuracy"], "val_mean_class_accuracy": scores["mean_class_accuracy"]}


def _generation(generation: int, paths: list[str], recipe, train, val) -> dict:
    """Run (or resume) generation ``generation`` on the networks ``paths``; returns its record."""
    gen_dir = os.path.join(FLAGS.output_dir, f"gen_{generation}")
    done = os.path.join(gen_dir, "generation.json")
    if os.path.isfile(done):
        with open(done) as f:
            record = json.load(f)
        print(f"Generation {generation}: finished earlier, loaded from {done}")
        return record
    models = [load_model(p) for p in paths]
    check_same_architecture(models, paths)
    selection = _select(gen_dir, paths, models, train, generation)
    print(f"Generation {generation}: losses " + ", ".join(f"{l:.4f}" for l in selection["losses"]) + "; selection probabilities " + ", ".join(f"{p:.3f}" for p in selection["probabilities"]))
    finetune = recipe.with_settings(epochs=FLAGS.finetune_epochs, warmup_epochs=0, learning_rate=FLAGS.finetune_learning_rate or recipe.settings.get("learning_rate", 1e-3) / 10)
    members = []
    for i, (chosen, fittest) in enumerate(zip(selection["parents"], selection["fittest"])):
        fused_dir = os.path.join(gen_dir, f"fused_{i}")
        fused = _fuse(fused_dir, paths, models, chosen, fittest, train, val)
        trained = train_member(finetune, fused_dir, FLAGS.seed + 1000 * generation + i, train, val, initial_model=os.path.join(fused_dir, "fused.keras"), verbose=FLAGS.verbose)
        members.append(dict(fused, kind="fused", **_val_accuracy(trained["path"], val), images_per_sec=trained["images_per_sec"]))
        print(f"  fused_{i} of {chosen}: val accuracy {fused['val_accuracy_before_finetune']:.4f} fused, {members[-1]['val_accuracy']:.4f} after {FLAGS.finetune_epochs} fine-tuning epochs")
    for j in range(FLAGS.num_new):
        trained = train_member(recipe, os.path.join(gen_dir, f"new_{j}"), FLAGS.seed + 1000 * generation + 500 + j, train, val, verbose=FLAGS.verbose)
        members.append(dict(kind="new", **_val_accuracy(trained["path"], val), images_per_sec=trained["images_per_sec"]))
        print(f"  new_{j}: val accuracy {members[-1]['val_accuracy']:.4f}")
    record = {"generation": generation, "inputs": [_val_accuracy(p, val) for p in paths], "selection": selection, "members": members}
    write_json(done, record)
    return record


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if len(FLAGS.members) < 2:
        raise app.UsageError("--members needs at least 2 trained networks (.keras files of one architecture).")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required (the generations go there).")
    if FLAGS.generations < 1 or FLAGS.parents < 1 or FLAGS.finetune_epochs < 1:
        raise app.UsageError("--generations, --parents and --finetune_epochs must be at least 1.")
    if FLAGS.init_weights:
        raise app.UsageError("--init_weights is for fer_keras.train, ensemble and cv (training from one parent); "
                             "fer_keras.fga starts from --members.")
    if FLAGS.parents > len(FLAGS.members):
        raise app.UsageError(f"--parents={FLAGS.parents} is more than the {len(FLAGS.members)} networks of a generation.")
    run_flags.check_data_flags()

    run_flags.configure_runtime(member_flags.members_model())
    first = load_model(FLAGS.members[0])
    spec = model_spec(first)
    recipe = member_flags.recipe_from_flags(FLAGS.model or spec.architecture, spec.options)
    if recipe.model != spec.architecture:
        raise ValueError(f"--model={FLAGS.model} but {FLAGS.members[0]} is a {spec.architecture!r} network.")
    train = member_flags.load_data_split("train", spec.input_spec, FLAGS.limit)
    val = member_flags.load_data_split("val", spec.input_spec)
    paths, generations = list(FLAGS.members), []
    for generation in range(1, FLAGS.generations + 1):
        record = _generation(generation, paths, recipe, train, val)
        generations.append(record)
        paths = [m["path"] for m in record["members"]]
        if FLAGS.parents > len(paths) and generation < FLAGS.generations:
            raise ValueError(f"Generation {generation} produced {len(paths)} networks, fewer than --parents={FLAGS.parents}.")
    summary = {"generations": generations, "command": " ".join(["python -m fer_keras.fga"] + sys.argv[1:])}
    write_json(os.path.join(FLAGS.output_dir, "fga.json"), summary)
    print("| Generation | Members' val accuracy (%) | Best |\n|---|---|---|")
    rows = [("0", [m["val_accuracy"] for m in generations[0]["inputs"]])] + [(str(g["generation"]), [m["val_accuracy"] for m in g["members"]]) for g in generations]
    for name, accuracies in rows:
        print(f"| {name} | " + ", ".join(f"{100 * a:.2f}" for a in accuracies) + f" | {100 * max(accuracies):.2f} |")
    print(f"Written to {FLAGS.output_dir}/fga.json")
    return 0


if __name__ == "__main__":
    cli.run(main)
