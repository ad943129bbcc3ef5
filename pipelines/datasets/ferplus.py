"""FER+ (Barsoum, Zhang, Canton Ferrer, Zhang, "Training Deep Networks for Facial Expression
Recognition with Crowd-Sourced Label Distribution", ICMI 2016; github.com/microsoft/FERPlus):
the FER2013 images relabelled by 10 annotators.

Layout (as Microsoft's ``generate_training_data.py`` writes it)::

    <data_dir>/FER2013Train/label.csv + fer*.png
    <data_dir>/FER2013Valid/label.csv + fer*.png
    <data_dir>/FER2013Test/label.csv  + fer*.png

``label.csv`` has no header; each row is ``image name, "(x, y, w, h)", 10 vote counts`` in the
order neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
Votes are mapped into the canonical BASIC8 order (angry disgust fear happy sad surprise
neutral contempt). ``meta["votes"]`` keeps the 10 raw counts in CSV order, ``meta["box"]``
the face box.

Label modes and the choices made (Barsoum et al. 2016, section 3, and the FERPlus tooling):

* ``majority`` -> int target. Two rules (``majority_rule``):

  - ``"plurality"`` (default; the "usual protocol" of 8 classes on the majority vote):
    the label is the emotion with the most raw votes. The image is dropped when unknown
    or NF reaches the maximum over all 10 columns (ties with an emotion included), and
    when two or more emotions tie for the maximum (no single majority label; the FERPlus
    tooling drops these too). Reasons: ``"unknown/NF majority"``, ``"tied majority"``.
  - ``"strict"`` (exactly the FERPlus tooling's majority mode): single votes are removed
    first (counts <= 1 set to 0, their outlier removal), then the top emotion must hold
    more than half of the remaining votes; otherwise the image is dropped (as
    ``"no majority"``); unknown/NF winners are dropped as ``"unknown/NF majority"``.

* ``probability`` and ``crossentropy`` -> ``float32 [8]`` distribution: the 8 emotion votes
  after outlier removal (counts <= 1 set to 0, as the tooling does; ``drop_single_votes``
  turns it off) normalised to sum 1. Both modes return the same distribution; they differ
  in the loss: ``crossentropy`` (CEL in the paper) trains with cross-entropy against the
  full distribution, ``probability`` (PLD, probabilistic label drawing) draws a one-hot
  label from it at each epoch (``pipelines.input.draw_labels``). We do not apply the tooling's
  extra "top-3 emotions covering 75% of the votes" truncation. Images whose unknown/NF
  count reaches the maximum over all 10 columns (after outlier removal) are dropped, and
  so are images left with no emotion vote.
* ``multi_target`` -> multi-hot ``float32 [8]``: as the tooling, emotions with votes >=
  ``multi_target_threshold`` (0.3) x all votes (after outlier removal); the image is
  dropped when the selected emotions hold <= 50% of the votes or unknown/NF reaches the
  maximum. The tooling's epsilon smoothing belongs in the loss, not here.

Dropped images are counted in ``dataset.skipped`` (by reason) in both on_error modes;
they are a labelling protocol, not errors.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from pipelines.datasets.base import FileDataset, Record
from pipelines.labels import BASIC8, canonical_name

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# Index into BASIC8 of each of the 8 emotion vote columns.
VOTE_TO_BASIC8 = np.array([BASIC8.index(canonical_name(c)) for c in VOTE_COLUMNS[:8]])
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "val": "FER2013Valid", "test": "FER2013Test"}
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
MAJORITY_RULES = ("plurality", "strict")

DROP_UNKNOWN = "unknown/NF majority"
DROP_TIE = "tied majority"
DROP_NO_MAJORITY = "no majority"
DROP_NO_EMOTION = "no emotion votes"


def votes_to_basic8(votes) -> np.ndarray:
    """The 8 emotion counts of a 10-vote row (CSV order) in BASIC8 order."""
    out = np.zeros(len(BASIC8), dtype=np.float32)
    out[VOTE_TO_BASIC8] = np.asarray(votes, dtype=np.float32)[:8]
    return out


# What each label mode's targets are (``LoadedArrays.target_kind``): PLD ("probability")
# keeps the distribution and the training pipeline draws a class id from it every epoch
# (``pipelines.input.draw_labels``).
TARGET_KINDS = {"majority": "labels", "probability": "sampled", "crossentropy": "distribution", "multi_target": "multi_hot"}


def ferplus_target(votes, label_mode="majority", majority_rule="plurality", drop_single_votes=True,
                   multi_target_threshold=0.3):
    """Target of one vote row (10 counts, CSV order) -> ``(target, None)`` or ``(None, drop reason)``."""
    raw = np.asarray(votes, dtype=np.float64)
    if label_mode == "majority":
        if majority_rule == "plurality":
            top = np.flatnonzero(raw == raw.max())
            if raw.max() <= 0 or np.any(top >= 8):
                return None, DROP_UNKNOWN
            if len(top) > 1:
                return None, DROP_TIE
            return int(VOTE_TO_BASIC8[top[0]]), None
        cleaned = np.where(raw <= 1, 0.0, raw)
        if cleaned.max() <= 0.5 * cleaned.sum():
            return None, DROP_NO_MAJORITY
        winner = int(np.argmax(cleaned))
        if winner >= 8:
            return None, DROP_UNKNOWN
        return int(VOTE_TO_BASIC8[winner]), None
    cleaned = np.where(raw <= 1, 0.0, raw) if drop_single_votes else raw
    if cleaned.max() <= 0:
        return None, DROP_NO_EMOTION
    if np.any(np.flatnonzero(cleaned == cleaned.max()) >= 8):
        return None, DROP_UNKNOWN
    if label_mode in ("probability", "crossentropy"):
        emotions = votes_to_basic8(cleaned)
        if emotions.sum() <= 0:
            return None, DROP_NO_EMOTION
        return (emotions / emotions.sum()).astype(np.float32), None
    selected = np.where(cleaned >= multi_target_threshold * cleaned.sum(), cleaned, 0.0)
    if selected.sum() <= 0.5 * cleaned.sum():
        return None, DROP_NO_MAJORITY
    return (votes_to_basic8(selected) > 0).astype(np.float32), None


def parse_box(text: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in text.strip().strip("()").split(",")]
    if len(parts) != 4:
        raise ValueError(f"expected (x, y, w, h), got {text!r}")
    return tuple(parts)


class FERPlus(FileDataset):
    """FER+ label.csv + PNG folders (see the module docstring for layout and label modes).

    Args:
        data_dir: folder holding ``FER2013Train``, ``FER2013Valid``, ``FER2013Test``.
        split: ``train`` | ``valid`` (alias ``val``) | ``test``.
        label_mode: ``majority`` | ``probability`` | ``crossentropy`` | ``multi_target``.
        majority_rule: ``plurality`` (default) | ``strict`` (FERPlus tooling).
        drop_single_votes: outlier removal (counts <= 1 -> 0) for the distribution modes.
        channels: 1 (default), 3 or None.
    """

    name = "ferplus"
    class_names = BASIC8
    framing = "fer2013_box"  # cropped around a face detector's box, not landmark-aligned
    layout = "<data_dir>/FER2013{Train,Valid,Test}/label.csv + fer*.png"

    def __init__(self, data_dir, split="train", on_error="skip", label_mode="majority", majority_rule="plurality",
                 drop_single_votes=True, multi_target_threshold=0.3, channels=1):
        super().__init__(data_dir, split, on_error)
        key = str(split).strip().lower()
        if key not in SPLIT_FOLDERS:
            raise ValueError(f"Unknown FER+ split {split!r}. Expected one of ('train', 'valid', 'test') (or 'val').")
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}. Received: label_mode={label_mode!r}")
        if majority_rule not in MAJORITY_RULES:
            raise ValueError(f"majority_rule must be one of {MAJORITY_RULES}. Received: {majority_rule!r}")
        self.split = "valid" if key == "val" else key
        self.folder = os.path.join(self.data_dir, SPLIT_FOLDERS[key])
        self.label_csv = os.path.join(self.folder, "label.csv")
        if not os.path.isfile(self.label_csv):
            raise ValueError(f"FER+ label file {self.label_csv} not found. Expected layout {self.layout}.")
        self.label_mode = label_mode
        self.target_kind = TARGET_KINDS[label_mode]
        self.majority_rule = majority_rule
        self.drop_single_votes = drop_single_votes
        self.multi_target_threshold = multi_target_threshold
        self.channels = channels

    def _records(self) -> list[Record]:
        out = []
        with open(self.label_csv, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                where = f"{self.label_csv}:{reader.line_num}"
                if not row or not "".join(row).strip():
                    continue
                try:
                    if len(row) != 12:
                        raise ValueError(f"{len(row)} fields, expected 12 (name, box, 10 votes)")
                    name = row[0].strip()
                    if not name:
                        raise ValueError("empty image name")
                    box = parse_box(row[1])
                    votes = [int(v) for v in row[2:]]
                    if min(votes) < 0:
                        raise ValueError("negative vote count")
                except ValueError as error:
                    self.skip_or_raise(f"bad label row ({error})", where, error)
                    continue
                target, reason = ferplus_target(votes, self.label_mode, self.majority_rule, self.drop_single_votes,
                                                self.multi_target_threshold)
                path = os.path.join(self.folder, name)
                if reason is not None:
                    self.skipped.add(reason, path)
                    continue
                out.append(Record(path, target, {"path": path, "split": self.split, "votes": votes, "box": box}))
        return out
