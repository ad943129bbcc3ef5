"""PNG plots written by train/evaluate: confusion matrix, training curves, t-SNE of embeddings.

Matplotlib is imported inside the functions and drives an Agg canvas directly (no pyplot,
no global backend switch), so importing ``fer_keras`` needs no display and never changes
the caller's matplotlib state; scikit-learn's t-SNE is imported where it is used, so
training and evaluation do not load it. Files are written to a temporary file in the target folder
and moved into place with ``os.replace``, so a half-written PNG is never visible.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from fer_keras.calibration import reliability_bins


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save_atomically(figure: Any, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png")
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


def plot_confusion_matrix(
    matrix: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    normalize: bool = True,
    title: str | None = None,
) -> str:
    """Write a confusion matrix ``[true][pred]`` as an annotated heat map PNG.

    Args:
        matrix: ``[C, C]`` counts (or already normalised values).
        class_names: The ``C`` class names, in id order.
        path: Output PNG file; parent folders are created.
        normalize: Divide each row by its sum (rows summing to 0 stay 0) and show
            fractions; otherwise show the values as given (integers without decimals).
        title: Figure title; defaults to "Confusion matrix" (+ "(row-normalised)").

    Returns:
        The written path.

    Raises:
        ValueError: ``matrix`` is not square or does not match ``class_names``.
    """
    values = np.asarray(matrix, dtype=np.float64)
    names = [str(name) for name in class_names]
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] != len(names):
        raise ValueError(
            f"matrix must be [C, C] with C={len(names)} class names. Received shape {values.shape}."
        )
    if normalize:
        sums = values.sum(axis=1, keepdims=True)
        values = np.divide(values, sums, out=np.zeros_like(values), where=sums != 0)
    if title is None:
        title = "Confusion matrix (row-normalised)" if normalize else "Confusion matrix"

    size = max(4.5, 0.75 * len(names) + 2.5)
    figure = _new_figure(size + 1.0, size)
    axes = figure.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(float(values.max()), 1e-12)
    image = axes.imshow(values, interpolation="nearest", cmap="Blues", vmin=0.0, vmax=vmax)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(names))
    axes.set_xticks(ticks, labels=names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=names)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(title)
    integral = not normalize and np.all(values == np.round(values))
    fontsize = 9 if len(names) <= 8 else 7
    for i in range(len(names)):
        for j in range(len(names)):
            value = values[i, j]
            text = f"{int(value)}" if integral else f"{value:.2f}"
            color = "white" if value > 0.5 * vmax else "black"
            axes.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    figure.tight_layout()
    return _save_atomically(figure, path)


def _accuracy_key(history: Mapping[str, Sequence[float]]) -> str | None:
    for key in ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy"):
        if key in history:
            return key
    candidates = sorted(k for k in history if "acc" in k and not k.startswith("val_"))
    return candidates[0] if candidates else None


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str | None = None) -> str:
    """Write training curves (train vs ``val_``) for loss and accuracy to a PNG.

    Args:
        history: Keras ``History.history``-style dict, e.g. ``{"loss": [...],
            "val_loss": [...], "accuracy": [...], "val_accuracy": [...]}``. The accuracy
            panel uses ``accuracy`` (or ``acc`` / ``*accuracy``) and is left out if absent.
        path: Output PNG file; parent folders are created.
        title: Optional figure title.

    Returns:
        The written path.

    Raises:
        ValueError: neither a loss nor an accuracy series is present.
    """
    panels = []
    if "loss" in history or "val_loss" in history:
        panels.append(("loss", "Loss"))
    accuracy_key = _accuracy_key(history)
    if accuracy_key is None and any(k.startswith("val_") and "acc" in k for k in history):
        accuracy_key = next(k for k in sorted(history) if k.startswith("val_") and "acc" in k)[4:]
    if accuracy_key is not None:
        panels.append((accuracy_key, "Accuracy"))
    if not panels:
        raise ValueError(f"history has no loss or accuracy series. Keys: {sorted(history)}")

    figure = _new_figure(5.0 * len(panels), 4.0)
    for index, (key, label) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        for name, style in ((key, "-o"), (f"val_{key}", "-s")):
            series = [float(v) for v in history.get(name, [])]
            if series:
                epochs = np.arange(1, len(series) + 1)
                axes.plot(epochs, series, style, markersize=3, label="val" if name.startswith("val_") else "train")
        axes.set_xlabel("Epoch")
        axes.set_ylabel(label)
        axes.set_title(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save_atomically(figure, path)


def plot_reliability(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, bins: int = 15, title: str | None = None) -> str:
    """Reliability diagram: accuracy against mean top-1 confidence per confidence bin, one line
    per ``{label: (probabilities [N, K], labels [N])}``, the diagonal for reference."""
    figure = _new_figure(5.0, 5.0)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, (probabilities, labels) in curves.items():
        rows = reliability_bins(probabilities, labels, bins)
        axes.plot([row[2] for row in rows], [row[1] for row in rows], marker="o", label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("mean confidence (top-1 probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(title or "Reliability")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return _save_atomically(figure, path)


def plot_runs(curves: Mapping[str, Sequence[float]], path: str | os.PathLike, ylabel: str = "Validation accuracy", title: str | None = None) -> str:
    """Write one metric of several runs, one line per run over epochs 1..n, to a PNG (e.g.
    the validation accuracy of a recipe study's settings).

    Args:
        curves: run label -> per-epoch values.
        path: Output PNG file; parent folders are created.
        ylabel: Y axis label.
        title: Optional figure title.

    Returns:
        The written path.

    Raises:
        ValueError: ``curves`` is empty.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    figure = _new_figure(8.0, 5.0)
    axes = figure.add_subplot(1, 1, 1)
    # tab10's strong colours for up to 10 runs; tab20 (pairs of one hue) for more: all distinct.
    palette = colormaps["tab10" if len(curves) <= 10 else "tab20"]
    axes.set_prop_cycle(color=[palette(i) for i in range(palette.N)])
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    for label, values in curves.items():
        values = [float(v) for v in values]
        axes.plot(np.arange(1, len(values) + 1), values, "-o", markersize=2, label=label)
    axes.set_xlabel("Epoch")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save_atomically(figure, path)


def plot_embedding(embeddings: Any, labels: Any, class_names: Sequence[str], path: str | os.PathLike, title: str | None = None) -> str:
    """Write a t-SNE map of embeddings, one colour per class, to a PNG (as LBAN-IL Fig. 5).

    The 2-D map is scikit-learn's ``TSNE`` (PCA initialisation, ``random_state=0``,
    perplexity ``min(30, (N - 1) / 3)``), so the same embeddings give the same picture. It
    runs on one OpenMP thread: on our 2-core machine shared with training runs, its
    busy-waiting OpenMP threads made 2,000 points take 3.6x longer with two threads than
    with one (median 39.1 s vs 10.9 s).

    Args:
        embeddings: ``[N, D]`` features (e.g. a model's 128-d ``embedding`` output).
        labels: ``[N]`` class ids into ``class_names``.
        class_names: The class names, in id order.
        path: Output PNG file; parent folders are created.
        title: Figure title; defaults to "t-SNE of N embeddings".

    Returns:
        The written path.

    Raises:
        ValueError: fewer than 5 points, ``embeddings`` not ``[N, D]``, ``labels`` of
            another length, or a label outside ``class_names``.
    """
    from matplotlib import colormaps
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    points = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(labels).astype(np.int64).reshape(-1)
    names = [str(name) for name in class_names]
    if points.ndim != 2 or len(points) != len(ids) or len(points) < 5:
        raise ValueError(f"embeddings must be [N, D] with N >= 5 and one label per row. Received: embeddings {points.shape}, labels {ids.shape}")
    if ids.min() < 0 or ids.max() >= len(names):
        raise ValueError(f"labels must be class ids in [0, {len(names)}). Received: min {ids.min()}, max {ids.max()}")
    tsne = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(points) - 1) / 3.0), random_state=0)
    with threadpool_limits(limits=1, user_api="openmp"):
        mapped = tsne.fit_transform(points)

    figure = _new_figure(7.5, 6.5)
    axes = figure.add_subplot(1, 1, 1)
    colours = colormaps["tab10" if len(names) <= 10 else "tab20"]
    for index, name in enumerate(names):
        members = ids == index
        if members.any():
            axes.scatter(mapped[members, 0], mapped[members, 1], s=6, alpha=0.7, color=colours(index % colours.N), label=f"{name} ({int(members.sum())})")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title or f"t-SNE of {len(points)} embeddings")
    axes.legend(loc="best", fontsize=8, markerscale=2.5)
    figure.tight_layout()
    return _save_atomically(figure, path)
