"""Generic ``<data_dir>[/<split>]/<class>/<image>`` layout, and the folder scan other adapters share."""

from __future__ import annotations

import os
from typing import Sequence

from pipelines.datasets.base import FileDataset, Record
from pipelines.labels import BASIC7, BASIC8, SYNONYMS, canonical_name

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
        split: sub-folder holding the class folders, or None / "" / "all" for none.
        classes: class list (targets are indices into it). Folder names match a class
            exactly or by canonical emotion name (``sadness`` -> ``sad``). When None, the
            classes are inferred: the canonical space (BASIC7, BASIC8 if there is a
            ``contempt`` folder) when every folder is an emotion name, else the sorted
            folder names as user classes.
        allow_missing_classes: accept classes without a folder (inferred canonical
            spaces always allow it).
        channels: 1, 3 or None (keep).
    """

    name = "folder"
    layout = "<data_dir>[/<split>]/<class>/*.png|jpg|..."

    def __init__(self, data_dir, split=None, on_error="skip", classes=None, allow_missing_classes=False, channels=None):
        super().__init__(data_dir, split or "all", on_error)
        self.root = self.data_dir if split in (None, "", "all") else os.path.join(self.data_dir, split)
        if not os.path.isdir(self.root):
            raise ValueError(f"Folder {self.root} not found. Expected layout {self.layout}.")
        inferred = classes is None
        self.class_names = tuple(classes) if classes is not None else infer_classes(self.root)
        self.allow_missing_classes = allow_missing_classes or (inferred and self.class_names in (BASIC7, BASIC8))
        self.channels = channels

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
        return out
