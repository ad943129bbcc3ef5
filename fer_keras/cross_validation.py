"""K-fold cross-validation of a member recipe: rounds trained resumably, test predictions stored.

The library half of ``python -m fer_keras.cv`` (see that module for the protocol and the
files it writes). For run ``j`` the folds are drawn with seed ``seed + j``
(``pipelines.datasets.folds.assign_folds``); round ``r`` tests fold ``r``, selects the best
epoch on fold ``(r + 1) mod k``, trains on the rest with seed ``1000 * (seed + j) + r``, as
one member (``fer_keras.members.train_member``) in ``<output_dir>/run_<j>/round_<r>/``; its
test predictions go to ``<output_dir>/run_<j>/round_<r>.npz``.

Resumption: a round whose ``.npz`` exists is skipped; a half-trained round resumes from its
checkpoint; a finished round whose ``.npz`` is missing is scored again, not retrained.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from fer_keras import cv_report
from fer_keras.inference import predict_scores
from fer_keras.members import MemberRecipe, train_member, write_json
from fer_keras.saving import load_model
from pipelines.datasets import LoadedArrays
from pipelines.datasets.folds import assign_folds, class_ids, round_split, take

MANIFEST_FILE = "cv.json"


def fold_seed(seed: int, run: int) -> int:
    return seed + run


def round_seed(seed: int, run: int, round_index: int) -> int:
    return 1000 * (seed + run) + round_index


def data_fingerprint(data: LoadedArrays) -> str:
    """SHA-1 of the examples' paths and labels: the same images in the same order."""
    digest = hashlib.sha1()
    for path, label in zip(data.paths, class_ids(data.targets)):
        digest.update(f"{path}\t{int(label)}\n".encode())
    return digest.hexdigest()


def check_manifest(output_dir: str, manifest: dict) -> None:
    """Write ``cv.json``, or check that the one there describes the same protocol and data (``runs`` may grow)."""
    path = os.path.join(output_dir, MANIFEST_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            found = json.load(f)
        changed = sorted(k for k in manifest if k != "runs" and found.get(k) != manifest[k])
        if changed:
            raise ValueError(f"{output_dir} holds a cross-validation with another {', '.join(changed)}. Choose another --output_dir.")
    os.makedirs(output_dir, exist_ok=True)
    write_json(path, manifest)


def round_paths(output_dir: str, run: int, round_index: int) -> tuple[str, str]:
    """``(member folder, predictions .npz)`` of one round."""
    base = os.path.join(output_dir, f"run_{run}", f"round_{round_index}")
    return base, base + ".npz"


def run_round(recipe: MemberRecipe, data: LoadedArrays, folds: np.ndarray, run: int, round_index: int, output_dir: str,
              seed: int, init_weights: str | None = None, ten_crop: bool = False, verbose: int = 1) -> str:
    """Train (or resume, or load) round ``round_index`` of run ``run`` and store its test predictions.

    Returns: ``"skipped"`` (predictions already stored), ``"trained"``, ``"resumed"`` or
    ``"scored"`` (a finished model whose predictions were missing).
    """
    member_dir, npz_path = round_paths(output_dir, run, round_index)
    if os.path.isfile(npz_path):
        return "skipped"
    split = round_split(folds, round_index)
    record = train_member(recipe, member_dir, round_seed(seed, run, round_index), take(data, split.train), take(data, split.val),
                          initial_model=init_weights, verbose=verbose)
    scores = predict_scores(load_model(record["path"]), data.images[split.test], use_ten_crop=ten_crop)
    with open(npz_path + ".tmp", "wb") as f:
        np.savez_compressed(f, test_indices=split.test, labels=class_ids(data.targets)[split.test], scores=scores,
                            val_indices=split.val, seed=round_seed(seed, run, round_index))
    os.replace(npz_path + ".tmp", npz_path)
    if not record["trained"]:
        return "scored"
    return "resumed" if record["resumed"] else "trained"


def collect_predictions(output_dir: str, runs: int, k: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Labels and predicted class ids of every complete run (all ``k`` rounds stored), and those runs' numbers."""
    labels_by_run, predicted_by_run, complete = [], [], []
    for run in range(runs):
        paths = [round_paths(output_dir, run, r)[1] for r in range(k)]
        if not all(os.path.isfile(p) for p in paths):
            continue
        rounds = [np.load(p) for p in paths]
        labels_by_run.append(np.concatenate([z["labels"] for z in rounds]))
        predicted_by_run.append(np.concatenate([z["scores"].argmax(axis=1) for z in rounds]))
        complete.append(run)
    return labels_by_run, predicted_by_run, complete


def cross_validate(recipe: MemberRecipe, data: LoadedArrays, k: int, runs: int, output_dir: str, seed: int = 0,
                   groups=None, init_weights: str | None = None, ten_crop: bool = False, verbose: int = 1) -> dict:
    """Every round of every run (resumable, see the module docstring), then the statistics.

    Returns: ``{"statistics": cv_report.cv_statistics(...), "rounds": {status: count}}``.
    """
    counts: dict[str, int] = {}
    for run in range(runs):
        folds = assign_folds(data.targets, k, fold_seed(seed, run), groups)
        for r in range(k):
            status = run_round(recipe, data, folds, run, r, output_dir, seed, init_weights, ten_crop, verbose)
            counts[status] = counts.get(status, 0) + 1
            if verbose:
                print(f"run {run} round {r}: {status}")
    labels, predicted, complete = collect_predictions(output_dir, runs, k)
    stats = cv_report.cv_statistics(labels, predicted, data.class_names)
    stats["run_numbers"] = complete
    return {"statistics": stats, "rounds": counts}
