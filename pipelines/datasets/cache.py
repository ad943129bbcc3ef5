"""Adapter over the TFRecord cache written by ``python -m pipelines.preprocess``.

Layout: one cache folder per split, ``<data_dir>/<split>/`` holding ``manifest.json`` and
finished ``shard-*.tfrecord`` files (see ``pipelines.tfrecords``). Train on a cache with
``python -m fer_keras.train --dataset=cache --data_dir=<data_dir>``.
"""

from __future__ import annotations

import os
from typing import Iterator

from pipelines import tfrecords
from pipelines.datasets.base import Example, FerDataset


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
            raise ValueError(
                f"{self.cache_dir}: no {tfrecords.MANIFEST}. Expected <data_dir>/<split>/ written by "
                f"`python -m pipelines.preprocess --output_dir={self.cache_dir} ...`."
            )
        self.manifest = tfrecords.read_manifest(self.cache_dir)
        self.class_names = tuple(self.manifest["class_names"])

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
