"""Train or load M members and report T2V / NOI / bagging next to each member (FAML-FGA-T2V Sec. 3.3, 4.4).

Train M members of one registered model, each with its own seed in its own run folder
(``fer_keras.members``: the training loop of ``fer_keras.train``; resumable, a finished
member is loaded and not retrained)::

    python -m fer_keras.ensemble --model=baseline --num_members=3 --runs_dir=runs/ens \\
        --dataset=fer2013 --data_dir=../shared/datasets/fer2013

On two or more cores, members can train side by side: ``--member=K`` trains (or resumes)
member K alone in its own process and stops; the command without ``--member`` then loads
the finished members and reports::

    python -m fer_keras.ensemble --model=baseline --num_members=2 --runs_dir=runs/ens --member=0 ... &
    python -m fer_keras.ensemble --model=baseline --num_members=2 --runs_dir=runs/ens --member=1 ... &

or load trained members (any architectures, the same classes)::

    python -m fer_keras.ensemble --members=a.keras,b.keras,c.keras --dataset=fer2013 --data_dir=...

``--init_weights=parent.keras`` starts every member from one trained network of ``--model``:
the paper's members share structure and pre-trained weights and differ by randomness (Sec.
3.3: loss choice, FC initialisation, flipping). Their channels stay aligned, which FGA's
kernel averaging needs (``fer_keras.genetic_fusion``). Here the members share the parent's
classifier too; the seed changes data order, augmentation and FAML's per-batch loss choice.

Each member's ``best.keras`` scores the validation split (ten-crop where its spec says so;
``--ten_crop`` / ``--noten_crop`` for every member); the report (``fer_keras.ensemble_report``)
holds each member's accuracy, the T2V / NOI / bagging votes' (Table 6) and by number of
members (Table 4), and the rank distribution of the true label (Table 1). Written into
``--output_dir`` (default: ``--runs_dir``): ``ensemble.json``, ``ensemble.md``,
``rank_distribution.png`` and ``scores.npz`` (``scores [M, N, C]``, ``labels [N]``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags, logging

from fer_keras import member_flags, run_flags
from fer_keras.ensemble_report import ensemble_report, markdown_tables, plot_rank_distribution
from fer_keras.inference import predict_scores
from fer_keras.members import check_init_weights, train_member, write_json
from fer_keras.saving import load_model, model_spec
from pipelines import cli

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(member_flags)  # --help lists the shared flags too
flags.DEFINE_integer("num_members", 3, "Members to train (or load when finished) with --model.")
flags.DEFINE_string("runs_dir", None, "Folder of the members' run folders member_0, member_1, ... (with --model).")
flags.DEFINE_integer("member", None, "Train (or resume) only member K of the --num_members (seed --seed + K) and stop, "
                     "reporting nothing: run one process per member; the command without --member reports.", lower_bound=0)
flags.DEFINE_float("alpha", 1.9, "T2V weight of a member's first choice (paper: 1.9).")
flags.DEFINE_float("beta", 1.0, "T2V weight of a member's second choice (paper: 1.0).")


def _train_members() -> list[tuple[str, str, dict]]:
    """Train, resume or load the ``--num_members`` members; ``(name, best.keras path, record)`` each."""
    recipe = member_flags.recipe_from_flags(FLAGS.model)
    spec = recipe.input_spec()
    train = member_flags.load_data_split("train", spec, FLAGS.limit)
    val = member_flags.load_data_split("val", spec)
    if FLAGS.init_weights:
        FLAGS.init_weights = check_init_weights(FLAGS.init_weights, recipe, train)
    start = f", each fine-tuned from {FLAGS.init_weights}" if FLAGS.init_weights else ""
    print(f"Members: {FLAGS.num_members} x {recipe.model}{start}, preset {recipe.preset!r}, settings " + ", ".join(f"{k}={v}" for k, v in sorted(recipe.settings.items())))
    members = []
    for k in range(FLAGS.num_members) if FLAGS.member is None else [FLAGS.member]:
        run_dir = os.path.join(FLAGS.runs_dir, f"member_{k}")
        record = train_member(recipe, run_dir, FLAGS.seed + k, train, val, initial_model=FLAGS.init_weights, verbose=FLAGS.verbose)
        state = "trained" + (" (resumed)" if record["resumed"] else "") if record["trained"] else "finished earlier: loaded, not retrained"
        print(f"member_{k} (seed {record['seed']}): {state}; best val accuracy {record['val_accuracy']:.4f}, {record['images_per_sec']:.0f} training images/s")
        members.append((f"member_{k}", record["path"], record))
    return members


def _member_name(path: str) -> str:
    """``a.keras`` -> ``a``; a run's ``runs/x/best.keras`` -> ``x/best``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}/{stem}" if stem in ("best", "final") else stem


def _score(paths: list[str]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], list[bool]]:
    """Validation scores ``[M, N, C]`` of the members, the labels ``[N]``, the class names and
    whether each member was scored ten-crop (``--ten_crop`` / ``--noten_crop``, else as its
    spec says: LBAN's and MrCAR's papers test ten-crop). The split is loaded once per distinct (source size,
    channels) of the members' inputs."""
    loaded, scores, labels, class_names, crops = {}, [], None, None, []
    for path in paths:
        model = load_model(path)
        spec = model_spec(model)
        if class_names is not None and spec.class_names != class_names:
            raise ValueError(f"{path} has classes {list(spec.class_names)}; the first member has {list(class_names)}.")
        class_names = spec.class_names
        key = (tuple(spec.input_spec.source_size), spec.input_spec.channels)
        if key not in loaded:
            loaded[key] = member_flags.load_data_split("val", spec.input_spec)
        val = loaded[key]
        if list(val.class_names) != list(class_names):
            raise ValueError(f"{path} has classes {list(class_names)}; {FLAGS.dataset} has {list(val.class_names)}.")
        targets = val.targets if val.targets.ndim == 1 else val.targets.argmax(axis=1)
        if labels is not None and not np.array_equal(targets, labels):
            raise ValueError("The members' inputs load different validation images.")
        labels = targets
        crops.append(run_flags.use_ten_crop(spec.ten_crop))
        scores.append(predict_scores(model, val.images, use_ten_crop=crops[-1]))
    return np.stack(scores), labels, class_names, crops


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if bool(FLAGS.members) == bool(FLAGS.model):
        raise app.UsageError("Pass either --members=a.keras,b.keras,... (trained members) or --model=NAME --num_members=M --runs_dir=DIR (members to train).")
    if FLAGS.model and not FLAGS.runs_dir:
        raise app.UsageError("--model needs --runs_dir (the members' run folders go there).")
    if FLAGS.model and FLAGS.num_members < 1:
        raise app.UsageError(f"--num_members must be at least 1. Received: {FLAGS.num_members}")
    if FLAGS.init_weights and not FLAGS.model:
        raise app.UsageError("--init_weights starts members to train (--model=NAME); --members are already trained.")
    if FLAGS.member is not None and not (FLAGS.model and FLAGS.member < FLAGS.num_members):
        raise app.UsageError(f"--member=K trains member K of --model's --num_members={FLAGS.num_members}: K from 0 to {FLAGS.num_members - 1}. Received: {FLAGS.member}")
    output_dir = FLAGS.output_dir or FLAGS.runs_dir
    if not output_dir:
        raise app.UsageError("--output_dir is needed with --members (the report goes there).")
    run_flags.check_data_flags()

    run_flags.configure_runtime(member_flags.members_model())
    if FLAGS.members:
        members = [(_member_name(p), p, {}) for p in FLAGS.members]
    else:
        members = _train_members()
        if FLAGS.member is not None:
            print(f"member_{FLAGS.member} finished; without --member the command loads every member and reports.")
            return 0
    names = [name for name, _, _ in members]
    scores, labels, class_names, crops = _score([path for _, path, _ in members])
    report = ensemble_report(scores, labels, class_names, names, FLAGS.alpha, FLAGS.beta)
    for member, (_, path, record), ten_crop in zip(report["members"], members, crops):
        member.update(path=path, ten_crop=ten_crop, **{k: record[k] for k in ("seed", "epochs", "images_per_sec", "val_accuracy") if k in record})
    report.update(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, split=run_flags.split_name("val"),
                  command=" ".join(["python -m fer_keras.ensemble"] + sys.argv[1:]))
    os.makedirs(output_dir, exist_ok=True)
    write_json(os.path.join(output_dir, "ensemble.json"), report)
    tables = markdown_tables(report)
    with open(os.path.join(output_dir, "ensemble.md"), "w") as f:
        f.write(f"Ensemble of {len(names)} members on {FLAGS.dataset}/{report['split']} ({report['num_images']} images), accuracy in %.\n\n" + tables)
    plot_rank_distribution(report, os.path.join(output_dir, "rank_distribution.png"))
    np.savez_compressed(os.path.join(output_dir, "scores.npz"), scores=scores, labels=labels, members=np.array(names))
    print(tables)
    print(f"Report written to {output_dir}/ensemble.json, ensemble.md, rank_distribution.png, scores.npz")
    return 0


if __name__ == "__main__":
    cli.run(main)
