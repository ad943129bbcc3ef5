"""RAF-DB basic emotions (Li, Deng, Du, "Reliable Crowdsourcing and Deep Locality-Preserving
Learning for Expression Recognition in the Wild", CVPR 2017; whdeng.cn/RAF).

Layout of the basic-emotion release::

    <data_dir>/EmoLabel/list_patition_label.txt      lines "train_00001.jpg 5" (sic: "patition")
    <data_dir>/Image/aligned/train_00001_aligned.jpg  100x100 aligned faces (aligned=True)
    <data_dir>/Image/original/train_00001.jpg         original photos (aligned=False)

Labels 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral, mapped to BASIC7.
The split (train | test) is the file-name prefix.
"""

from __future__ import annotations

import os

from pipelines.datasets.base import FileDataset, Record
from pipelines.labels import BASIC7, canonical_name

RAF_LABELS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # ids 1..7
RAF_TO_BASIC7 = {i + 1: BASIC7.index(canonical_name(n)) for i, n in enumerate(RAF_LABELS)}
SPLITS = ("train", "test")


class RAFDB(FileDataset):
    """RAF-DB basic (see module docstring). Targets are BASIC7 ids; RGB images (channels=3 default)."""

    name = "rafdb"
    class_names = BASIC7
    layout = "<data_dir>/EmoLabel/list_patition_label.txt + <data_dir>/Image/{aligned,original}/*.jpg"

    def __init__(self, data_dir, split="train", on_error="skip", aligned=True, channels=3):
        super().__init__(data_dir, split, on_error)
        if split not in SPLITS:
            raise ValueError(f"Unknown RAF-DB split {split!r}. Expected one of {SPLITS}.")
        self.label_file = os.path.join(self.data_dir, "EmoLabel", "list_patition_label.txt")
        if not os.path.isfile(self.label_file):
            raise ValueError(f"RAF-DB label file {self.label_file} not found. Expected layout {self.layout}.")
        self.aligned = aligned
        self.image_dir = os.path.join(self.data_dir, "Image", "aligned" if aligned else "original")
        if not os.path.isdir(self.image_dir):
            raise ValueError(f"RAF-DB image folder {self.image_dir} not found. Expected layout {self.layout}.")
        self.channels = channels

    def image_path(self, name: str) -> str:
        if self.aligned:
            stem, _ = os.path.splitext(name)
            return os.path.join(self.image_dir, f"{stem}_aligned.jpg")
        return os.path.join(self.image_dir, name)

    def _records(self) -> list[Record]:
        out = []
        with open(self.label_file, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                where = f"{self.label_file}:{line_number}"
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAF_TO_BASIC7:
                    self.skip_or_raise("bad label line (expected '<name>.jpg <1..7>')", where)
                    continue
                name, label = parts[0], int(parts[1])
                split = name.split("_", 1)[0]
                if split not in SPLITS:
                    self.skip_or_raise(f"file name {name!r} has no train_/test_ prefix", where)
                    continue
                if split != self.split:
                    continue
                path = self.image_path(name)
                out.append(Record(path, RAF_TO_BASIC7[label], {"path": path, "split": split, "name": name,
                                                                "raf_label": label}))
        return out
