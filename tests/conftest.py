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
