"""load_arrays and the registry: shapes, resizing, errors, thread-pool determinism."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets import dataset_names, load_arrays, open_dataset
from pipelines.datasets.base import Example, FerDataset


def _png(path, value, size=(48, 48), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else size + (3,)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_registry_names_and_unknown():
    names = dataset_names()
    for name in ("fer2013", "fer2013_csv", "ferplus", "rafdb", "affectnet7", "affectnet8", "ckplus", "jaffe",
                 "folder", "demo"):
        assert name in names
    with pytest.raises(ValueError) as info:
        open_dataset("fer2014", "/nowhere", "train")
    assert "fer2014" in str(info.value) and "ferplus" in str(info.value) and "demo" in str(info.value)


def test_demo_is_imported_lazily():
    if importlib.util.find_spec("pipelines.datasets.demo") is None:
        with pytest.raises(ModuleNotFoundError):
            open_dataset("demo", None, "train")
    else:
        assert type(open_dataset("demo", None, "train")).__name__ == "DemoFaces"


def test_empty_dataset_names_dir_and_layout(tmp_path):
    for name in ("angry", "happy"):
        (tmp_path / "train" / name).mkdir(parents=True)
    dataset = open_dataset("folder", tmp_path, "train")
    with pytest.raises(ValueError) as info:
        load_arrays(dataset, progress=False)
    message = str(info.value)
    assert str(tmp_path) in message and "train" in message and "<class>" in message
    csv_path = tmp_path / "empty.csv"
    csv_path.write_text("emotion,pixels,Usage\n")
    with pytest.raises(ValueError, match="emotion,pixels,Usage"):
        load_arrays(open_dataset("fer2013", csv_path, "train"), progress=False)


def test_all_skipped_reports_reasons(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "x.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="1 unreadable image"):
        load_arrays(open_dataset("folder", tmp_path, None), progress=False)


def test_mismatched_sizes_and_resize(tmp_path):
    _png(tmp_path / "happy" / "a.png", 10)
    _png(tmp_path / "happy" / "b.png", 20, size=(64, 50))
    _png(tmp_path / "sad" / "c.png", 30, mode="RGB")
    dataset = open_dataset("folder", tmp_path, None)
    with pytest.raises(ValueError) as info:
        load_arrays(dataset, progress=False)
    assert "b.png" in str(info.value) and "image_size" in str(info.value)
    arrays = load_arrays(dataset, image_size=(32, 40), channels=1, progress=False)
    assert arrays.images.shape == (3, 32, 40, 1) and arrays.images.dtype == np.uint8
    assert arrays.images[:, 5, 5, 0].tolist() == [10, 20, 30]
    rgb = load_arrays(dataset, image_size=24, channels=3, progress=False)
    assert rgb.images.shape == (3, 24, 24, 3)


def test_threads_are_deterministic_and_limit(fer2013_dir):
    dataset = open_dataset("fer2013", fer2013_dir, "val")
    one = load_arrays(dataset, limit=300, progress=False, workers=1)
    many = load_arrays(dataset, limit=300, progress=False, workers=4)
    np.testing.assert_array_equal(one.images, many.images)
    np.testing.assert_array_equal(one.targets, many.targets)
    assert one.paths == many.paths and len(one.paths) == 300


class _Listed(FerDataset):
    class_names = ("a", "b")

    def _iterate(self):
        for i in range(5):
            yield Example(np.full((4, 4, 1), i, np.uint8), i % 2, {"path": f"mem:{i}", "split": self.split})


def test_non_file_dataset_and_progbar(capsys):
    arrays = load_arrays(_Listed("mem", "train"), limit=3, progress=True)
    assert arrays.images.shape == (3, 4, 4, 1) and arrays.targets.tolist() == [0, 1, 0]
    assert arrays.paths == ["mem:0", "mem:1", "mem:2"]
