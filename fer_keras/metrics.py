"""Classification reports in NumPy: accuracy, "Ave", per-class scores, confusion matrix.

Conventions for empty cases (no NaN, no warnings):

* A class with zero support (absent from ``y_true``) has sensitivity 0.0 and an all-zero
  row in the normalised confusion matrix; it is left out of ``mean_class_accuracy`` and
  ``macro_f1``, which average over the classes present in ``y_true``.
* A class never predicted has precision 0.0.
* F1 is 0.0 when precision + recall is 0.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _to_ids(values: Any, num_classes: int, what: str) -> np.ndarray:
    """Class ids ``[N]`` from ids ``[N]`` or scores/probabilities ``[N, C]`` (argmax)."""
    array = np.asarray(values)
    if array.ndim == 2:
        if array.shape[1] != num_classes:
            raise ValueError(
                f"{what} has {array.shape[1]} columns but there are {num_classes} classes."
            )
        return np.argmax(array, axis=1).astype(np.int64) if len(array) else np.zeros(0, np.int64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be class ids [N] or scores [N, C]. Received shape {array.shape}.")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{what} is 1-D float with non-integer values; pass class ids or [N, C] scores.")
    elif array.dtype.kind not in "iub":
        raise ValueError(f"{what} must be numeric. Received dtype {array.dtype}.")
    ids = array.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"{what} has ids outside [0, {num_classes}): min {ids.min()}, max {ids.max()}.")
    return ids


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator`` with 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts ``[true][pred]`` as an ``int64`` ``[C, C]`` array (inputs as in the report)."""
    true_ids = _to_ids(y_true, num_classes, "y_true")
    pred_ids = _to_ids(y_pred, num_classes, "y_pred")
    if len(true_ids) != len(pred_ids):
        raise ValueError(f"y_true and y_pred differ in length: {len(true_ids)} vs {len(pred_ids)}.")
    flat = np.bincount(true_ids * num_classes + pred_ids, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def classification_report(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Scores of a classifier over ``class_names``, as a JSON-serialisable dict.

    Args:
        y_true: Class ids ``[N]``, or label distributions ``[N, C]`` (argmax is the label).
        y_pred: Class ids ``[N]``, or probabilities/logits ``[N, C]`` (argmax).
        class_names: The ``C`` class names, in id order.

    Returns:
        A dict of plain Python types:
        ``num_examples``; ``accuracy``; ``mean_class_accuracy`` (the FER papers' "Ave":
        mean per-class recall over classes present in ``y_true``); ``macro_f1`` (same
        classes); ``class_names``; ``per_class`` mapping each name to ``sensitivity``
        (recall), ``precision``, ``f1``, ``support`` and ``predicted`` (count);
        ``confusion_matrix`` (counts, ``[true][pred]``) and
        ``confusion_matrix_normalized`` (rows divided by support; zero rows stay zero).

    Raises:
        ValueError: no examples, mismatched lengths, ids out of range or wrong shapes.
    """
    names = [str(name) for name in class_names]
    num_classes = len(names)
    if num_classes == 0:
        raise ValueError("class_names is empty.")
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    total = int(matrix.sum())
    if total == 0:
        raise ValueError("classification_report needs at least one example.")

    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    recall = _safe_divide(true_positives, support)
    precision = _safe_divide(true_positives, predicted)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)
    present = support > 0

    per_class = {
        name: {
            "sensitivity": float(recall[i]),
            "precision": float(precision[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "num_examples": total,
        "accuracy": float(true_positives.sum() / total),
        "mean_class_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "class_names": names,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": _safe_divide(matrix, support[:, None]).tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of a ``classification_report`` result, for logs and consoles."""
    width = max(len("class"), *(len(name) for name in report["class_names"]))
    lines = [f"{'class':<{width}}  sensitivity  precision     f1  support"]
    for name in report["class_names"]:
        row = report["per_class"][name]
        lines.append(
            f"{name:<{width}}  {row['sensitivity']:11.4f}  {row['precision']:9.4f}  "
            f"{row['f1']:5.4f}  {row['support']:7d}"
        )
    lines.append(
        f"accuracy {report['accuracy']:.4f}  Ave (mean class accuracy) "
        f"{report['mean_class_accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}  "
        f"N={report['num_examples']}"
    )
    return "\n".join(lines)
