"""Generic ``<data_dir>[/<split>]/<class>/<image>`` layout, and the folder scan other adapters share.

Splits of a class folder: when ``<data_dir>/<split>`` exists it is that split. A folder with
the class folders directly inside (no ``train``/``val``/``test``-like sub-folder) is one
split: ``split=None``/``"all"`` reads all of it, and ``"train"`` / ``"val"`` are the seeded,
stratified 80/20 hold-out of ``pipelines.datasets.holdout`` (what ``fer_keras.train
--dataset=folder`` uses; ``fer_keras.evaluate`` evaluates all of it by default).
"""

from __future__ import annotations

import os
from typing import Sequence

from pipelines.datasets.base import FileDataset, Record
from pipelines.datasets.holdout import HOLDOUT_SPLITS, SEED, VAL_FRACTION, WHOLE_SPLITS, select_split
from pipelines.labels import BASIC7, BASIC8, SYNONYMS, canonical_name

# Sub-folder names taken as splits, not classes (case-insensitive).
SPLIT_FOLDER_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm")


def list_images(folder: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Sorted image files of one folder (by extension, case-insensitive; hidden files ignored)."""
    names = [
        n for n in os.listdir(folder)
        if not n.startswith(".") and n.lower().endswith(tuple(extensions)) and os.path.isfile(os.path.join(folder, n))
    ]
    return [os.path.join(folder, n) for n in sorted(names)]


def scan_class_folders(
    root: str,
    class_names: Sequence[str],
    folder_to_class,
    allow_missing_classes: bool = False,
    expected_names: Sequence[str] | None = None,
) -> dict[str, str]:
    """Map each class folder under ``root`` to its class name.

    Args:
        root: folder holding one sub-folder per class.
        class_names: the class list of the data set.
        folder_to_class: callable folder name -> class name (raises ValueError when unknown).
        allow_missing_classes: tolerate classes without a folder.
        expected_names: folder names to list in error messages (defaults to class_names).

    Returns: ``{folder path: class name}``.

    Raises:
        ValueError: ``root`` missing, a folder that is no known class, or a missing class.
    """
    expected = list(expected_names or class_names)
    if not os.path.isdir(root):
        raise ValueError(f"Folder {root} not found. Expected class folders {expected} inside it.")
    folders: dict[str, str] = {}
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith(".") or not os.path.isdir(path):
            continue
        try:
            name = folder_to_class(entry)
        except ValueError:
            name = None
        if name not in class_names:
            raise ValueError(f"Unknown class folder {path}. Expected class folders named {expected}.")
        if name in folders.values():
            raise ValueError(f"Two folders under {root} map to class {name!r} (second: {path}).")
        folders[path] = name
    missing = [c for c in class_names if c not in folders.values()]
    if missing and not allow_missing_classes:
        raise ValueError(
            f"Missing class folder(s) {missing} in {root}. Expected class folders named {expected} "
            "(pass allow_missing_classes=True to accept absent classes)."
        )
    if not folders:
        raise ValueError(f"No class folders in {root}. Expected class folders named {expected}.")
    return folders


def has_class_folders_directly(data_dir: str) -> bool:
    """Whether ``data_dir`` holds class folders itself: it has sub-folders and none is named
    like a split (``SPLIT_FOLDER_NAMES``)."""
    if not data_dir or not os.path.isdir(data_dir):
        return False
    entries = [e for e in os.listdir(data_dir) if not e.startswith(".") and os.path.isdir(os.path.join(data_dir, e))]
    return bool(entries) and not any(e.lower() in SPLIT_FOLDER_NAMES for e in entries)


def infer_classes(root: str) -> tuple[str, ...]:
    """Canonical space (BASIC7, or BASIC8 with contempt) when every folder is an emotion, else sorted folder names."""
    entries = sorted(e for e in os.listdir(root) if not e.startswith(".") and os.path.isdir(os.path.join(root, e)))
    if entries and all(e.strip().lower() in SYNONYMS for e in entries):
        names = {canonical_name(e) for e in entries}
        return BASIC8 if "contempt" in names else BASIC7
    return tuple(entries)


class ClassFolder(FileDataset):
    """Any ``<data_dir>/<class>/*.<image>`` layout (or ``<data_dir>/<split>/<class>/*``).

    Args:
        data_dir: root folder.
        split: sub-folder holding the class folders, or None / "" / "all" for none. When
            ``<data_dir>/<split>`` does not exist and ``data_dir`` holds the class folders
            directly, ``"train"`` / ``"val"`` are the seeded, stratified hold-out of
            ``pipelines.datasets.holdout`` (no subjects known: per image).
        classes: class list (targets are indices into it). Folder names match a class
            exactly or by canonical emotion name (``sadness`` -> ``sad``). When None, the
            classes are inferred: the canonical space (BASIC7, BASIC8 if there is a
            ``contempt`` folder) when every folder is an emotion name, else the sorted
            folder names as user classes.
        allow_missing_classes: accept classes without a folder (inferred canonical
            spaces always allow it).
        channels: 1, 3 or None (keep).
        val_fraction: share of the images held out as ``val`` by the hold-out.
        seed: seed of the hold-out.
    """

    name = "folder"
    layout = "<data_dir>[/<split>]/<class>/*.png|jpg|..."

    def __init__(self, data_dir, split=None, on_error="skip", classes=None, allow_missing_classes=False, channels=None,
                 val_fraction=VAL_FRACTION, seed=SEED):
        super().__init__(data_dir, split or "all", on_error)
        self.root, self.holdout = self._resolve_root(split)
        inferred = classes is None
        self.class_names = tuple(classes) if classes is not None else infer_classes(self.root)
        self.allow_missing_classes = allow_missing_classes or (inferred and self.class_names in (BASIC7, BASIC8))
        self.channels = channels
        self.val_fraction = val_fraction
        self.seed = seed

    def _resolve_root(self, split) -> tuple[str, bool]:
        """``(folder of the class folders, whether the hold-out rule picks the split)``."""
        if split in WHOLE_SPLITS:
            if not os.path.isdir(self.data_dir):
                raise ValueError(f"Folder {self.data_dir} not found. Expected layout {self.layout}.")
            return self.data_dir, False
        candidate = os.path.join(self.data_dir, split)
        if os.path.isdir(candidate):
            return candidate, False
        if split in HOLDOUT_SPLITS and has_class_folders_directly(self.data_dir):
            return self.data_dir, True
        raise ValueError(
            f"Folder {candidate} not found. Expected layout {self.layout}: split folders holding class folders, or "
            f"class folders directly in {self.data_dir} (one split: pass split='all', or 'train' / 'val' for the seeded hold-out)."
        )

    def _folder_to_class(self, folder: str) -> str:
        if folder in self.class_names:
            return folder
        name = canonical_name(folder)
        if name in self.class_names:
            return name
        raise ValueError(folder)

    def _records(self) -> list[Record]:
        folders = scan_class_folders(self.root, self.class_names, self._folder_to_class, self.allow_missing_classes)
        out = []
        for folder, name in folders.items():
            target = self.class_names.index(name)
            for path in list_images(folder):
                out.append(Record(path, target, {"path": path, "split": self.split, "class_name": name}))
        if self.holdout:
            return select_split(out, self.split, self.root, self.val_fraction, self.seed, group_key=None)
        return out
