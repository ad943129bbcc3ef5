"""Default (training, validation) split names of each data set adapter."""

DEFAULT_SPLITS: dict[str, tuple[str, str]] = {
    "demo": ("train", "val"),
    "fer2013": ("train", "val"),
    "fer2013_csv": ("Training", "PublicTest"),
    "ferplus": ("train", "valid"),
    "rafdb": ("train", "test"),
    "affectnet7": ("train", "val"),
    "affectnet8": ("train", "val"),
}


def default_splits(dataset: str) -> tuple[str, str]:
    """``(train, val)`` split names for ``dataset``; ``("train", "val")`` when it has no entry."""
    return DEFAULT_SPLITS.get(dataset, ("train", "val"))
