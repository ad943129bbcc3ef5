"""The split rule of data sets published without splits (CK+, JAFFE, a plain class folder).

Such an adapter accepts ``split="all"`` (every example) and the two hold-out splits
``"train"`` and ``"val"``, which partition the examples by one documented rule:

* **Seeded and stratified, 80/20** (``val_fraction=0.2``, ``seed=0``): ``val`` holds about a
  fifth of every class, ``train`` the rest; the same seed gives the same split on every
  machine (records are listed in sorted order first).
* **Subject-independent where subjects are known** (``meta["subject"]``: CK+ ``S010``,
  JAFFE ``KA``): no subject has images in both splits. The examples are cut into
  ``round(1 / val_fraction)`` folds by scikit-learn's ``StratifiedGroupKFold`` (shuffled
  with ``seed``; subjects are the groups, classes the strata) and the first fold is
  ``val``. With 10 JAFFE subjects that is 2 subjects in ``val``, 8 in ``train``.
* Without subjects: scikit-learn's ``StratifiedShuffleSplit(test_size=val_fraction,
  random_state=seed)``.

Label distributions (``[K]`` float targets) are stratified on their argmax.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipelines.datasets.base import Record

VAL_FRACTION = 0.2
SEED = 0
HOLDOUT_SPLITS = ("train", "val")
WHOLE_SPLITS = ("all", None, "")


def check_holdout_split(split, dataset: str) -> str:
    """``"all"``, ``"train"`` or ``"val"`` for a data set without predefined splits.

    Raises:
        ValueError: any other split name, naming the data set and the accepted names.
    """
    if split in WHOLE_SPLITS:
        return "all"
    key = str(split).strip().lower()
    if key in HOLDOUT_SPLITS:
        return key
    raise ValueError(
        f"{dataset} has no predefined splits. Expected split 'all' (every image), or 'train' / 'val' "
        f"(a seeded, stratified, subject-independent hold-out, see pipelines.datasets.holdout). Received: {split!r}"
    )


def holdout_indices(targets, groups: Sequence | None = None, val_fraction: float = VAL_FRACTION, seed: int = SEED, where: str = "data set") -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of a seeded, stratified hold-out (see the module docstring).

    Args:
        targets: class ids ``[N]`` or label distributions ``[N, K]`` (stratified on argmax).
        groups: one subject id per example, or None. When given, no group is in both parts.
        val_fraction: float in (0, 0.5]. Share of the examples (with groups: of the folds) in val.
        seed: int. Same seed, same split.
        where: str. Named in error messages (the data set folder).

    Returns: two sorted ``int64`` arrays, disjoint, together ``0..N-1``.

    Raises:
        ValueError: a bad ``val_fraction``, or too few examples / subjects / examples per
            class to hold out a stratified part (the message names ``where``).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

    if not 0.0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5]. Received: val_fraction={val_fraction!r}")
    labels = np.asarray(targets)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    order = np.arange(len(labels))
    try:
        if groups is None:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
            train, val = next(splitter.split(order, labels))
        else:
            groups = np.asarray(list(groups))
            n_folds = max(2, int(round(1.0 / val_fraction)))
            num_groups = len(np.unique(groups))
            if num_groups < n_folds:
                raise ValueError(f"{num_groups} subject(s) cannot make {n_folds} subject-independent folds (val_fraction={val_fraction})")
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            train, val = next(splitter.split(order, labels, groups))
    except ValueError as error:
        raise ValueError(
            f"{where}: cannot hold out a stratified validation part of {len(labels)} examples ({error}). "
            "Pass split='all' and split the data yourself, or add images."
        ) from error
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def select_split(records: list[Record], split: str, where: str, val_fraction: float = VAL_FRACTION, seed: int = SEED, group_key: str | None = "subject") -> list[Record]:
    """The records of ``split`` (``"all"``, ``"train"`` or ``"val"``), with ``meta["split"]`` set.

    Records are grouped by ``meta[group_key]`` when every record has it (subject-independent
    hold-out), else held out per example.
    """
    if split == "all" or not records:
        chosen = records
    else:
        groups = None
        if group_key and all(group_key in r.meta for r in records):
            groups = [r.meta[group_key] for r in records]
        targets = np.asarray([r.target for r in records])
        train, val = holdout_indices(targets, groups, val_fraction, seed, where)
        chosen = [records[i] for i in (train if split == "train" else val)]
    for record in chosen:
        record.meta["split"] = split
    return chosen
