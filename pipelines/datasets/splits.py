"""Default (training, validation) split names of each data set adapter.

CK+, JAFFE and a class folder without split sub-folders have no predefined splits: their
``train`` / ``val`` are the seeded, stratified, subject-independent hold-out of
``pipelines.datasets.holdout``.
"""

import os

DEFAULT_SPLITS: dict[str, tuple[str, str]] = {
    "demo": ("train", "val"),
    "fer2013": ("train", "val"),
    "fer2013_csv": ("Training", "PublicTest"),
    "ferplus": ("train", "valid"),
    "rafdb": ("train", "test"),
    "affectnet7": ("train", "val"),
    "affectnet8": ("train", "val"),
    # No predefined splits: the hold-out of pipelines.datasets.holdout.
    "ckplus": ("train", "val"),
    "jaffe": ("train", "val"),
    "folder": ("train", "val"),
}


def default_splits(dataset: str) -> tuple[str, str]:
    """``(train, val)`` split names for ``dataset``; ``("train", "val")`` when it has no entry."""
    return DEFAULT_SPLITS.get(dataset, ("train", "val"))


def evaluation_split(dataset: str, data_dir) -> str:
    """The split ``fer_keras.evaluate`` scores when no ``--split`` is given.

    The data set's validation split, except for a ``folder`` that holds its class folders
    directly (``<data_dir>/<class>/*``, no ``val`` folder): that folder is one split and all
    of it (``"all"``) is evaluated.
    """
    if dataset == "folder" and data_dir and not os.path.isdir(os.path.join(data_dir, "val")):
        from pipelines.datasets.class_folder import has_class_folders_directly

        if has_class_folders_directly(data_dir):
            return "all"
    return default_splits(dataset)[1]
