"""Detect, align and cache a data set as TFRecord shards (resumable).

    python -m pipelines.preprocess --dataset=fer2013 --data_dir=../shared/datasets/fer2013 \
        --output_dir=.cache/fer2013 [--split=train,val] --face_size=48 --shard_size=2000 \
        --no_face=assume_aligned --min_confidence=0.9 --batch_size=32 [--limit=N]

Each split goes to ``<output_dir>/<split>/``, the layout ``--dataset=cache
--data_dir=<output_dir>`` reads (``pipelines.datasets.cache``); without ``--split`` both the
training and the validation split of the data set are cached, so
``python -m fer_keras.train --dataset=cache --data_dir=<output_dir>`` finds both.
``--limit=N`` caches the first N examples of each split.

Example ``i`` of the adapter's (deterministic) order goes to shard ``i // shard_size``.
A re-run skips shards already finished (final file + ``.done`` marker) without running
MTCNN on their images, rewrites unfinished ones (a leftover ``.tmp`` is overwritten), then
rewrites ``manifest.json`` from all shard markers. The settings that change the cached
content (data set, split, face size, channels, shard size, no_face, min_confidence) must
match the existing manifest, otherwise the run stops instead of mixing caches.
"""

from __future__ import annotations

import collections
import itertools
import os
from typing import Iterable, Iterator

import numpy as np
from absl import flags

from pipelines import cli, tfrecords
from pipelines import faces as faces_lib
from pipelines.datasets import open_dataset
from pipelines.datasets.splits import default_splits

# Settings that must agree between a cache and a resuming run.
_CONTENT_KEYS = ("dataset", "split", "face_size", "channels", "shard_size", "no_face", "min_confidence")


def _label_index(target) -> int:
    return int(target) if np.ndim(target) == 0 else int(np.argmax(target))


def _shard_batches(examples: Iterable, shard_size: int) -> Iterator[tuple[int, list]]:
    iterator = iter(examples)
    for index in itertools.count():
        chunk = list(itertools.islice(iterator, shard_size))
        if not chunk:
            return
        yield index, chunk


def _write_shards(examples: Iterable, output_dir: str, shard_size: int, batch_size: int, preprocessor, advance) -> tuple[list[str], int]:
    """Write every unfinished shard of ``examples`` (finished ones are skipped unread by
    MTCNN); ``advance(n)`` after each batch. Returns ``(shard names, examples resumed)``."""
    resumed = 0
    shard_names = []
    for index, chunk in _shard_batches(examples, shard_size):
        shard_names.append(tfrecords.shard_name(index))
        if tfrecords.shard_done(output_dir, index):
            resumed += len(chunk)
            advance(len(chunk))
            continue
        before = dict(preprocessor.stats.as_dict())
        records = []
        for start in range(0, len(chunk), batch_size):
            batch = chunk[start : start + batch_size]
            for example, result in zip(batch, preprocessor.process_batch([e.image for e in batch])):
                if isinstance(result, faces_lib.NoFace):
                    continue
                records.append(
                    tfrecords.Record(
                        face=result.face,
                        landmarks=result.landmarks,
                        target=example.target,
                        path=str(example.meta.get("path", "")),
                        detected=result.detected,
                        confidence=result.confidence,
                    )
                )
            advance(len(batch))
        after = preprocessor.stats.as_dict()
        stats = {k: after[k] - before[k] for k in ("total", "detected", "assumed_aligned", "skipped")}
        class_counts = collections.Counter(_label_index(r.target) for r in records)
        tfrecords.write_shard(
            output_dir,
            index,
            records,
            info={"first_example": index * shard_size, "examples": len(chunk), "stats": stats,
                  "class_counts": {str(k): v for k, v in sorted(class_counts.items())}},
        )
    return shard_names, resumed


def run(
    dataset,
    output_dir: str,
    *,
    dataset_name: str,
    face_size: int = 48,
    shard_size: int = 2000,
    no_face: str = "assume_aligned",
    min_confidence: float = 0.9,
    limit: int | None = None,
    batch_size: int = 32,
    channels: int | None = None,
    preprocessor: faces_lib.FacePreprocessor | None = None,
    verbose: int = 1,
) -> dict:
    """Preprocess ``dataset`` (an adapter: iterable of ``Example`` with ``class_names``)
    into ``output_dir`` (the folder of this one split); returns the manifest."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive. Received: shard_size={shard_size}")
    os.makedirs(output_dir, exist_ok=True)
    examples: Iterable = iter(dataset)
    if limit:
        examples = itertools.islice(examples, limit)
    examples = iter(examples)
    first = next(examples, None)
    if first is None:
        raise ValueError(f"{dataset!r} yielded no examples.")
    examples = itertools.chain([first], examples)
    if channels is None:
        channels = 1 if (first.image.ndim == 2 or first.image.shape[-1] == 1) else 3
    label_type = "class" if np.ndim(first.target) == 0 else "distribution"
    settings = {
        "dataset": dataset_name,
        "split": getattr(dataset, "split", None),
        "data_dir": getattr(dataset, "data_dir", None),
        "face_size": int(face_size),
        "channels": int(channels),
        "shard_size": int(shard_size),
        "no_face": no_face,
        "min_confidence": float(min_confidence),
        "limit": limit,
        "class_names": list(dataset.class_names),
        "label_type": label_type,
    }
    manifest_path = os.path.join(output_dir, tfrecords.MANIFEST)
    if os.path.exists(manifest_path) or tfrecords.finished_shards(output_dir):
        previous = tfrecords.read_manifest(output_dir) if os.path.exists(manifest_path) else {}
        mismatched = {k: (previous.get(k), settings[k]) for k in _CONTENT_KEYS if k in previous and previous[k] != settings[k]}
        if mismatched:
            raise ValueError(
                f"{output_dir} holds a cache made with other settings {mismatched} (cache, now). "
                "Use another --output_dir or delete it."
            )
    tfrecords.write_manifest(output_dir, {**settings, "complete": False, "shards": []})

    if preprocessor is None:
        preprocessor = faces_lib.FacePreprocessor(
            face_size, no_face=no_face, channels=channels, min_confidence=min_confidence, batch_size=batch_size
        )
    total = len(dataset) if hasattr(dataset, "__len__") else None
    if limit:
        total = min(limit, total) if total is not None else limit
    with cli.progress_bar(enabled=verbose > 0) as bar:
        task = bar.add_task(f"{dataset_name}/{settings['split']}", total=total)
        shard_names, resumed = _write_shards(examples, output_dir, shard_size, batch_size, preprocessor, lambda n: bar.advance(task, n))

    markers = {m["shard"]: m for m in tfrecords.read_markers(output_dir)}
    missing = [name for name in shard_names if name not in markers]
    if missing:
        raise RuntimeError(f"Shards {missing} of {output_dir} were not written.")
    used = [markers[name] for name in shard_names]
    detection = collections.Counter()
    per_class = collections.Counter()
    for marker in used:
        detection.update(marker["stats"])
        per_class.update({int(k): v for k, v in marker["class_counts"].items()})
    detection = {k: int(detection[k]) for k in ("total", "detected", "assumed_aligned", "skipped")}
    detection["detection_rate"] = detection["detected"] / detection["total"] if detection["total"] else 0.0
    adapter_skipped = getattr(dataset, "skipped", None)
    manifest = {
        **settings,
        "complete": True,
        "shards": shard_names,
        "shard_counts": [m["count"] for m in used],
        "counts": {
            "examples": sum(m["examples"] for m in used),
            "records": sum(m["count"] for m in used),
            "per_class": {settings["class_names"][k]: per_class[k] for k in sorted(per_class)},
        },
        "detection": detection,
        "resumed_examples": resumed,
        "adapter_skipped": dict(adapter_skipped.counts) if adapter_skipped is not None else {},
    }
    tfrecords.write_manifest(output_dir, manifest)
    return manifest


def split_command(manifest: dict, split: str, cache_root: str) -> str:
    """The command that caches ``split`` into ``<cache_root>/<split>/`` with the settings of
    a sibling split's ``manifest`` (what a cache with one split missing needs)."""
    return (
        f"python -m pipelines.preprocess --dataset={manifest['dataset']} --data_dir={manifest['data_dir']} "
        f"--split={split} --output_dir={cache_root} --face_size={manifest['face_size']} --channels={manifest['channels']} "
        f"--shard_size={manifest['shard_size']} --no_face={manifest['no_face']} --min_confidence={manifest['min_confidence']}"
    )


def summary(manifest: dict, output_dir: str) -> str:
    """Three lines on a finished cache: faces cached, detection rate, adapter skips."""
    d = manifest["detection"]
    skipped = manifest["adapter_skipped"]
    return (
        f"{manifest['counts']['records']} faces cached in {len(manifest['shards'])} shards at {output_dir} "
        f"({manifest['resumed_examples']} examples from finished shards reused).\n"
        f"Detection rate {100 * d['detection_rate']:.1f}% ({d['detected']}/{d['total']}); "
        f"{d['assumed_aligned']} taken as already aligned; {d['skipped']} skipped (no face).\n"
        "Adapter skipped: " + (", ".join(f"{n} {r}" for r, n in skipped.items()) if skipped else "nothing")
    )


def main(argv):
    del argv
    f = flags.FLAGS
    for split in f.split or default_splits(f.dataset):
        output_dir = os.path.join(f.output_dir, split)
        manifest = run(
            open_dataset(f.dataset, f.data_dir, split, on_error=f.on_error),
            output_dir,
            dataset_name=f.dataset,
            face_size=f.face_size,
            shard_size=f.shard_size,
            no_face=f.no_face,
            min_confidence=f.min_confidence,
            limit=f.limit or None,
            batch_size=f.batch_size,
            channels=f.channels or None,
        )
        print(summary(manifest, output_dir))
    return 0


def _define_flags():
    flags.DEFINE_string("dataset", None, "Data set name for pipelines.datasets.open_dataset.", required=True)
    flags.DEFINE_string("data_dir", None, "Data set root (or file).", required=True)
    flags.DEFINE_list("split", None, "Splits to cache, e.g. train,val (default: the data set's training and validation splits).")
    flags.DEFINE_string("output_dir", None, "Cache root: split S goes to <output_dir>/S/, what --dataset=cache --data_dir=<output_dir> reads.", required=True)
    flags.DEFINE_integer("face_size", 48, "Side of the aligned square face.")
    flags.DEFINE_integer("shard_size", 2000, "Examples per shard (example i -> shard i // shard_size).")
    flags.DEFINE_enum("no_face", "assume_aligned", list(faces_lib.NO_FACE_CHOICES), "What to do without a detected face.")
    flags.DEFINE_float("min_confidence", 0.9, "MTCNN confidence a face needs.")
    flags.DEFINE_integer("limit", 0, "Only the first N examples of each split (0: all).")
    flags.DEFINE_integer("batch_size", 32, "Images per MTCNN call.")
    flags.DEFINE_integer("channels", 0, "Channels of cached faces: 1, 3, or 0 = as the data set's images.")
    flags.DEFINE_enum("on_error", "skip", ["skip", "raise"], "Adapter behaviour on bad images.")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
