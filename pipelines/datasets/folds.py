"""K-fold cross-validation splits: fold assignment, the paper's train/validation/test rounds.

The protocol of B. Li, "Facial expression recognition via transfer learning" (ResNet-101;
``../shared/papers/resnet101_transfer_learning.txt``, Sec. 3.6): the examples are
cut into ``k`` stratified folds; in round ``r`` (``0 <= r < k``)

* fold ``r`` is the **test** fold (scored once, its predictions kept),
* fold ``(r + 1) mod k`` is the **validation** fold (best-epoch selection only),
* the other ``k - 2`` folds are the **training** folds,

so over the ``k`` rounds every example is tested exactly once. A *run* repeats this with
another fold assignment (``seed + run``); the paper uses ``k = 10`` and 10 runs.

Fold assignment is scikit-learn's ``StratifiedKFold(shuffle=True)``, or, when subject ids
are given, ``StratifiedGroupKFold(shuffle=True)``: subject-independent folds (no subject in
two folds), stratified as far as the subjects allow. Label distributions ``[N, K]`` are
stratified on their argmax.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from pipelines.datasets.arrays import LoadedArrays


def class_ids(targets) -> np.ndarray:
    """Class ids ``[N]`` of class ids ``[N]`` or label distributions ``[N, K]`` (argmax)."""
    labels = np.asarray(targets)
    return labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64)


def assign_folds(targets, k: int, seed: int = 0, groups: Sequence | None = None) -> np.ndarray:
    """The fold (``0..k-1``) of every example: stratified, and subject-independent with ``groups``.

    Args:
        targets: class ids ``[N]`` or label distributions ``[N, K]``.
        k: int >= 2. Number of folds.
        seed: int. Shuffles the examples (or subjects) before assignment; same seed, same folds.
        groups: one subject id per example, or None. When given, all examples of a subject
            fall in one fold.

    Returns: int64 ``[N]``.

    Raises:
        ValueError: ``k < 2``, or more folds than subjects (with groups) or than examples of
            the largest class.
    """
    labels = class_ids(targets)
    if k < 2:
        raise ValueError(f"k must be at least 2. Received: k={k}")
    folds = np.full(len(labels), -1, dtype=np.int64)
    order = np.arange(len(labels))
    if groups is None:
        if k > np.bincount(labels).max():
            raise ValueError(f"k must be at most the size of the largest class ({np.bincount(labels).max()}). Received: k={k}")
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(order, labels)
    else:
        groups = np.asarray(list(groups))
        if len(groups) != len(labels):
            raise ValueError(f"groups has {len(groups)} entries for {len(labels)} examples.")
        num_groups = len(np.unique(groups))
        if k > num_groups:
            raise ValueError(f"k must be between 2 and the number of subjects ({num_groups}). Received: k={k}")
        splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(order, labels, groups)
    for fold, (_, test) in enumerate(splits):
        folds[test] = fold
    return folds


@dataclasses.dataclass(frozen=True)
class Round:
    """Indices of one round's folds: ``train`` (k-2 folds), ``val`` (fold (r+1) mod k), ``test`` (fold r)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def round_split(folds: np.ndarray, round_index: int) -> Round:
    """The sorted example indices of round ``round_index`` for a fold assignment ``folds`` (see module docstring).

    Raises:
        ValueError: fewer than 3 folds, or ``round_index`` outside ``0..k-1``.
    """
    folds = np.asarray(folds)
    k = int(folds.max()) + 1
    if k < 3:
        raise ValueError(f"A train/validation/test round needs at least 3 folds. Received: {k}")
    if not 0 <= round_index < k:
        raise ValueError(f"round_index must be in 0..{k - 1}. Received: {round_index}")
    test_fold, val_fold = round_index, (round_index + 1) % k
    test = np.flatnonzero(folds == test_fold)
    val = np.flatnonzero(folds == val_fold)
    train = np.flatnonzero((folds != test_fold) & (folds != val_fold))
    return Round(train, val, test)


def class_balanced_indices(targets, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` examples of every class present (seeded draw without replacement).

    Raises:
        ValueError: a present class has fewer than ``per_class`` examples.
    """
    labels = class_ids(targets)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"Class {c} has {len(members)} examples, fewer than per_class={per_class}.")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def take(arrays: LoadedArrays, indices) -> LoadedArrays:
    """The examples ``indices`` of ``arrays`` (images, targets, paths, meta), in that order."""
    indices = np.asarray(indices, dtype=np.int64)
    return dataclasses.replace(
        arrays,
        images=arrays.images[indices],
        targets=arrays.targets[indices],
        paths=[arrays.paths[i] for i in indices],
        meta=[arrays.meta[i] for i in indices] if arrays.meta else [],
    )
