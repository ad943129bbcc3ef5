"""FER2013 (Goodfellow et al., "Challenges in Representation Learning: A report on three
machine learning contests", ICML 2013 workshop; Kaggle "Challenges in Representation
Learning: Facial Expression Recognition Challenge"): 48x48 grayscale faces, 7 classes.

Two layouts: the original CSV (:class:`FER2013Csv`) and per-class PNG folders
(:class:`FER2013Folders`). Label ids 0..6 are the canonical BASIC7 ids.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from pipelines.datasets.base import Example, FerDataset, FileDataset, Record
from pipelines.datasets.class_folder import list_images, scan_class_folders
from pipelines.labels import BASIC7, canonical_name

CSV_COLUMNS = ("emotion", "pixels", "Usage")
CSV_SPLITS = ("Training", "PublicTest", "PrivateTest")
_CSV_ALIASES = {
    "training": "Training", "train": "Training",
    "publictest": "PublicTest", "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
    "privatetest": "PrivateTest", "test": "PrivateTest",
}
FOLDER_SPLITS = ("train", "val", "test")
_FOLDER_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "privatetest": "test",
}
SIDE = 48


def _csv_split(split: str | None) -> str | None:
    if split in (None, "all"):
        return None
    key = str(split).strip().lower()
    if key not in _CSV_ALIASES:
        raise ValueError(f"Unknown FER2013 CSV split {split!r}. Expected one of {CSV_SPLITS} (or train/val/test, all).")
    return _CSV_ALIASES[key]


class FER2013Csv(FerDataset):
    """FER2013 as the single CSV of the Kaggle release.

    Layout: ``fer2013.csv`` with header ``emotion,pixels,Usage`` (one row per image:
    label id 0..6, 2304 space-separated pixel values 0..255 in row-major 48x48 order,
    ``Training`` | ``PublicTest`` | ``PrivateTest``), or the ``icml_face_data.csv`` variant
    with header ``emotion, Usage, pixels``. Columns are matched by stripped name, so order
    and spaces after commas do not matter. The file is streamed with the csv module.

    Args:
        data_dir: path of the CSV file.
        split: ``Training`` | ``PublicTest`` | ``PrivateTest`` (aliases train / val / test),
            or ``"all"``/None for every row.

    Examples: image ``uint8 [48, 48, 1]``, target the BASIC7 id, meta ``path`` =
    ``file:line``, ``split`` (the row's Usage), ``row`` (0-based data row index).
    Bad rows (pixel count, pixel values, label) go through ``skip_or_raise`` naming ``file:line``.
    """

    name = "fer2013_csv"
    class_names = BASIC7
    framing = "fer2013_box"  # cropped around a face detector's box, not landmark-aligned
    layout = "a CSV file with columns emotion,pixels,Usage (or emotion, Usage, pixels)"

    def __init__(self, data_dir, split="Training", on_error="skip"):
        super().__init__(data_dir, split, on_error)
        self.usage = _csv_split(split)
        if not os.path.isfile(self.data_dir):
            raise ValueError(f"FER2013 CSV file {self.data_dir} not found. Expected {self.layout}.")

    def _columns(self, header: list[str]) -> dict[str, int]:
        stripped = [h.strip().lstrip("\ufeff") for h in header]
        if not all(c in stripped for c in CSV_COLUMNS):
            raise ValueError(
                f"{self.data_dir}: unexpected CSV header {header}. Expected columns {list(CSV_COLUMNS)} "
                "(any order, as in fer2013.csv 'emotion,pixels,Usage' or icml_face_data.csv 'emotion, Usage, pixels')."
            )
        return {c: stripped.index(c) for c in CSV_COLUMNS}

    def _iterate(self):
        with open(self.data_dir, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{self.data_dir}: empty file. Expected {self.layout}.")
            cols = self._columns(header)
            width = max(cols.values()) + 1
            for row_index, row in enumerate(reader):
                where = f"{self.data_dir}:{reader.line_num}"
                if not row:
                    continue
                if len(row) < width:
                    self.skip_or_raise(f"row has {len(row)} fields, expected {len(header)}", where)
                    continue
                usage = row[cols["Usage"]].strip()
                if self.usage is not None and usage != self.usage:
                    continue
                example = self._parse(row, cols, where, usage, row_index)
                if example is not None:
                    yield example

    def _parse(self, row, cols, where, usage, row_index):
        try:
            label = int(row[cols["emotion"]].strip())
        except ValueError:
            label = -1
        if not 0 <= label < len(BASIC7):
            self.skip_or_raise(f"bad label {row[cols['emotion']].strip()!r} (expected 0..6)", where)
            return None
        try:
            pixels = np.array(row[cols["pixels"]].split(), dtype=np.int64)
        except ValueError as error:
            self.skip_or_raise("pixel string is not integers", where, error)
            return None
        if pixels.size != SIDE * SIDE:
            self.skip_or_raise(f"pixel string has {pixels.size} values, expected {SIDE * SIDE} (48x48)", where)
            return None
        if pixels.min() < 0 or pixels.max() > 255:
            self.skip_or_raise("pixel values outside 0..255", where)
            return None
        image = pixels.astype(np.uint8).reshape(SIDE, SIDE, 1)
        return Example(image, label, {"path": where, "split": usage, "row": row_index})


class FER2013Folders(FileDataset):
    """FER2013 as per-class PNG folders.

    Layout: ``<data_dir>/<split>/<emotion>/*.png`` with split ``train`` | ``val`` | ``test``
    (aliases: training, valid/validation/PublicTest, PrivateTest) and emotion folders
    ``angry disgust fear happy neutral sad surprise`` (any spelling ``canonical_name``
    accepts, e.g. ``anger``, ``sadness``). Targets are BASIC7 ids.

    Args:
        allow_missing_classes: accept a split without some class folder (otherwise a
            ValueError names the folder and lists the expected names).
        channels: 1 (default, FER2013 is grayscale), 3 or None.
    """

    name = "fer2013"
    class_names = BASIC7
    framing = "fer2013_box"  # cropped around a face detector's box, not landmark-aligned
    layout = "<data_dir>/{train,val,test}/{angry,disgust,fear,happy,neutral,sad,surprise}/*.png"

    def __init__(self, data_dir, split="train", on_error="skip", allow_missing_classes=False, channels=1):
        super().__init__(data_dir, split, on_error)
        key = str(split).strip().lower()
        if key not in _FOLDER_ALIASES:
            raise ValueError(f"Unknown FER2013 split {split!r}. Expected one of {FOLDER_SPLITS}.")
        self.split = _FOLDER_ALIASES[key]
        self.root = os.path.join(self.data_dir, self.split)
        if not os.path.isdir(self.root):
            present = sorted(e for e in os.listdir(self.data_dir)) if os.path.isdir(self.data_dir) else []
            raise ValueError(
                f"FER2013 split folder {self.root} not found (found {present} in {self.data_dir}). "
                f"Expected layout {self.layout}."
            )
        self.allow_missing_classes = allow_missing_classes
        self.channels = channels

    def _records(self) -> list[Record]:
        folders = scan_class_folders(self.root, BASIC7, canonical_name, self.allow_missing_classes)
        out = []
        for folder, name in sorted(folders.items(), key=lambda kv: BASIC7.index(kv[1])):
            target = BASIC7.index(name)
            for path in list_images(folder):
                out.append(Record(path, target, {"path": path, "split": self.split}))
        return out
