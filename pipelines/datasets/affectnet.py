"""AffectNet, manually annotated part (Mollahosseini, Hasani, Mahoor, "AffectNet: A Database
for Facial Expression, Valence, and Arousal Computing in the Wild", IEEE Trans. Affective
Computing 2017).

Layout::

    <data_dir>/training.csv | validation.csv   header: subDirectory_filePath,face_x,face_y,
        face_width,face_height,facial_landmarks,expression,valence,arousal
    <data_dir>/Manually_Annotated_Images/<subDirectory_filePath>

expression: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt,
8 None, 9 Uncertain, 10 Non-Face. ``num_classes=7`` keeps 0-6 (BASIC7), ``8`` keeps 0-7
(BASIC8); the others are counted in ``skipped`` as "not in label space" (not errors).
meta: ``box`` (x, y, w, h), ``landmarks`` float32 [68, 2] (from the ';'-separated
x1;y1;x2;y2... string), ``valence``, ``arousal``. ``crop_face=True`` crops to the box.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from pipelines.datasets.base import FileDataset, Record
from pipelines.labels import canonical_name, class_space

AFFECTNET_LABELS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt",
                    "none", "uncertain", "non-face")
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")
CSV_FILES = {"train": "training.csv", "training": "training.csv", "val": "validation.csv",
             "valid": "validation.csv", "validation": "validation.csv"}
NOT_IN_SPACE = "not in label space"


def parse_landmarks(text: str) -> np.ndarray:
    values = [float(v) for v in text.strip().strip(";").split(";") if v.strip()]
    if len(values) != 136:
        raise ValueError(f"{len(values)} landmark values, expected 136 (68 x,y pairs)")
    return np.asarray(values, dtype=np.float32).reshape(68, 2)


class AffectNet(FileDataset):
    """AffectNet manual annotations (see module docstring). Split train | val (validation.csv)."""

    name = "affectnet"
    layout = "<data_dir>/{training,validation}.csv + <data_dir>/Manually_Annotated_Images/<subDirectory_filePath>"

    def __init__(self, data_dir, split="train", on_error="skip", num_classes=7, crop_face=False, channels=3):
        super().__init__(data_dir, split, on_error)
        if split not in CSV_FILES:
            raise ValueError(f"Unknown AffectNet split {split!r}. Expected 'train' or 'val'.")
        self.class_names = class_space(num_classes)
        self.mapping = {i: self.class_names.index(canonical_name(n)) for i, n in enumerate(AFFECTNET_LABELS[:num_classes])}
        self.csv_path = os.path.join(self.data_dir, CSV_FILES[split])
        if not os.path.isfile(self.csv_path):
            raise ValueError(f"AffectNet annotation file {self.csv_path} not found. Expected layout {self.layout}.")
        self.image_dir = os.path.join(self.data_dir, "Manually_Annotated_Images")
        self.crop_face = crop_face
        self.channels = channels

    def _records(self) -> list[Record]:
        out = []
        with open(self.csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not all(c in header for c in COLUMNS):
                raise ValueError(f"{self.csv_path}: unexpected header {header}. Expected columns {list(COLUMNS)}.")
            col = {c: header.index(c) for c in COLUMNS}
            for row in reader:
                where = f"{self.csv_path}:{reader.line_num}"
                if not row:
                    continue
                try:
                    expression = int(row[col["expression"]])
                    if not 0 <= expression < len(AFFECTNET_LABELS):
                        raise ValueError(f"expression {expression} outside 0..10")
                    box = tuple(int(float(row[col[c]])) for c in ("face_x", "face_y", "face_width", "face_height"))
                    landmarks = parse_landmarks(row[col["facial_landmarks"]])
                    valence, arousal = float(row[col["valence"]]), float(row[col["arousal"]])
                except (ValueError, IndexError) as error:
                    self.skip_or_raise(f"bad annotation row ({error})", where, error)
                    continue
                path = os.path.join(self.image_dir, row[col["subDirectory_filePath"]].strip())
                if expression not in self.mapping:
                    self.skipped.add(NOT_IN_SPACE, path)
                    continue
                meta = {"path": path, "split": self.split, "box": box, "landmarks": landmarks,
                        "valence": valence, "arousal": arousal, "expression": expression}
                out.append(Record(path, self.mapping[expression], meta))
        return out

    def transform(self, image, record):
        if not self.crop_face:
            return image
        x, y, w, h = record.meta["box"]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
        if x1 <= x0 or y1 <= y0:
            return image
        return image[y0:y1, x0:x1]
