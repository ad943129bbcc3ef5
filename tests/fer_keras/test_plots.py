"""Plots: valid PNGs written atomically."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fer_keras.plots import plot_confusion_matrix, plot_history, plot_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 40, size=(7, 7))
    matrix[1] = 0  # a class without support must not break normalisation
    path = tmp_path / "sub" / "confusion.png"
    written = plot_confusion_matrix(matrix, NAMES, path, normalize=normalize, title="Test")
    assert written == str(path)
    _assert_png(path)


def test_confusion_matrix_overwrites_existing_file(tmp_path):
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    plot_confusion_matrix(np.eye(3, dtype=int) * 5, ("a", "b", "c"), path, normalize=False, title="x")
    _assert_png(path)


def test_confusion_matrix_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError):
        plot_confusion_matrix(np.eye(3), NAMES, tmp_path / "bad.png", normalize=True, title="x")
    assert not list(tmp_path.iterdir())


def test_history_png(tmp_path):
    history = {
        "loss": [1.9, 1.4, 1.1, 0.9],
        "val_loss": [1.8, 1.5, 1.3, 1.2],
        "accuracy": [0.2, 0.45, 0.6, 0.7],
        "val_accuracy": [0.25, 0.4, 0.52, 0.55],
        "learning_rate": [1e-3] * 4,
    }
    path = tmp_path / "history.png"
    plot_history(history, path)
    _assert_png(path)


def test_history_loss_only_and_empty(tmp_path):
    plot_history({"loss": [1.0, 0.5]}, tmp_path / "loss.png")
    _assert_png(tmp_path / "loss.png")
    with pytest.raises(ValueError):
        plot_history({"learning_rate": [0.1]}, tmp_path / "none.png")


def test_no_global_backend_change():
    import matplotlib

    before = matplotlib.get_backend() if "matplotlib.pyplot" in sys.modules else None
    plot_history({"loss": [1.0]}, __import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "h.png")
    assert "matplotlib.pyplot" not in sys.modules or matplotlib.get_backend() == before


def test_runs_png_one_line_per_run_and_empty_refused(tmp_path):
    """``plot_runs``: 13 runs (more than matplotlib's 10 default colours) get 13 distinct colours."""
    from matplotlib.figure import Figure

    curves = {f"setting {i}": [0.2 + 0.01 * i + 0.02 * e for e in range(12)] for i in range(13)}
    path = tmp_path / "runs.png"
    seen = {}
    original = Figure.savefig

    def spy(figure, *args, **kwargs):
        seen["colours"] = {line.get_color() for line in figure.axes[0].get_lines()}
        return original(figure, *args, **kwargs)

    Figure.savefig = spy
    try:
        plot_runs(curves, path, title="study")
    finally:
        Figure.savefig = original
    _assert_png(path)
    assert len(seen["colours"]) == 13
    with pytest.raises(ValueError, match="empty"):
        plot_runs({}, tmp_path / "none.png")
