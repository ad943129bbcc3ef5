"""Load a whole adapter into NumPy arrays (decoding in a thread pool for file-based adapters)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Any

import numpy as np

from pipelines import cli
from pipelines.datasets.base import Example, FerDataset, FileDataset, SkipReport
from pipelines.images import ImageDecodeError, resize_image, to_channels


@dataclasses.dataclass
class LoadedArrays:
    images: np.ndarray  # uint8 [N, H, W, C]
    targets: np.ndarray  # int32 [N] or float32 [N, K]
    class_names: tuple[str, ...]
    paths: list[str]
    skipped: SkipReport
    meta: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # How ``targets`` are meant: "labels" (class ids),
    # "distribution" (train against it), "sampled" (a distribution to draw a class id from
    # at each epoch, FER+ PLD) or "multi_hot" (every voted class, FER+ multi-target).
    target_kind: str = "labels"
    framing: str = "aligned"  # the adapter's ``framing``


def _prepare(example: Example, image_size, channels) -> Example:
    image = to_channels(example.image, channels)
    if image_size is not None:
        image = resize_image(image, image_size)
    return Example(image, example.target, example.meta)


def _load_one(dataset: FileDataset, record, image_size, channels):
    try:
        return _prepare(dataset.load_record(record), image_size, channels), None
    except ImageDecodeError as error:
        return None, error


def _file_examples(dataset: FileDataset, image_size, channels, limit, set_total, workers):
    records = dataset.records()
    if limit is not None and limit < len(records):
        # A seeded random subset, kept in source order: every class is represented even
        # when the source lists its files class by class.
        keep = np.sort(np.random.default_rng(0).choice(len(records), size=limit, replace=False))
        records = [records[i] for i in keep]
    set_total(len(records) if limit is None else min(limit, len(records)))
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    chunk = 1024
    produced = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(records), chunk):
            batch = records[start:start + chunk]
            results = pool.map(lambda r: _load_one(dataset, r, image_size, channels), batch)
            for record, (example, error) in zip(batch, results):
                if error is not None:
                    dataset.skip_or_raise("unreadable image", record.path, error)
                    continue
                yield example
                produced += 1
                if limit is not None and produced >= limit:
                    return


def load_arrays(dataset: FerDataset, image_size=None, channels=None, limit=None, progress=True, workers=None) -> LoadedArrays:
    """Decode every example of ``dataset`` into arrays.

    Args:
        dataset: an adapter (``open_dataset(...)``).
        image_size: int or (height, width) to resize to; when None all images must
            already share one size (else ValueError naming the first mismatching file).
        channels: 1, 3 or None (keep the adapter's).
        limit: load at most this many examples: a seeded random subset (in source order)
            for file-based adapters, the first ``limit`` for generated ones.
        progress: show a progress bar on stderr (``pipelines.cli.progress_bar``).
        workers: decoding threads for file-based adapters (default min(8, cpus + 2)).

    Returns: ``LoadedArrays`` (images uint8 [N, H, W, C], targets int32 [N] or
    float32 [N, K], class_names, paths, skipped, meta).

    Raises:
        ValueError: no example at all (names the data dir, split and expected layout), or
            images of different sizes/channels without ``image_size``/``channels``.
    """
    bar = cli.progress_bar(progress)
    task = bar.add_task(f"{dataset.name}/{dataset.split}", total=None)
    dataset.skipped = SkipReport()
    if isinstance(dataset, FileDataset):
        examples = _file_examples(dataset, image_size, channels, limit, lambda total: bar.update(task, total=total), workers)
    else:
        if hasattr(dataset, "__len__"):
            bar.update(task, total=len(dataset) if limit is None else min(limit, len(dataset)))

        def _sequential():
            for i, example in enumerate(dataset._iterate()):
                if limit is not None and i >= limit:
                    return
                yield _prepare(example, image_size, channels)
        examples = _sequential()

    images, targets, paths, metas = [], [], [], []
    first = None
    with bar:
        for example in examples:
            path = str(example.meta.get("path", "?"))
            if first is None:
                first = (example.image.shape, path)
            elif example.image.shape != first[0]:
                raise ValueError(
                    f"{path}: image shape {example.image.shape} differs from {first[0]} of {first[1]}. "
                    "Pass image_size=(height, width) (and channels=) to load_arrays to resize."
                )
            images.append(example.image)
            targets.append(example.target)
            paths.append(path)
            metas.append(example.meta)
            bar.advance(task)

    if not images:
        layout = getattr(dataset, "layout", "") or "see the adapter's docstring"
        raise ValueError(
            f"No examples loaded from {type(dataset).__name__} data_dir={dataset.data_dir!r} split={dataset.split!r}. "
            f"Expected layout: {layout}. {dataset.skipped.summary()}."
        )
    if np.ndim(targets[0]) == 0:
        target_array = np.asarray(targets, dtype=np.int32)
    else:
        target_array = np.stack(targets).astype(np.float32)
    return LoadedArrays(np.stack(images).astype(np.uint8, copy=False), target_array, tuple(dataset.class_names),
                        paths, dataset.skipped, metas, getattr(dataset, "target_kind", "labels"), dataset.framing)
