"""K-fold assignment and the paper's train/validation/test rounds (pipelines.datasets.folds)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.datasets.folds import assign_folds, class_balanced_indices, round_split, take


@pytest.mark.parametrize("k", [3, 10])
def test_folds_are_stratified_disjoint_and_cover_every_image_once(fer_train_subset, k):
    labels = fer_train_subset.targets
    for seed in (0, 1):
        folds = assign_folds(labels, k, seed)
        assert folds.shape == labels.shape and set(folds.tolist()) == set(range(k))  # each image in exactly one fold
        per_fold = np.stack([np.bincount(labels[folds == f], minlength=7) for f in range(k)])
        assert (per_fold.max(axis=0) - per_fold.min(axis=0) <= 1).all()  # class proportions within 1 image
        assert per_fold.sum() == len(labels)
    assert not np.array_equal(assign_folds(labels, k, 0), assign_folds(labels, k, 1))
    np.testing.assert_array_equal(assign_folds(labels, k, 3), assign_folds(labels, k, 3))


def test_subject_independent_folds_never_split_a_subject():
    rng = np.random.default_rng(0)
    subjects = rng.integers(0, 40, size=600)
    labels = rng.integers(0, 7, size=600)
    folds = assign_folds(labels, 10, seed=2, groups=[f"S{s:03d}" for s in subjects])
    assert set(folds.tolist()) == set(range(10))
    for s in np.unique(subjects):
        assert len(set(folds[subjects == s].tolist())) == 1
    with pytest.raises(ValueError, match="number of subjects"):
        assign_folds(labels[:30], 10, groups=subjects[:30] % 5)


def test_round_train_val_test_are_disjoint_and_rotate(fer_train_subset):
    k = 10
    folds = assign_folds(fer_train_subset.targets, k, seed=0)
    tested, validated = np.zeros(len(folds), int), np.zeros(len(folds), int)
    for r in range(k):
        split = round_split(folds, r)
        assert (folds[split.test] == r).all() and (folds[split.val] == (r + 1) % k).all()
        parts = [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(parts[0] | parts[1] | parts[2]) == len(folds)
        assert len(set(folds[split.train].tolist())) == k - 2
        tested[split.test] += 1
        validated[split.val] += 1
    assert (tested == 1).all() and (validated == 1).all()
    with pytest.raises(ValueError, match="at least 3 folds"):
        round_split(np.array([0, 1, 0, 1]), 0)


def test_class_balanced_subset_is_seeded_and_balanced(fer_train_subset):
    indices = class_balanced_indices(fer_train_subset.targets, 10, seed=0)
    assert np.bincount(fer_train_subset.targets[indices], minlength=7).tolist() == [10] * 7
    np.testing.assert_array_equal(indices, class_balanced_indices(fer_train_subset.targets, 10, seed=0))
    assert not np.array_equal(indices, class_balanced_indices(fer_train_subset.targets, 10, seed=1))
    subset = take(fer_train_subset, indices)
    assert subset.images.shape[0] == 70 and subset.paths == [fer_train_subset.paths[i] for i in indices]
    with pytest.raises(ValueError, match="fewer than per_class"):
        class_balanced_indices(fer_train_subset.targets, 5000)
