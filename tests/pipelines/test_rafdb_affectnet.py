"""RAF-DB and AffectNet on synthetic fixtures in their published layouts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets import load_arrays, open_dataset
from pipelines.labels import BASIC7, BASIC8


def _jpg(path, value, size=(100, 100)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path, quality=95)


RAF_LINES = [("train_00001.jpg", 1), ("train_00002.jpg", 2), ("train_00003.jpg", 3), ("train_00004.jpg", 4),
             ("train_00005.jpg", 5), ("train_00006.jpg", 6), ("train_00007.jpg", 7), ("test_0001.jpg", 4),
             ("test_0002.jpg", 7)]
RAF_EXPECTED = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}


@pytest.fixture
def rafdb_dir(tmp_path):
    root = tmp_path / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {l}\n" for n, l in RAF_LINES))
    for i, (name, _) in enumerate(RAF_LINES):
        stem = name[:-4]
        _jpg(root / "Image" / "aligned" / f"{stem}_aligned.jpg", 20 * i)
        _jpg(root / "Image" / "original" / name, 20 * i, size=(120, 90))
    return root


def test_rafdb_labels_and_splits(rafdb_dir):
    train = load_arrays(open_dataset("rafdb", rafdb_dir, "train"), progress=False)
    assert train.images.shape == (7, 100, 100, 3)
    assert [BASIC7[t] for t in train.targets] == [RAF_EXPECTED[l] for _, l in RAF_LINES[:7]]
    assert all(p.endswith("_aligned.jpg") for p in train.paths)
    test = load_arrays(open_dataset("rafdb", rafdb_dir, "test", aligned=False), progress=False)
    assert [BASIC7[t] for t in test.targets] == ["happy", "neutral"]
    assert test.images.shape == (2, 120, 90, 3) and test.meta[0]["split"] == "test"
    assert test.paths[0].endswith("Image/original/test_0001.jpg")


def test_rafdb_bad_line_and_missing_image(rafdb_dir):
    label_file = rafdb_dir / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + "train_00008.jpg 9\ntrain_00009.jpg 2\n")
    dataset = open_dataset("rafdb", rafdb_dir, "train")
    arrays = load_arrays(dataset, progress=False)
    assert len(arrays.paths) == 7 and dataset.skipped.total == 2  # bad label + missing train_00009
    with pytest.raises(ValueError, match=r"list_patition_label\.txt:10"):
        open_dataset("rafdb", rafdb_dir, "train", on_error="raise").records()


AFFECT_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"


def _landmarks(offset):
    return ";".join(f"{offset + i * 0.5:.2f}" for i in range(136))


@pytest.fixture
def affectnet_dir(tmp_path):
    root = tmp_path / "AffectNet"
    rows = []
    for expression in range(11):
        rel = f"{100 + expression}/img{expression:02d}.jpg"
        _jpg(root / "Manually_Annotated_Images" / rel, 10 + 20 * expression, size=(80, 60))
        rows.append(f'{rel},10,20,30,40,{_landmarks(expression)},{expression},0.25,-0.5\n')
    (root / "training.csv").write_text(AFFECT_HEADER + "".join(rows))
    (root / "validation.csv").write_text(AFFECT_HEADER + rows[1] + rows[7])
    return root


def test_affectnet_7_and_8_classes(affectnet_dir):
    seven = open_dataset("affectnet7", affectnet_dir, "train")
    arrays = load_arrays(seven, progress=False)
    names = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry"]
    assert [BASIC7[t] for t in arrays.targets] == names
    assert arrays.class_names == BASIC7
    assert seven.skipped.counts["not in label space"] == 4  # contempt, none, uncertain, non-face
    eight = open_dataset("affectnet8", affectnet_dir, "train")
    arrays8 = load_arrays(eight, progress=False)
    assert [BASIC8[t] for t in arrays8.targets] == names + ["contempt"]
    assert eight.skipped.counts["not in label space"] == 3
    meta = arrays8.meta[2]
    assert meta["box"] == (10, 20, 30, 40) and meta["valence"] == 0.25 and meta["arousal"] == -0.5
    assert meta["landmarks"].shape == (68, 2) and meta["landmarks"].dtype == np.float32
    assert meta["landmarks"][1].tolist() == [3.0, 3.5]  # offset 2: values 2.0, 2.5, 3.0, 3.5...
    val = load_arrays(open_dataset("affectnet8", affectnet_dir, "val"), progress=False)
    assert [BASIC8[t] for t in val.targets] == ["happy", "contempt"]


def test_affectnet_crop_and_header(affectnet_dir, tmp_path):
    arrays = load_arrays(open_dataset("affectnet7", affectnet_dir, "train", crop_face=True), progress=False)
    assert arrays.images.shape == (7, 40, 30, 3)  # h=40, w=30 box inside 60x80 images
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "training.csv").write_text("path,label\nx.jpg,1\n")
    with pytest.raises(ValueError, match="expression"):
        open_dataset("affectnet7", bad, "train").records()
