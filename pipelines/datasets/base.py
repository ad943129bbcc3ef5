"""The adapter contract: every source yields ``Example(image, target, meta)``.

``image`` is ``uint8`` ``[H, W, C]`` with ``C`` 1 (grayscale) or 3 (RGB); ``target`` is a
class id into ``class_names`` or, for label distributions (FER+ probability / crossentropy /
multi-target modes), a ``float32`` vector over ``class_names``; ``meta`` holds at least
``path`` (the file or ``file:row`` it came from) and ``split``, plus whatever the source
knows (``subject``, ``box``, ``landmarks``, ``votes``).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterator

import numpy as np

ON_ERROR_CHOICES = ("skip", "raise")


@dataclasses.dataclass
class Example:
    image: np.ndarray
    target: int | np.ndarray
    meta: dict[str, Any]


@dataclasses.dataclass
class SkipReport:
    """What an adapter left out and why: counts per reason and the first few files."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "nothing skipped"
        parts = [f"{n} {reason} (e.g. {self.examples[reason][0]})" for reason, n in self.counts.items()]
        return "skipped " + "; ".join(parts)


class FerDataset:
    """Base class of the adapters. Subclasses implement ``_iterate`` and set ``class_names``.

    Args:
        data_dir: str. Root of the data set as its publishers lay it out.
        split: str. Split name of the source (``train``, ``val``, ``test``, ...).
        on_error: str. ``"skip"`` counts bad images in ``self.skipped`` and goes on;
            ``"raise"`` stops at the first with an error naming the file.
    """

    name: str = ""
    class_names: tuple[str, ...] = ()
    # How the source frames its faces (``fer_spec.InputSpec.framing``): a model trained on it
    # should see photos' faces framed the same way.
    framing: str = "aligned"

    def __init__(self, data_dir: str, split: str, on_error: str = "skip"):
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}. Received: on_error={on_error!r}")
        self.data_dir = str(data_dir)
        self.split = split
        self.on_error = on_error
        self.skipped = SkipReport()

    def _iterate(self) -> Iterator[Example]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Example]:
        self.skipped = SkipReport()
        yield from self._iterate()

    def skip_or_raise(self, reason: str, where: str, error: Exception | None = None) -> None:
        """Record a bad item, or raise ``ValueError`` naming it when ``on_error="raise"``."""
        if self.on_error == "raise":
            raise ValueError(f"{where}: {reason}") from error
        self.skipped.add(reason, where)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data_dir={self.data_dir!r}, split={self.split!r})"


@dataclasses.dataclass
class Record:
    """One listed (not yet decoded) example of a file-based adapter."""

    path: str
    target: int | np.ndarray
    meta: dict[str, Any]


class FileDataset(FerDataset):
    """Adapters with one image file per example: ``_records()`` lists, ``load_record()`` decodes.

    Splitting listing from decoding lets ``load_arrays`` decode in a thread pool. Listing
    problems (bad label lines, unknown classes) go through ``skip_or_raise`` in
    ``records()``; ``load_record`` raises ``ImageDecodeError`` for unreadable files and the
    caller decides (``_iterate`` and ``load_arrays`` skip or raise per ``on_error``).
    """

    channels: int | None = None
    layout: str = ""

    def records(self) -> list[Record]:
        """List the examples (resets ``skipped``: listing-time drops and bad lines are counted anew)."""
        self.skipped = SkipReport()
        return self._records()

    def _records(self) -> list[Record]:
        raise NotImplementedError

    def load_record(self, record: Record) -> Example:
        from pipelines.images import decode_image

        image = decode_image(record.path, where=record.path, channels=self.channels)
        return Example(self.transform(image, record), record.target, dict(record.meta))

    def transform(self, image: np.ndarray, record: Record) -> np.ndarray:
        """Hook for adapters that crop (AffectNet face boxes); identity by default."""
        return image

    def _iterate(self) -> Iterator[Example]:
        from pipelines.images import ImageDecodeError

        for record in self.records():
            try:
                yield self.load_record(record)
            except ImageDecodeError as error:
                self.skip_or_raise("unreadable image", record.path, error)
