"""Shared fixtures. Real data comes from ``../shared`` through ``shared_dir`` only.

Override the location with ``FER_KERAS_SHARED=/path/to/shared``. Under ``CI=true`` a
missing data set fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_DEFAULT_SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def _require(path: pathlib.Path, what: str) -> pathlib.Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set FER_KERAS_SHARED to the shared folder)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    return _require(pathlib.Path(os.environ.get("FER_KERAS_SHARED", _DEFAULT_SHARED)), "shared folder")


@pytest.fixture(scope="session")
def fer2013_dir(shared_dir) -> pathlib.Path:
    return _require(shared_dir / "datasets" / "fer2013", "FER2013 folders")


@pytest.fixture(scope="session")
def ferplus_dir(shared_dir) -> pathlib.Path:
    return _require(shared_dir / "datasets" / "ferplus", "FER+ folders")


@pytest.fixture(scope="session")
def faces_dir(shared_dir) -> pathlib.Path:
    return _require(shared_dir / "faces", "real face photos")


@pytest.fixture(scope="session")
def fer_train_subset(fer2013_dir):
    """2,000 real FER2013 training images (a seeded subset spanning every class)."""
    from pipelines.datasets import load_arrays, open_dataset

    return load_arrays(open_dataset("fer2013", str(fer2013_dir), "train"), limit=2000, progress=False)


@pytest.fixture(scope="session")
def fer_val_subset(fer2013_dir):
    """300 real FER2013 validation images."""
    from pipelines.datasets import load_arrays, open_dataset

    return load_arrays(open_dataset("fer2013", str(fer2013_dir), "val"), limit=300, progress=False)


@pytest.fixture(scope="session")
def tiny_baseline(fer_train_subset):
    """``(model, spec)``: a narrow baseline trained 3 epochs on ``fer_train_subset``."""
    from tests.tiny_models import train_tiny_baseline

    return train_tiny_baseline(fer_train_subset.images, fer_train_subset.targets, fer_train_subset.class_names, epochs=3)
