"""Data sets without predefined splits (CK+, JAFFE, a plain class folder): the seeded,
stratified, subject-independent train/val hold-out that ``fer_keras.train`` loads, and the
folder's default evaluation split."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_spec import InputSpec
from pipelines.datasets import load_arrays, load_split, open_dataset
from pipelines.datasets.holdout import holdout_indices
from pipelines.datasets.splits import default_splits, evaluation_split
from pipelines.labels import BASIC7, BASIC8

CK_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
JAFFE_CODES = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
JAFFE_SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")


def _image(path, value, size=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


@pytest.fixture
def ckplus_dir(tmp_path):
    """20 subjects; each posed a seeded subset of the 7 CK+ emotions (2 frames per sequence)."""
    root = tmp_path / "CK+48"
    rng = np.random.default_rng(3)
    for s in range(20):
        emotions = rng.choice(len(CK_FOLDERS), size=rng.integers(3, 7), replace=False)
        for e in sorted(emotions):
            for frame in (15, 16):
                _image(root / CK_FOLDERS[e] / f"S{100 + s:03d}_{e + 1:03d}_{frame:08d}.png", 10 * e + s)
    return root


@pytest.fixture
def jaffe_dir(tmp_path):
    """The JAFFE layout: 10 subjects x 7 expressions x 3 takes = 210 TIFFs."""
    root = tmp_path / "jaffe"
    index = 0
    for subject in JAFFE_SUBJECTS:
        for code in JAFFE_CODES:
            for take in (1, 2, 3):
                index += 1
                _image(root / f"{subject}.{code}{take}.{index}.tiff", index % 256)
    return root


def _check_holdout(name, root, num_classes, class_names):
    """Assert the properties of the hold-out of ``name`` and return (train, val) arrays."""
    spec = InputSpec()
    train = load_split(name, str(root), "train", spec, progress=False)
    val = load_split(name, str(root), "val", spec, progress=False)
    whole = load_arrays(open_dataset(name, str(root), "all"), image_size=48, progress=False)
    assert train.class_names == val.class_names == class_names
    assert train.images.shape[1:] == (48, 48, 1)
    # Disjoint and complete.
    assert not set(train.paths) & set(val.paths)
    assert sorted(train.paths + val.paths) == sorted(whole.paths)
    # Subject-independent.
    train_subjects = {m["subject"] for m in train.meta}
    val_subjects = {m["subject"] for m in val.meta}
    assert train_subjects and val_subjects and not train_subjects & val_subjects
    assert {m["split"] for m in train.meta} == {"train"} and {m["split"] for m in val.meta} == {"val"}
    # Stratified: about a fifth of the images, and every class in both parts.
    assert 0.1 <= len(val.paths) / len(whole.paths) <= 0.3
    present = np.unique(whole.targets)
    assert set(np.unique(val.targets)) == set(present) == set(np.unique(train.targets))
    # Deterministic for a seed; another seed gives another split.
    again = open_dataset(name, str(root), "val").records()
    assert [r.path for r in again] == val.paths
    other = open_dataset(name, str(root), "val", seed=1).records()
    assert [r.path for r in other] != val.paths
    return train, val


def test_ckplus_train_and_val_splits_exist_and_are_subject_independent(ckplus_dir):
    assert default_splits("ckplus") == ("train", "val")
    _check_holdout("ckplus", ckplus_dir, 7, BASIC8)


def test_jaffe_train_and_val_splits_hold_out_two_whole_subjects(jaffe_dir):
    assert default_splits("jaffe") == ("train", "val")
    train, val = _check_holdout("jaffe", jaffe_dir, 7, BASIC7)
    assert len({m["subject"] for m in val.meta}) == 2 and len(val.paths) == 42
    # Every subject posed every expression, so the val part is exactly balanced.
    assert np.bincount(val.targets, minlength=7).tolist() == [6] * 7


def test_no_split_data_sets_name_the_accepted_splits(ckplus_dir, jaffe_dir):
    for name, root in (("ckplus", ckplus_dir), ("jaffe", jaffe_dir)):
        with pytest.raises(ValueError, match=r"'all'.*'train' / 'val'.*Received: 'test'"):
            open_dataset(name, str(root), "test")


def test_holdout_indices_partition_stratify_and_keep_groups_apart():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 400)
    train, val = holdout_indices(targets, val_fraction=0.25, seed=5)
    assert np.intersect1d(train, val).size == 0 and np.union1d(train, val).tolist() == list(range(400))
    assert len(val) == 100
    np.testing.assert_allclose(np.bincount(targets[val], minlength=4) / 100, np.bincount(targets, minlength=4) / 400, atol=0.02)
    groups = rng.integers(0, 40, 400)
    train, val = holdout_indices(targets, groups, seed=5)
    assert not set(groups[train]) & set(groups[val])
    assert np.union1d(train, val).tolist() == list(range(400))
    with pytest.raises(ValueError, match="my-folder.*3 subject"):
        holdout_indices(targets[:10], [0, 1, 2] * 3 + [0], where="my-folder")


def test_folder_of_class_folders_is_one_split_with_a_holdout(tmp_path):
    root = tmp_path / "photos"
    for c, name in enumerate(("happy", "sad", "neutral")):
        for i in range(10):
            _image(root / name / f"{i}.png", 20 * c + i)
    # No --split: the README's <dir>/<class>/* layout is evaluated whole.
    assert evaluation_split("folder", str(root)) == "all"
    whole = open_dataset("folder", str(root), evaluation_split("folder", str(root))).records()
    assert len(whole) == 30
    # Training: train/val are the seeded stratified hold-out of the one split.
    train = open_dataset("folder", str(root), "train").records()
    val = open_dataset("folder", str(root), "val").records()
    assert len(val) == 6 and len(train) == 24
    assert not {r.path for r in train} & {r.path for r in val}
    assert sorted(r.target for r in val) == [3, 3, 4, 4, 6, 6]  # 2 of each of happy, sad, neutral
    assert [r.path for r in open_dataset("folder", str(root), "val").records()] == [r.path for r in val]


def test_folder_with_split_folders_keeps_them(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name in ("happy", "sad"):
            _image(root / split / name / "a.png", 1)
    assert evaluation_split("folder", str(root)) == "val"
    assert {r.meta["split"] for r in open_dataset("folder", str(root), "val").records()} == {"val"}
    with pytest.raises(ValueError, match=r"data/test not found"):
        open_dataset("folder", str(root), "test")
