"""Data set adapters and their registry: ``open_dataset(name, data_dir, split, ...)``."""

from __future__ import annotations

import importlib
import os

from pipelines.datasets.arrays import LoadedArrays, load_arrays
from pipelines.datasets.base import Example, FerDataset, SkipReport

# name -> (module, class, fixed options). Modules are imported on use, so an adapter file
# that does not exist yet (demo) breaks only its own name.
_REGISTRY: dict[str, tuple[str, str, dict]] = {
    "fer2013": ("pipelines.datasets.fer2013", "FER2013Folders", {}),
    "fer2013_csv": ("pipelines.datasets.fer2013", "FER2013Csv", {}),
    "ferplus": ("pipelines.datasets.ferplus", "FERPlus", {}),
    "rafdb": ("pipelines.datasets.rafdb", "RAFDB", {}),
    "affectnet7": ("pipelines.datasets.affectnet", "AffectNet", {"num_classes": 7}),
    "affectnet8": ("pipelines.datasets.affectnet", "AffectNet", {"num_classes": 8}),
    "ckplus": ("pipelines.datasets.ckplus", "CKPlus", {}),
    "jaffe": ("pipelines.datasets.jaffe", "JAFFE", {}),
    "folder": ("pipelines.datasets.class_folder", "ClassFolder", {}),
    "demo": ("pipelines.datasets.demo", "DemoFaces", {}),
    "cache": ("pipelines.datasets.cache", "PreprocessedCache", {}),
}


def dataset_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def open_dataset(name: str, data_dir, split, on_error: str = "skip", **options) -> FerDataset:
    """Open a registered adapter.

    ``"fer2013"`` reads the class folders, or the Kaggle CSV when ``data_dir`` is a ``.csv``
    file. Extra ``options`` go to the adapter (e.g. ``label_mode`` for ferplus).

    Raises:
        ValueError: unknown name (lists the known ones) or the adapter's own checks.
    """
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"Unknown data set {name!r}. Known data sets: {list(_REGISTRY)}.")
    if key == "fer2013" and data_dir is not None and str(data_dir).lower().endswith(".csv") and os.path.isfile(data_dir):
        key = "fer2013_csv"
    module_name, class_name, fixed = _REGISTRY[key]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(data_dir=data_dir, split=split, on_error=on_error, **fixed, **options)


def load_split(name: str, data_dir, split: str, spec, label_mode: str | None = None, limit: int | None = None, progress: bool = True) -> LoadedArrays:
    """One split of a data set as arrays shaped for a model's ``InputSpec`` (its
    ``source_size`` and ``channels``): what the training and evaluation CLIs load.
    ``label_mode`` goes to adapters that have one (FER+)."""
    options = {"label_mode": label_mode} if label_mode else {}
    return load_arrays(open_dataset(name, data_dir, split, **options), image_size=spec.source_size, channels=spec.channels, limit=limit, progress=progress)


__all__ = ["Example", "FerDataset", "LoadedArrays", "SkipReport", "dataset_names", "load_arrays", "load_split", "open_dataset"]
