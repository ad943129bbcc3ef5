"""TFRecord cache of preprocessed (detected, aligned) faces.

Layout of a cache directory::

    shard-00000.tfrecord        finished shard (only ever appears complete: os.replace)
    shard-00000.tfrecord.done   JSON marker: record count, class counts, detection stats
    shard-00001.tfrecord.tmp    a shard being written (or left by a killed run; ignored)
    manifest.json               class_names, face_size, channels, label_type, counts, stats

A shard counts as finished only when both the final file and its ``.done`` marker exist;
the marker is written after the shard is renamed into place, so a run killed at any point
leaves either a finished shard or one that the next run rewrites. Every JSON file is written
to ``<name>.tmp`` and renamed too. ``read_shards`` reads finished shards only, never ``.tmp``.

Features of a record: ``face`` (PNG bytes), ``landmarks`` (10 floats: ``[5, 2]`` x, y in
face pixels), ``label`` (int64 class id) or ``label_dist`` (float list over class_names),
``path`` (bytes), ``detected`` (int64 0/1), ``confidence`` (float).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from typing import Any, Iterable

import numpy as np
import tensorflow as tf
from PIL import Image

MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^shard-(\d{5})\.tfrecord$")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.tfrecord"


def _atomic_write_json(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def encode_png(image: np.ndarray) -> bytes:
    image = np.asarray(image, dtype=np.uint8)
    pil = Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclasses.dataclass
class Record:
    face: np.ndarray  # uint8 [S, S, C]
    landmarks: np.ndarray  # float32 [5, 2]
    target: int | np.ndarray
    path: str
    detected: bool
    confidence: float


def serialize(record: Record) -> bytes:
    feature = {
        "face": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encode_png(record.face)])),
        "landmarks": tf.train.Feature(
            float_list=tf.train.FloatList(value=np.asarray(record.landmarks, np.float32).reshape(-1).tolist())
        ),
        "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.path.encode("utf-8")])),
        "detected": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(bool(record.detected))])),
        "confidence": tf.train.Feature(float_list=tf.train.FloatList(value=[float(record.confidence)])),
    }
    if np.ndim(record.target) == 0:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(record.target)]))
    else:
        values = np.asarray(record.target, np.float32).reshape(-1).tolist()
        feature["label_dist"] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_done(cache_dir: str, index: int) -> bool:
    final = os.path.join(cache_dir, shard_name(index))
    return os.path.exists(final) and os.path.exists(final + ".done")


def write_shard(cache_dir: str, index: int, records: Iterable[Record], info: dict[str, Any] | None = None) -> dict:
    """Write shard ``index`` atomically and its ``.done`` marker; returns the marker."""
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, shard_name(index))
    tmp = final + ".tmp"
    count = 0
    with tf.io.TFRecordWriter(tmp) as writer:
        for record in records:
            writer.write(serialize(record))
            count += 1
    os.replace(tmp, final)
    marker = {"shard": shard_name(index), "count": count, **(info or {})}
    _atomic_write_json(final + ".done", marker)
    return marker


def finished_shards(cache_dir: str) -> list[str]:
    """Paths of finished shards (final name and ``.done`` marker), sorted by index."""
    if not os.path.isdir(cache_dir):
        return []
    names = sorted(n for n in os.listdir(cache_dir) if SHARD_PATTERN.match(n))
    return [os.path.join(cache_dir, n) for n in names if os.path.exists(os.path.join(cache_dir, n + ".done"))]


def read_markers(cache_dir: str) -> list[dict]:
    markers = []
    for path in finished_shards(cache_dir):
        with open(path + ".done") as handle:
            markers.append(json.load(handle))
    return markers


def write_manifest(cache_dir: str, manifest: dict) -> None:
    _atomic_write_json(os.path.join(cache_dir, MANIFEST), manifest)


def read_manifest(cache_dir: str) -> dict:
    """``class_names``, ``face_size``, ``channels``, ``label_type``, ``counts``, ``detection``..."""
    path = os.path.join(cache_dir, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {MANIFEST} in {cache_dir}: run `python -m pipelines.preprocess` first.")
    with open(path) as handle:
        return json.load(handle)


def read_shards(cache_dir: str, with_meta: bool = False) -> tf.data.Dataset:
    """Dataset of ``dict(face=uint8 [S, S, C], label=int64 or float32 [K], landmarks=float32
    [5, 2])`` (plus ``path``, ``detected``, ``confidence`` with ``with_meta``) from the
    finished shards of ``cache_dir``, in shard order."""
    manifest = read_manifest(cache_dir)
    size, channels = int(manifest["face_size"]), int(manifest["channels"])
    num_classes = len(manifest["class_names"])
    distribution = manifest.get("label_type") == "distribution"
    finished = finished_shards(cache_dir)
    if manifest.get("shards"):
        files = [os.path.join(cache_dir, name) for name in manifest["shards"]]
        unfinished = [f for f in files if f not in finished]
        if unfinished:
            raise FileNotFoundError(f"Shards {unfinished} of {cache_dir} are not finished: re-run the preprocessing.")
    else:
        files = finished
    if not files:
        raise FileNotFoundError(f"No finished shards in {cache_dir}.")
    spec = {
        "face": tf.io.FixedLenFeature([], tf.string),
        "landmarks": tf.io.FixedLenFeature([10], tf.float32),
        "path": tf.io.FixedLenFeature([], tf.string),
        "detected": tf.io.FixedLenFeature([], tf.int64),
        "confidence": tf.io.FixedLenFeature([], tf.float32),
    }
    if distribution:
        spec["label_dist"] = tf.io.FixedLenFeature([num_classes], tf.float32)
    else:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        face = tf.io.decode_png(parsed["face"], channels=channels)
        face = tf.ensure_shape(face, [size, size, channels])
        out = {
            "face": face,
            "label": parsed["label_dist"] if distribution else parsed["label"],
            "landmarks": tf.reshape(parsed["landmarks"], [5, 2]),
        }
        if with_meta:
            out.update(path=parsed["path"], detected=parsed["detected"], confidence=parsed["confidence"])
        return out

    return tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
