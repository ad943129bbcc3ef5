"""Scoring a model on a data set with another label set (cross-data-set evaluation).

Classes are matched by name, never by position: a name matches when both sides spell the
same canonical emotion (``pipelines.labels.canonical_name``: ``sadness`` = ``sad``) or,
for names that are no emotion, when they are equal. Three kinds of classes result:

* **shared**: in both; these are scored (accuracy, mean per-class accuracy, confusion).
* **unscorable**: data set classes the model cannot predict (FER+ ``contempt`` for a
  7-class FER2013 model). Their images are not scored; they are counted per class and
  reported apart (``report["unscorable"]``), never silently dropped.
* **model-only**: model classes absent from the data set (``contempt`` of an 8-class model
  on FER2013). They are never the truth, but the model may still predict them: such a
  prediction counts as an error (the image of a shared class was not recognised). The
  report's class space stays the model's, so these classes have a zero-support row (left
  out of the mean per-class accuracy) and a column that shows how often they were chosen.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from pipelines.labels import canonical_name


def _match_key(name: str) -> str:
    """The canonical emotion name of ``name``, or ``name`` itself for other classes."""
    try:
        return canonical_name(str(name))
    except ValueError:
        return str(name)


def _keys(names: Sequence[str], what: str) -> list[str]:
    keys = [_match_key(n) for n in names]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what} names one class twice (after canonical spelling): {list(names)}")
    return keys


@dataclasses.dataclass(frozen=True)
class LabelMapping:
    """Data set class ids -> model class ids, matched by name (see the module docstring).

    Attributes:
        data_class_names: the data set's classes, in its id order.
        model_class_names: the model's classes, in its output order.
        data_to_model: ``int64 [K_data]``: the model id of each data set class, ``-1`` when
            the model has no such class.
    """

    data_class_names: tuple[str, ...]
    model_class_names: tuple[str, ...]
    data_to_model: np.ndarray

    @property
    def shared_classes(self) -> tuple[str, ...]:
        """Model names of the classes both sides have, in the model's order."""
        ids = set(int(i) for i in self.data_to_model if i >= 0)
        return tuple(name for i, name in enumerate(self.model_class_names) if i in ids)

    @property
    def unscorable_classes(self) -> tuple[str, ...]:
        """Data set classes the model cannot predict."""
        return tuple(name for name, i in zip(self.data_class_names, self.data_to_model) if i < 0)

    @property
    def model_only_classes(self) -> tuple[str, ...]:
        """Model classes the data set does not have (never the truth)."""
        shared = set(self.shared_classes)
        return tuple(name for name in self.model_class_names if name not in shared)

    def apply(self, targets) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Map data set targets into the model's class ids.

        Args:
            targets: data set class ids ``[N]``, or label distributions ``[N, K_data]``
                (their argmax is the true class, as ``fer_keras.metrics`` scores them).

        Returns:
            ``(model_targets, scorable, unscorable)``: ``int64`` model ids of the scorable
            examples ``[M]``; the boolean mask ``[N]`` of those examples; the count of
            unscored examples per unscorable data set class (every unscorable class is
            listed, with 0 when the data holds none of it).

        Raises:
            ValueError: targets of the wrong shape or with ids outside the data set's classes.
        """
        labels = np.asarray(targets)
        num_data = len(self.data_class_names)
        if labels.ndim == 2:
            if labels.shape[1] != num_data:
                raise ValueError(f"targets have {labels.shape[1]} columns but the data set has {num_data} classes {list(self.data_class_names)}.")
            labels = labels.argmax(axis=1)
        if labels.ndim != 1:
            raise ValueError(f"targets must be class ids [N] or distributions [N, K]. Received shape {labels.shape}.")
        labels = labels.astype(np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= num_data):
            raise ValueError(f"targets hold ids outside [0, {num_data}): min {labels.min()}, max {labels.max()}.")
        mapped = self.data_to_model[labels]
        scorable = mapped >= 0
        counts = np.bincount(labels[~scorable], minlength=num_data)
        unscorable = {name: int(counts[i]) for i, name in enumerate(self.data_class_names) if self.data_to_model[i] < 0}
        return mapped[scorable], scorable, unscorable


def map_classes(data_class_names: Sequence[str], model_class_names: Sequence[str]) -> LabelMapping:
    """Match a data set's classes to a model's by name.

    Raises:
        ValueError: no class in common (names both lists), or a list naming a class twice.
    """
    data_names = tuple(str(n) for n in data_class_names)
    model_names = tuple(str(n) for n in model_class_names)
    data_keys = _keys(data_names, "The data set's class list")
    model_keys = _keys(model_names, "The model's class list")
    index = {key: i for i, key in enumerate(model_keys)}
    data_to_model = np.array([index.get(key, -1) for key in data_keys], dtype=np.int64)
    if not np.any(data_to_model >= 0):
        raise ValueError(
            f"The model's classes {list(model_names)} and the data set's classes {list(data_names)} have no class in common: "
            "nothing can be scored. Classes are matched by (canonical emotion) name."
        )
    return LabelMapping(data_names, model_names, data_to_model)
