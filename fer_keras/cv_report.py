"""The statistics of a k-fold cross-validation, exactly as B. Li's ResNet-101 paper reports them.

From the stored test-fold predictions of every round of every run
(``papers/resnet101_transfer_learning.txt``, Sec. 3.6 and 4.1):

* per run ``j``, the confusion matrix ``M_j`` summed over its ``k`` rounds (every example
  tested once), its per-class sensitivities ``M_j[t, t] / sum_i M_j[t, i]`` (Table 1) and
  its overall accuracy ``trace(M_j) / sum(M_j)`` (Table 2);
* their mean +- SD over the runs (sample SD, ``ddof=1``: the paper's 96.29 +- 0.78 of
  Table 2 is the ``ddof=1`` SD of its ten rows);
* the confusion matrix summed over all rounds and runs, ``M(r, g)``, with Eq. 7
  (``E(t) = M_tt / sum_i M_ti``) and Eq. 8 (``OA = trace(M) / sum(M)``).

Written as ``cv_report.json``, ``sensitivity.csv`` (Table 1), ``accuracy.csv`` (Table 2),
``confusion_matrix.csv``, ``cv_report.md`` and the PNGs ``confusion_matrix.png`` and
``accuracy_per_run.png``.
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from fer_keras.metrics import confusion_matrix
from fer_keras.plots import _new_figure, _save_atomically, plot_confusion_matrix


def _sensitivities(matrix: np.ndarray) -> np.ndarray:
    """Row-wise recall ``M_tt / sum_i M_ti`` (0 for a class without examples)."""
    support = matrix.sum(axis=1)
    return np.divide(np.diag(matrix), support, out=np.zeros(len(matrix)), where=support > 0)


def _mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample SD (``ddof=1``; 0 for one run, shown as n/a in the tables) over axis 0."""
    values = np.asarray(values, dtype=np.float64)
    sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1:])
    return values.mean(axis=0), sd


def cv_statistics(labels_by_run: Sequence[np.ndarray], predicted_by_run: Sequence[np.ndarray], class_names: Sequence[str]) -> dict:
    """The paper's statistics of a cross-validation (see the module docstring).

    Args:
        labels_by_run: per run, the true class ids of its test predictions (all rounds).
        predicted_by_run: per run, the predicted class ids (or scores ``[N, K]``), same order.
        class_names: the ``K`` class names.

    Returns: a JSON-serialisable dict: ``class_names``, ``runs`` (per run ``sensitivity``
    per class, ``accuracy``, ``num_examples``, ``confusion_matrix``), ``sensitivity_mean``,
    ``sensitivity_sd``, ``accuracy_mean``, ``accuracy_sd`` (fractions), and ``pooled``:
    the summed ``confusion_matrix`` and its ``sensitivity`` (Eq. 7) and ``accuracy`` (Eq. 8).
    """
    names = [str(n) for n in class_names]
    if not labels_by_run:
        raise ValueError("No finished run to report.")
    matrices = np.stack([confusion_matrix(y, p, len(names)) for y, p in zip(labels_by_run, predicted_by_run)])
    sensitivity = np.stack([_sensitivities(m) for m in matrices])
    accuracy = np.trace(matrices, axis1=1, axis2=2) / matrices.sum(axis=(1, 2))
    total = matrices.sum(axis=0)
    sens_mean, sens_sd = _mean_sd(sensitivity)
    acc_mean, acc_sd = _mean_sd(accuracy)
    return {
        "class_names": names,
        "runs": [{"sensitivity": dict(zip(names, s.tolist())), "accuracy": float(a), "num_examples": int(m.sum()), "confusion_matrix": m.tolist()}
                 for s, a, m in zip(sensitivity, accuracy, matrices)],
        "sensitivity_mean": dict(zip(names, sens_mean.tolist())),
        "sensitivity_sd": dict(zip(names, sens_sd.tolist())),
        "accuracy_mean": float(acc_mean),
        "accuracy_sd": float(acc_sd),
        "pooled": {"confusion_matrix": total.tolist(), "sensitivity": dict(zip(names, _sensitivities(total).tolist())),
                   "accuracy": float(np.trace(total) / total.sum())},
    }


def markdown_tables(stats: dict) -> str:
    """Table 1 (sensitivity per class and run), Table 2 (accuracy per run), Eq. 7-8, in %."""
    names = stats["class_names"]
    one_run = len(stats["runs"]) == 1

    def mean_sd(mean: float, sd: float) -> str:  # no SD from a single run: say so rather than print 0
        return f"{100 * mean:.2f}" + (" ± n/a" if one_run else f" ± {100 * sd:.2f}")

    lines = ["| Run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for j, run in enumerate(stats["runs"]):
        lines.append(f"| {j + 1} | " + " | ".join(f"{100 * run['sensitivity'][n]:.2f}" for n in names) + " |")
    lines.append("| Mean+SD | " + " | ".join(mean_sd(stats['sensitivity_mean'][n], stats['sensitivity_sd'][n]) for n in names) + " |")
    lines += ["", "| Run | OA |", "|---|---|"]
    lines += [f"| {j + 1} | {100 * run['accuracy']:.2f} |" for j, run in enumerate(stats["runs"])]
    lines.append(f"| Mean+SD | {mean_sd(stats['accuracy_mean'], stats['accuracy_sd'])} |")
    pooled = stats["pooled"]
    lines += ["", "Summed confusion matrix over all rounds and runs (Eq. 7-8): OA "
              f"{100 * pooled['accuracy']:.2f}, E(t) " + ", ".join(f"{n} {100 * pooled['sensitivity'][n]:.2f}" for n in names)]
    return "\n".join(lines) + "\n"


def _write_csv(path: str, header: list[str], rows: list[list]) -> str:
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(path + ".tmp", path)
    return path


def write_tables(stats: dict, output_dir: str) -> list[str]:
    """``sensitivity.csv`` (Table 1 + mean and SD rows), ``accuracy.csv`` (Table 2 + mean and SD)
    and ``confusion_matrix.csv`` (summed counts, rows true, columns predicted); values in %."""
    names = stats["class_names"]
    runs = stats["runs"]
    sens_rows = [[j + 1] + [round(100 * r["sensitivity"][n], 4) for n in names] for j, r in enumerate(runs)]
    sens_rows += [["mean"] + [round(100 * stats["sensitivity_mean"][n], 4) for n in names],
                  ["sd"] + [round(100 * stats["sensitivity_sd"][n], 4) for n in names]]
    acc_rows = [[j + 1, round(100 * r["accuracy"], 4)] for j, r in enumerate(runs)]
    acc_rows += [["mean", round(100 * stats["accuracy_mean"], 4)], ["sd", round(100 * stats["accuracy_sd"], 4)]]
    matrix = stats["pooled"]["confusion_matrix"]
    return [
        _write_csv(os.path.join(output_dir, "sensitivity.csv"), ["run"] + names, sens_rows),
        _write_csv(os.path.join(output_dir, "accuracy.csv"), ["run", "accuracy"], acc_rows),
        _write_csv(os.path.join(output_dir, "confusion_matrix.csv"), ["true\\predicted"] + names, [[n] + row for n, row in zip(names, matrix)]),
    ]


def plot_accuracy_per_run(stats: dict, path: str | os.PathLike) -> str:
    """Bars of the overall accuracy (%) of every run, with the mean +- SD as a line and band (Fig. 11)."""
    accuracy = [100 * r["accuracy"] for r in stats["runs"]]
    mean, sd = 100 * stats["accuracy_mean"], 100 * stats["accuracy_sd"]
    figure = _new_figure(max(5.0, 0.5 * len(accuracy) + 3), 4.0)
    axes = figure.add_subplot(1, 1, 1)
    runs = np.arange(1, len(accuracy) + 1)
    axes.bar(runs, accuracy, 0.6, color="tab:blue")
    axes.axhline(mean, color="black", linewidth=1, label=f"mean {mean:.2f} ± {sd:.2f}")
    axes.axhspan(mean - sd, mean + sd, color="gray", alpha=0.2)
    axes.set_xticks(runs)
    axes.set_xlabel("Run")
    axes.set_ylabel("Overall accuracy (%)")
    low = min(accuracy) - max(2 * sd, 2.0)
    axes.set_ylim(max(0.0, low), min(100.0, max(accuracy) + max(2 * sd, 2.0)))
    axes.set_title("Overall accuracy per run")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return _save_atomically(figure, path)


def write_plots(stats: dict, output_dir: str) -> list[str]:
    """``confusion_matrix.png`` (summed counts, row-normalised) and ``accuracy_per_run.png``."""
    return [
        plot_confusion_matrix(stats["pooled"]["confusion_matrix"], stats["class_names"], os.path.join(output_dir, "confusion_matrix.png"),
                              title="Summed confusion matrix, all rounds and runs (row-normalised)"),
        plot_accuracy_per_run(stats, os.path.join(output_dir, "accuracy_per_run.png")),
    ]
