"""``python -m fer_keras.embedding``: a t-SNE PNG of a model's ``embedding`` output on real
validation images, and a one-line error for a model without one."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_keras.embedding import Embedder
from fer_keras.plots import plot_embedding
from fer_keras.registry import build_model
from fer_keras.saving import attach_spec, model_spec, save_model
from pipelines.input import eval_inputs
from tests.cli_output import own_lines, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _embedding_model():
    """A small CNN on the baseline's 44x44 crops returning ``{"probabilities", "embedding"}`` (128-d, as LBAN)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((44, 44, 1), name="face")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    embedding = keras.layers.Dense(128, name="embedding")(x)
    probabilities = keras.layers.Dense(7, activation="softmax", name="probabilities")(embedding)
    model = keras.Model({"face": inputs}, {"probabilities": probabilities, "embedding": embedding}, name="tiny_embedding")
    return attach_spec(model, model_spec(build_model("baseline", 7)))


def test_cli_writes_the_tsne_png_of_the_embedding_output(fer2013_dir, tmp_path):
    model_path = save_model(_embedding_model(), str(tmp_path / "tiny.keras"))
    output = tmp_path / "plots" / "tsne.png"
    proc = run_cli("-m", "fer_keras.embedding", f"--model={model_path}", f"--data_dir={fer2013_dir}", "--limit=100", f"--output={output}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "t-SNE of 100 128-d features (embedding) of fer2013/val" in proc.stdout
    data = output.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    assert not list(output.parent.glob("*.tmp"))


def test_embedder_returns_the_named_output_or_functional_layer(fer_val_subset):
    model = _embedding_model()
    images = fer_val_subset.images[:100]
    inputs = eval_inputs(images, model_spec(model).input_spec)
    np.testing.assert_allclose(Embedder(model, batch_size=32)(images), model(inputs)["embedding"].numpy(), rtol=1e-5, atol=1e-6)
    assert Embedder(model, "gap")(images).shape == (100, 8)  # a layer, not an output


def test_cli_errors_in_one_line_when_the_model_has_no_such_output(fer2013_dir, tmp_path):
    output = tmp_path / "tsne.png"
    proc = run_cli("-m", "fer_keras.embedding", "--model=baseline-fer2013", f"--data_dir={fer2013_dir}", f"--output={output}")
    assert proc.returncode == 2
    lines = own_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: Model 'baseline' returns a single output, none named 'embedding'"), lines
    assert "gap" in lines[0] and "--layer" in lines[0]  # names what there is
    assert not output.exists()


def test_plot_embedding_rejects_mismatched_labels(tmp_path):
    points = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="one label per row"):
        plot_embedding(points, np.zeros(19, int), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="class ids"):
        plot_embedding(points, np.full(20, 2), ["a", "b"], tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
