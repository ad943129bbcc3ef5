"""CK+ (Lucey, Cohn, Kanade, Saragih, Ambadar, Matthews, "The Extended Cohn-Kanade Dataset
(CK+): A complete dataset for action unit and emotion-specified expression", CVPR
Workshops 2010), in the common class-folder form (e.g. CK+48)::

    <data_dir>/<emotion>/S010_004_00000017.png    (subject S010, sequence 004, frame 17)

Emotion folders (anger, contempt, disgust, fear, happy, sadness, surprise, and neutral when
present) map to BASIC8; absent classes are allowed (CK+48 has no neutral folder). The
subject id is parsed into ``meta["subject"]``.

CK+ has no predefined splits: ``split="all"`` is every image; ``"train"`` / ``"val"`` are the
seeded, stratified, subject-independent 80/20 hold-out of ``pipelines.datasets.holdout``
(what ``fer_keras.train --dataset=ckplus`` uses). Use :func:`subject_folds` (or
``python -m fer_keras.cv --dataset=ckplus --train_split=all --group_by=subject``) for
subject-independent cross-validation.
"""

from __future__ import annotations

import os
import re

import numpy as np

from pipelines.datasets.base import FileDataset, Record
from pipelines.datasets.class_folder import list_images, scan_class_folders
from pipelines.datasets.folds import assign_folds
from pipelines.datasets.holdout import SEED, VAL_FRACTION, check_holdout_split, select_split
from pipelines.labels import BASIC8, canonical_name

NAME_RE = re.compile(r"^(S\d+)_(\d+)_(\d+)")


def subject_folds(subjects, k: int, seed: int = 0, targets=None) -> list[np.ndarray]:
    """Split examples into ``k`` subject-independent folds (``pipelines.datasets.folds.assign_folds``:
    scikit-learn's ``StratifiedGroupKFold`` with the subjects as groups).

    Args:
        subjects: one subject id per example (e.g. ``LoadedArrays.meta[i]["subject"]``).
        k: number of folds (<= number of distinct subjects).
        seed: shuffles the subjects before assignment.
        targets: class ids ``[N]`` to stratify on, or None (sizes balanced only).

    Returns: ``k`` sorted int arrays of example indices; every example is in exactly one
    fold and all examples of a subject are in the same fold.
    """
    subjects = list(subjects)
    labels = np.zeros(len(subjects), np.int64) if targets is None else targets
    folds = assign_folds(labels, k, seed, groups=subjects)
    return [np.flatnonzero(folds == f) for f in range(k)]


class CKPlus(FileDataset):
    """CK+ class folders (see module docstring).

    Args:
        data_dir: folder of the emotion folders.
        split: ``"all"`` (default), or ``"train"`` / ``"val"`` of the subject-independent hold-out.
        on_error: ``"skip"`` or ``"raise"``.
        channels: 1, 3 or None (keep).
        val_fraction: share of the subjects' folds held out as ``val`` (0.2: 5 folds, 1 is val).
        seed: seed of the hold-out.
    """

    name = "ckplus"
    class_names = BASIC8
    layout = "<data_dir>/<emotion>/S<subject>_<sequence>_<frame>.png"

    def __init__(self, data_dir, split="all", on_error="skip", channels=None, val_fraction=VAL_FRACTION, seed=SEED):
        super().__init__(data_dir, split, on_error)
        self.split = check_holdout_split(split, "CK+")
        self.channels = channels
        self.val_fraction = val_fraction
        self.seed = seed

    def _records(self) -> list[Record]:
        return select_split(self._all_records(), self.split, self.data_dir, self.val_fraction, self.seed)

    def _all_records(self) -> list[Record]:
        folders = scan_class_folders(self.data_dir, BASIC8, canonical_name, allow_missing_classes=True)
        out = []
        for folder, name in sorted(folders.items(), key=lambda kv: BASIC8.index(kv[1])):
            for path in list_images(folder):
                match = NAME_RE.match(os.path.basename(path))
                if match is None:
                    self.skip_or_raise("file name is not S<subject>_<sequence>_<frame>", path)
                    continue
                meta = {"path": path, "split": self.split, "subject": match.group(1),
                        "sequence": match.group(2), "frame": int(match.group(3))}
                out.append(Record(path, BASIC8.index(name), meta))
        return out
