"""What ``python -m fer_keras.ensemble`` reports, from the members' scores ``[M, N, C]``.

- each member's accuracy and mean per-class accuracy, and the T2V / NOI / bagging votes'
  (``fer_keras.voting``, the code the exported ensemble runs): the paper's Table 6;
- the same rules over the first 1, 2, ..., M members: its Table 4;
- the rank distribution of the true label in each member's output: its Table 1, the share
  of images whose true class each member ranks 1st, 2nd, ..., C-th.

Ranks break ties as the voting rules do: among equal scores the lower class index ranks
first. Reference: Zhou et al., FAML-FGA-T2V, Sec. 3.3, 4.4, Tables 1, 4, 6.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from keras import ops

from fer_keras import voting
from fer_keras.metrics import classification_report
from fer_keras.plots import _new_figure, _save_atomically


def true_label_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank (1 = first choice) of ``labels[n]`` in each member's scores ``[M, N, C]``: ``[M, N]`` ints."""
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    true = np.take_along_axis(scores, labels[None, :, None], axis=-1)
    classes = np.arange(scores.shape[-1])
    ahead = (scores > true) | ((scores == true) & (classes < labels[:, None]))
    return 1 + ahead.sum(axis=-1)


def rank_distribution(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[M, C]`` share of images whose true class each member ranks 1st, 2nd, ..., C-th (rows sum to 1)."""
    ranks = true_label_ranks(scores, labels)
    classes = np.asarray(scores).shape[-1]
    return np.stack([np.bincount(r - 1, minlength=classes) / len(r) for r in ranks])


def _summary(labels, predicted, class_names) -> dict:
    report = classification_report(labels, predicted, class_names=list(class_names))
    return {"accuracy": report["accuracy"], "mean_class_accuracy": report["mean_class_accuracy"]}


def vote(scores: np.ndarray, rule: str, alpha: float = 1.9, beta: float = 1.0) -> np.ndarray:
    """Class ids ``[N]`` chosen by ``rule`` ("t2v", "noi", "bagging") over scores ``[M, N, C]``."""
    options = {"alpha": alpha, "beta": beta} if rule == "t2v" else {}
    return ops.convert_to_numpy(voting.VOTING_RULES[rule](scores, **options)[1])


def ensemble_report(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], member_names: Sequence[str],
                    alpha: float = 1.9, beta: float = 1.0) -> dict:
    """Members, rules, rules by number of members and rank distributions (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float32)
    labels = np.asarray(labels)
    if scores.ndim != 3 or scores.shape[:2] != (len(member_names), len(labels)):
        raise ValueError(f"scores must be [members={len(member_names)}, images={len(labels)}, classes]. Received: {scores.shape}")
    distribution = rank_distribution(scores, labels)
    members = [
        dict(name=name, **_summary(labels, scores[m].argmax(axis=-1), class_names), rank_distribution=distribution[m].tolist())
        for m, name in enumerate(member_names)
    ]
    best = max(m["accuracy"] for m in members)
    rules = {}
    for rule in voting.VOTING_RULES:
        summary = _summary(labels, vote(scores, rule, alpha, beta), class_names)
        rules[rule] = dict(summary, gain_over_best_member=summary["accuracy"] - best)
    by_members = [
        {"members": k, **{rule: _summary(labels, vote(scores[:k], rule, alpha, beta), class_names)["accuracy"] for rule in voting.VOTING_RULES}}
        for k in range(1, len(member_names) + 1)
    ]
    return {
        "num_members": len(member_names),
        "num_images": len(labels),
        "class_names": list(class_names),
        "alpha": alpha,
        "beta": beta,
        "members": members,
        "best_member_accuracy": best,
        "rules": rules,
        "by_number_of_members": by_members,
    }


def markdown_tables(report: dict) -> str:
    """The report as three markdown tables: members and rules (Table 6), rules by number of
    members (Table 4), rank distribution of the true label (Table 1); percentages."""
    classes = len(report["class_names"])
    lines = ["| Network | Accuracy | Mean per-class |", "|---|---|---|"]
    lines += [f"| {m['name']} | {100 * m['accuracy']:.2f} | {100 * m['mean_class_accuracy']:.2f} |" for m in report["members"]]
    lines += [f"| **{rule.upper()}** ({report['num_members']} members) | {100 * r['accuracy']:.2f} ({100 * r['gain_over_best_member']:+.2f} vs best member) | {100 * r['mean_class_accuracy']:.2f} |"
              for rule, r in report["rules"].items()]
    rules = list(report["rules"])
    lines += ["", "| Members | " + " | ".join(r.upper() for r in rules) + " |", "|---" * (len(rules) + 1) + "|"]
    lines += [f"| {row['members']} | " + " | ".join(f"{100 * row[r]:.2f}" for r in rules) + " |" for row in report["by_number_of_members"]]
    lines += ["", "| Network | " + " | ".join(f"Rank {k}" for k in range(1, classes + 1)) + " |", "|---" * (classes + 1) + "|"]
    lines += [f"| {m['name']} | " + " | ".join(f"{100 * share:.2f}" for share in m["rank_distribution"]) + " |" for m in report["members"]]
    return "\n".join(lines) + "\n"


def plot_rank_distribution(report: dict, path: str | os.PathLike) -> str:
    """Grouped bars: the share (%) of images whose true class each member ranks 1st ... C-th."""
    members = report["members"]
    classes = len(report["class_names"])
    figure = _new_figure(max(6.0, 0.9 * classes + 2), 4.0)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(members)
    ranks = np.arange(1, classes + 1)
    for m, member in enumerate(members):
        axes.bar(ranks + (m - (len(members) - 1) / 2) * width, 100 * np.asarray(member["rank_distribution"]), width, label=member["name"])
    axes.set_xticks(ranks)
    axes.set_xlabel("Rank of the true class in the member's output")
    axes.set_ylabel("Images (%)")
    axes.set_title(f"Rank of the true label ({report['num_images']} images)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return _save_atomically(figure, path)
