"""FER2013: real class folders, CSV round trips (both headers), and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets import load_arrays, open_dataset
from pipelines.datasets.fer2013 import FER2013Csv, FER2013Folders
from pipelines.labels import BASIC7

CANONICAL_TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830,
                   "surprise": 3171}


def test_real_train_class_counts(fer2013_dir):
    dataset = FER2013Folders(fer2013_dir, "train")
    targets = np.array([r.target for r in dataset.records()])
    counts = {name: int((targets == i).sum()) for i, name in enumerate(BASIC7)}
    assert counts == CANONICAL_TRAIN
    assert len(targets) == 28709


def test_real_val_size_and_load_arrays(fer2013_dir):
    val = open_dataset("fer2013", fer2013_dir, "val")
    records = val.records()
    assert len(records) == 3589
    arrays = load_arrays(open_dataset("fer2013", fer2013_dir, "train"), limit=200, progress=False)
    assert arrays.images.shape == (200, 48, 48, 1) and arrays.images.dtype == np.uint8
    assert arrays.targets.shape == (200,) and arrays.targets.dtype == np.int32
    assert arrays.class_names == BASIC7 and arrays.skipped.total == 0
    assert arrays.images.std() > 10  # real faces, not blanks
    for i in (0, 99, 199):
        np.testing.assert_array_equal(arrays.images[i, ..., 0], np.asarray(Image.open(arrays.paths[i])))
        assert BASIC7[arrays.targets[i]] == os.path.basename(os.path.dirname(arrays.paths[i]))


def _sample_pngs(fer2013_dir, per_class=14):
    rows = []
    for label, name in enumerate(BASIC7):
        folder = fer2013_dir / "train" / name
        for k, file in enumerate(sorted(os.listdir(folder))[:per_class]):
            pixels = np.asarray(Image.open(folder / file))
            rows.append((label, pixels, "Training" if k % 3 else "PublicTest"))
    return rows


def _write_csv(path, rows, variant):
    with open(path, "w", newline="") as f:
        if variant == "kaggle":
            f.write("emotion,pixels,Usage\n")
            for label, pixels, usage in rows:
                f.write(f"{label},{' '.join(map(str, pixels.ravel()))},{usage}\n")
        else:
            f.write("emotion, Usage, pixels\n")
            for label, pixels, usage in rows:
                f.write(f"{label},{usage},{' '.join(map(str, pixels.ravel()))}\n")


@pytest.mark.parametrize("variant", ["kaggle", "icml"])
def test_csv_round_trip(fer2013_dir, tmp_path, variant):
    rows = _sample_pngs(fer2013_dir)
    assert len(rows) == 98 and len({r[0] for r in rows}) == 7
    path = tmp_path / f"{variant}.csv"
    _write_csv(path, rows, variant)
    for split, usage in (("Training", "Training"), ("val", "PublicTest")):
        expected = [r for r in rows if r[2] == usage]
        examples = list(FER2013Csv(path, split))
        assert len(examples) == len(expected)
        for example, (label, pixels, _) in zip(examples, expected):
            assert example.target == label
            assert example.image.shape == (48, 48, 1) and example.image.dtype == np.uint8
            np.testing.assert_array_equal(example.image[..., 0], pixels)
            assert example.meta["split"] == usage and example.meta["path"].startswith(str(path) + ":")
    everything = load_arrays(open_dataset("fer2013", str(path), "all"), progress=False)
    assert everything.images.shape == (98, 48, 48, 1)
    np.testing.assert_array_equal(everything.targets, [r[0] for r in rows])
    assert list(FER2013Csv(path, "PrivateTest")) == []


def test_csv_wrong_header(tmp_path):
    path = tmp_path / "weird.csv"
    path.write_text("label,image,set\n0,1 2 3,Training\n")
    with pytest.raises(ValueError) as info:
        FER2013Csv(path, "train").__iter__().__next__()
    assert "weird.csv" in str(info.value) and "emotion" in str(info.value) and "pixels" in str(info.value)


def _bad_rows_csv(tmp_path):
    good = " ".join(["7"] * 2304)
    path = tmp_path / "bad.csv"
    path.write_text(
        "emotion,pixels,Usage\n"
        f"3,{good},Training\n"
        f"1,{' '.join(['7'] * 2303)},Training\n"  # line 3: wrong length
        f"9,{good},Training\n"  # line 4: bad label
        f"2,{good.replace('7', '300', 1)},Training\n"  # line 5: out of range
        f"5,{good},Training\n"
    )
    return path


def test_csv_bad_rows_skip_and_raise(tmp_path):
    path = _bad_rows_csv(tmp_path)
    dataset = FER2013Csv(path, "train")
    examples = list(dataset)
    assert [e.target for e in examples] == [3, 5]
    assert dataset.skipped.total == 3
    assert any(w.endswith("bad.csv:3") for ws in dataset.skipped.examples.values() for w in ws)
    with pytest.raises(ValueError, match=r"bad\.csv:3.*2303 values"):
        list(FER2013Csv(path, "train", on_error="raise"))


def _make_folders(root, classes=BASIC7, split="train", n=2):
    for name in classes:
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((48, 48), 10 * i + 1, np.uint8)).save(root / split / name / f"{name}{i}.png")


def test_folders_missing_class_and_split(tmp_path):
    _make_folders(tmp_path, [c for c in BASIC7 if c != "disgust"])
    with pytest.raises(ValueError) as info:
        FER2013Folders(tmp_path, "train").records()
    assert "disgust" in str(info.value) and str(tmp_path / "train") in str(info.value)
    assert "surprise" in str(info.value)  # lists the expected names
    partial = FER2013Folders(tmp_path, "train", allow_missing_classes=True)
    assert len(partial.records()) == 12
    with pytest.raises(ValueError, match="val"):
        FER2013Folders(tmp_path, "val")
    (tmp_path / "train" / "bored").mkdir()
    with pytest.raises(ValueError, match="bored"):
        FER2013Folders(tmp_path, "train", allow_missing_classes=True).records()


def test_folders_synonyms_and_corrupt_images(tmp_path):
    _make_folders(tmp_path, ["anger", "disgust", "fear", "happiness", "sadness", "surprised", "neutral"])
    (tmp_path / "train" / "fear" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    good = (tmp_path / "train" / "happiness" / "happiness0.png").read_bytes()
    (tmp_path / "train" / "happiness" / "truncated.png").write_bytes(good[: len(good) // 2])
    dataset = FER2013Folders(tmp_path, "train")
    arrays = load_arrays(dataset, progress=False)
    assert len(arrays.paths) == 14 and dataset.skipped.total == 2
    assert sorted(np.bincount(arrays.targets).tolist()) == [2] * 7
    assert arrays.targets[arrays.paths.index(str(tmp_path / "train" / "sadness" / "sadness1.png"))] == BASIC7.index("sad")
    with pytest.raises(ValueError, match="broken.png"):
        list(FER2013Folders(tmp_path, "train", on_error="raise"))
    with pytest.raises(ValueError, match="broken.png"):
        load_arrays(FER2013Folders(tmp_path, "train", on_error="raise"), progress=False)
