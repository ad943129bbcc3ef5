"""JAFFE (Lyons, Akamatsu, Kamachi, Gyoba, "Coding Facial Expressions with Gabor Wavelets",
IEEE FG 1998): 213 grayscale 256x256 TIFF images of 10 Japanese female subjects, one folder::

    <data_dir>/KA.AN1.39.tiff    subject KA, expression AN, take 1, image index 39

Expression codes AN DI FE HA NE SA SU map to angry disgust fear happy neutral sad surprise
(BASIC7). ``meta["subject"]`` is the two-letter subject code. There are no predefined
splits: ``split="all"`` is every image; ``"train"`` / ``"val"`` are the seeded, stratified,
subject-independent hold-out of ``pipelines.datasets.holdout`` (5 subject folds, one is
``val``: 2 of the 10 subjects); for cross-validation use
``pipelines.datasets.ckplus.subject_folds`` on the subjects.
Files that are not ``.tif``/``.tiff`` (README etc.) are ignored; TIFFs whose names do not
follow the pattern go through ``skip_or_raise``.
"""

from __future__ import annotations

import os
import re

from pipelines.datasets.base import FileDataset, Record
from pipelines.datasets.holdout import SEED, VAL_FRACTION, check_holdout_split, select_split
from pipelines.labels import BASIC7

CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise"}
NAME_RE = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)\.tiff?$", re.IGNORECASE)


class JAFFE(FileDataset):
    """JAFFE TIFFs in one folder (see module docstring).

    Args:
        data_dir: the folder of the TIFFs.
        split: ``"all"`` (default), or ``"train"`` / ``"val"`` of the subject-independent hold-out.
        on_error: ``"skip"`` or ``"raise"``.
        channels: 1 (default), 3 or None.
        val_fraction: share of the subject folds held out as ``val``.
        seed: seed of the hold-out.
    """

    name = "jaffe"
    class_names = BASIC7
    layout = "<data_dir>/<SUBJECT>.<CODE><take>.<index>.tiff"

    def __init__(self, data_dir, split="all", on_error="skip", channels=1, val_fraction=VAL_FRACTION, seed=SEED):
        super().__init__(data_dir, split, on_error)
        self.split = check_holdout_split(split, "JAFFE")
        if not os.path.isdir(self.data_dir):
            raise ValueError(f"JAFFE folder {self.data_dir} not found. Expected layout {self.layout}.")
        self.channels = channels
        self.val_fraction = val_fraction
        self.seed = seed

    def _records(self) -> list[Record]:
        return select_split(self._all_records(), self.split, self.data_dir, self.val_fraction, self.seed)

    def _all_records(self) -> list[Record]:
        out = []
        for name in sorted(os.listdir(self.data_dir)):
            if not name.lower().endswith((".tif", ".tiff")):
                continue
            path = os.path.join(self.data_dir, name)
            match = NAME_RE.match(name)
            code = match.group(2).upper() if match else None
            if code not in CODES:
                self.skip_or_raise("file name is not <SUBJECT>.<AN|DI|FE|HA|NE|SA|SU><n>.<index>.tiff", path)
                continue
            meta = {"path": path, "split": self.split, "subject": match.group(1).upper(),
                    "take": int(match.group(3)), "index": int(match.group(4))}
            out.append(Record(path, BASIC7.index(CODES[code]), meta))
        return out
