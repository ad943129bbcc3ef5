"""Adapter over the TFRecord cache written by ``python -m pipelines.preprocess``.

Layout: one cache folder per split, ``<data_dir>/<split>/`` holding ``manifest.json`` and
finished ``shard-*.tfrecord`` files (see ``pipelines.tfrecords``). Train on a cache with
``python -m fer_keras.train --dataset=cache --data_dir=<data_dir>``.
"""

from __future__ import annotations

import glob
import os
from typing import Iterator

from pipelines import tfrecords
from pipelines.datasets.base import Example, FerDataset
from pipelines.preprocess import split_command


class PreprocessedCache(FerDataset):
    """Aligned faces, landmarks and labels from a preprocessing cache.

    Examples carry ``meta`` ``path`` (the source image), ``landmarks`` ([5, 2] in face
    pixels), ``detected`` (0: no face found, the image was taken as already aligned) and
    ``confidence``.
    """

    name = "cache"

    def __init__(self, data_dir: str, split: str, on_error: str = "skip"):
        super().__init__(data_dir, split, on_error)
        self.cache_dir = os.path.join(self.data_dir, split)
        if not os.path.isfile(os.path.join(self.cache_dir, tfrecords.MANIFEST)):
            raise ValueError(f"{self.cache_dir}: no {tfrecords.MANIFEST}. Cache the {split} split with: {self._missing_split_command()}")
        self.manifest = tfrecords.read_manifest(self.cache_dir)
        self.class_names = tuple(self.manifest["class_names"])

    def _missing_split_command(self) -> str:
        """``python -m pipelines.preprocess`` for this split, with a sibling split's settings."""
        siblings = sorted(glob.glob(os.path.join(self.data_dir, "*", tfrecords.MANIFEST)))
        if not siblings:
            return f"python -m pipelines.preprocess --dataset=<name> --data_dir=<data set> --split={self.split} --output_dir={self.data_dir}"
        return split_command(tfrecords.read_manifest(os.path.dirname(siblings[0])), self.split, self.data_dir)

    def _iterate(self) -> Iterator[Example]:
        for record in tfrecords.read_shards(self.cache_dir, with_meta=True).as_numpy_iterator():
            label = record["label"]
            target = int(label) if label.ndim == 0 else label
            meta = {
                "path": record["path"].decode(),
                "split": self.split,
                "landmarks": record["landmarks"],
                "detected": int(record["detected"]),
                "confidence": float(record["confidence"]),
            }
            yield Example(record["face"], target, meta)
