"""CK+, JAFFE and generic class folders on synthetic fixtures in their published layouts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets import load_arrays, open_dataset
from pipelines.datasets.ckplus import subject_folds
from pipelines.labels import BASIC7, BASIC8

CK_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def _png(path, value, size=(48, 48), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else size + (3,)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


@pytest.fixture
def ckplus_dir(tmp_path):
    root = tmp_path / "CK+48"
    for c, folder in enumerate(CK_FOLDERS):
        for s in range(5):
            for frame in (17, 18):
                _png(root / folder / f"S{10 + s * 3:03d}_{c + 1:03d}_{frame:08d}.png", 30 * c + s)
    return root


def test_ckplus_labels_and_subjects(ckplus_dir):
    arrays = load_arrays(open_dataset("ckplus", ckplus_dir, "all"), progress=False)
    assert arrays.class_names == BASIC8 and arrays.images.shape == (70, 48, 48, 1)
    for path, target, meta in zip(arrays.paths, arrays.targets, arrays.meta):
        folder = path.split("/")[-2]
        expected = {"anger": "angry", "sadness": "sad"}.get(folder, folder)
        assert BASIC8[target] == expected
        assert path.split("/")[-1].startswith(meta["subject"] + "_")
    assert sorted({m["subject"] for m in arrays.meta}) == ["S010", "S013", "S016", "S019", "S022"]
    assert np.bincount(arrays.targets, minlength=8)[BASIC8.index("neutral")] == 0
    assert np.bincount(arrays.targets, minlength=8)[BASIC8.index("contempt")] == 10


def test_subject_folds_are_subject_independent(ckplus_dir):
    arrays = load_arrays(open_dataset("ckplus", ckplus_dir, "all"), progress=False)
    subjects = [m["subject"] for m in arrays.meta]
    for targets in (None, arrays.targets):
        folds = subject_folds(subjects, k=3, seed=1, targets=targets)
        assert len(folds) == 3
        all_indices = np.concatenate(folds)
        assert sorted(all_indices.tolist()) == list(range(70))
        fold_subjects = [{subjects[i] for i in fold} for fold in folds]
        for a in range(3):
            for b in range(a + 1, 3):
                assert not fold_subjects[a] & fold_subjects[b]
        assert sorted(len(s) for s in fold_subjects) == [1, 2, 2]
        assert [f.tolist() for f in subject_folds(subjects, 3, seed=1, targets=targets)] == [f.tolist() for f in folds]
    with pytest.raises(ValueError, match="k must be"):
        subject_folds(subjects, k=6)


def test_ckplus_unknown_folder_and_bad_name(ckplus_dir):
    _png(ckplus_dir / "happy" / "IMG_0001.png", 5)
    dataset = open_dataset("ckplus", ckplus_dir, "all")
    assert len(dataset.records()) == 70 and dataset.skipped.total == 1
    (ckplus_dir / "smirk").mkdir()
    with pytest.raises(ValueError, match="smirk"):
        open_dataset("ckplus", ckplus_dir, "all").records()


JAFFE_FILES = ["KA.AN1.39.tiff", "KA.DI1.42.tiff", "KL.FE2.175.tiff", "KM.HA3.6.tiff", "MK.NE1.113.tiff",
               "NA.SA1.209.tiff", "YM.SU2.59.tiff"]


def test_jaffe_codes_and_subjects(tmp_path):
    root = tmp_path / "jaffe"
    for i, name in enumerate(JAFFE_FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((256, 256), 10 * i, np.uint8)).save(path)
    (root / "README").write_text("not an image")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "KA.XX1.1.tiff")
    dataset = open_dataset("jaffe", root, "all")
    arrays = load_arrays(dataset, image_size=48, progress=False)
    assert arrays.images.shape == (7, 48, 48, 1)
    assert [BASIC7[t] for t in arrays.targets] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert [m["subject"] for m in arrays.meta] == ["KA", "KA", "KL", "KM", "MK", "NA", "YM"]
    assert dataset.skipped.total == 1  # KA.XX1.1.tiff
    assert int(arrays.images[3].mean()) == 30
    with pytest.raises(ValueError, match=r"KA\.XX1\.1\.tiff"):
        open_dataset("jaffe", root, "all", on_error="raise").records()


def test_class_folder_canonical_and_user_classes(tmp_path):
    emo = tmp_path / "emo"
    for name in ("happiness", "sadness", "contempt"):
        _png(emo / "train" / name / "a.png", 1, mode="RGB")
    dataset = open_dataset("folder", emo, "train")
    assert dataset.class_names == BASIC8
    arrays = load_arrays(dataset, progress=False)
    assert sorted(BASIC8[t] for t in arrays.targets) == ["contempt", "happy", "sad"]
    assert arrays.images.shape == (3, 48, 48, 3)

    user = tmp_path / "user"
    for name in ("thumbs_up", "thumbs_down"):
        for i in range(2):
            _png(user / name / f"{i}.png", 100, size=(20, 30))
    dataset = open_dataset("folder", user, None)
    assert dataset.class_names == ("thumbs_down", "thumbs_up")
    arrays = load_arrays(dataset, channels=3, progress=False)
    assert arrays.images.shape == (4, 20, 30, 3) and arrays.targets.tolist() == [0, 0, 1, 1]
    given = open_dataset("folder", user, None, classes=["thumbs_up", "thumbs_down", "shrug"])
    with pytest.raises(ValueError, match="shrug"):
        given.records()
    ok = open_dataset("folder", user, None, classes=["thumbs_up", "thumbs_down", "shrug"], allow_missing_classes=True)
    assert [r.target for r in ok.records()] == [1, 1, 0, 0]
