"""Training runs side by side: one metric of each run's ``history.csv`` per epoch, as a PNG and a markdown table.

::

    python -m fer_keras.compare_runs \\
        --runs="votes=runs/resface-ferplus-votes,majority=runs/resface-ferplus-majority" \\
        --metric=val_accuracy --output=runs/votes_vs_majority.png

``--runs`` is a list of ``label=run_dir`` (a run directory of ``fer_keras.train``, or any folder
holding its ``history.csv``). The table (printed, and written next to the PNG as ``.md``) has
one row per epoch and one column per run, and a last row with each run's best epoch; runs
still in progress simply have fewer rows.
"""

from __future__ import annotations

import csv
import os

from absl import app, flags

from fer_keras.training.loop import HISTORY_FIELDS
from pipelines import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "Runs to compare, as label=run_dir (each holding history.csv).")
flags.DEFINE_enum("metric", "val_accuracy", HISTORY_FIELDS[1:], "The history column to compare.")
flags.DEFINE_string("output", None, "PNG to write (a .md table is written beside it).")
flags.DEFINE_string("title", None, "Figure title.")


def read_metric(run_dir: str, metric: str) -> list[float]:
    """The per-epoch values of ``metric`` in ``run_dir/history.csv``."""
    path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (is {run_dir} a training run directory?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and metric not in rows[0]:
        raise ValueError(f"{path} has no column {metric!r}. Columns: {list(rows[0])}")
    return [float(row[metric]) for row in rows]


def parse_runs(entries: list[str]) -> dict[str, str]:
    """``["label=dir", ...]`` -> ``{label: dir}``; a malformed entry or repeated label is a ``ValueError``."""
    runs: dict[str, str] = {}
    for entry in entries:
        label, sep, run_dir = entry.partition("=")
        if not sep or not label or not run_dir:
            raise ValueError(f"--runs entry {entry!r}: expected label=run_dir")
        if label in runs:
            raise ValueError(f"--runs: label {label!r} given twice")
        runs[label] = run_dir
    return runs


def markdown_table(curves: dict[str, list[float]], metric: str) -> str:
    """Epochs as rows, runs as columns (blank where a run has not reached the epoch), then each run's best."""
    higher_is_better = "loss" not in metric and metric not in ("seconds", "learning_rate")
    labels = list(curves)
    lines = ["| epoch | " + " | ".join(labels) + " |", "|---:|" + "---:|" * len(labels)]
    for epoch in range(max(len(v) for v in curves.values())):
        cells = [f"{values[epoch]:.4f}" if epoch < len(values) else "" for values in curves.values()]
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    pick = max if higher_is_better else min
    best = [f"**{pick(values):.4f}** (epoch {values.index(pick(values)) + 1})" if values else "" for values in curves.values()]
    lines.append("| best | " + " | ".join(best) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if len(FLAGS.runs) < 1 or not FLAGS.output:
        raise app.UsageError("fer_keras.compare_runs needs --runs=label=run_dir,... and --output=FILE.png")
    from fer_keras.plots import plot_runs

    try:
        runs = parse_runs(FLAGS.runs)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    curves = {label: read_metric(run_dir, FLAGS.metric) for label, run_dir in runs.items()}
    plot_runs(curves, FLAGS.output, ylabel=FLAGS.metric, title=FLAGS.title)
    table = markdown_table(curves, FLAGS.metric)
    table_path = os.path.splitext(FLAGS.output)[0] + ".md"
    with open(table_path, "w") as f:
        f.write(table)
    print(table)
    print(f"Written {FLAGS.output} and {table_path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
