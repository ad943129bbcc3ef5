"""t-SNE map of a model's embeddings of validation images, coloured by class (LBAN-IL Fig. 5).

    python -m fer_keras.embedding --model=../runs/lban-fer2013/best.keras --data_dir=../shared/datasets/fer2013 --output=tsne.png [--limit=2000] [--layer=embedding]

``--model`` is a ``.keras`` file written by fer_keras, or a shipped pretrained name
(``fer_keras.weights``). The features are the model's output named ``--layer`` (a model
returning a dict of outputs such as ``{"probabilities", "embedding"}``) or, in a functional
model, the output of its layer of that name (``--layer=gap`` of the shipped CNNs). The
images are the data set's validation split (``--split`` to choose another), centre-cropped
as for evaluation (``pipelines.input.eval_inputs``); ``--limit`` keeps a seeded random
subset that spans every class. The map is ``fer_keras.plots.plot_embedding``.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from fer_keras import weights
from fer_keras.plots import plot_embedding
from fer_keras.saving import load_model, model_spec
from pipelines import cli
from pipelines.datasets import load_split
from pipelines.datasets.splits import evaluation_split
from pipelines.input import eval_inputs

FLAGS = flags.FLAGS


class Embedder:
    """Features ``[N, D]`` of aligned faces ``[N, *source_size, C]`` (0..255) from one output
    or layer of a model: preprocessing and forward pass in one compiled function.

    Args:
        model: a model carrying a ``ModelSpec`` (``fer_keras.saving.load_model``).
        layer: str. A key of the model's dict of outputs, or the name of a layer of a
            functional model. Features of more than one axis are flattened.
        batch_size: int. Images per forward pass.

    Raises:
        ValueError: the model has no output or (functional) layer of that name; the message
            lists its outputs and layers.
    """

    def __init__(self, model: keras.Model, layer: str = "embedding", batch_size: int = 256):
        self.spec = model_spec(model).input_spec
        self.layer = layer
        self.batch_size = int(batch_size)
        features = self._features(model, layer)
        names = self.spec.input_names
        self._forward = tf.function(lambda images: features({name: value for name, value in eval_inputs(images, self.spec).items() if name in names}), reduce_retracing=True)

    def _features(self, model: keras.Model, layer: str):
        probe = tf.zeros((1, *self.spec.source_size, self.spec.channels))
        outputs = model({name: value for name, value in eval_inputs(probe, self.spec).items() if name in self.spec.input_names}, training=False)
        if isinstance(outputs, dict) and layer in outputs:
            return lambda inputs: model(inputs, training=False)[layer]
        layer_names = [sub.name for sub in model.layers]
        if layer in layer_names:
            try:
                sub_model = keras.Model(model.input, model.get_layer(layer).output)
            except (AttributeError, ValueError):
                pass  # a subclassed model: its layers have no symbolic output
            else:
                return lambda inputs: sub_model(inputs, training=False)
        returned = f"outputs {', '.join(sorted(outputs))}" if isinstance(outputs, dict) else "a single output"
        raise ValueError(f"Model {model.name!r} returns {returned}, none named {layer!r}, and has no functional layer of that name (its layers: {', '.join(layer_names)}). Pass --layer=<an output or layer>.")

    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        if len(images) == 0:
            raise ValueError("No images to embed.")
        rows = []
        with cli.progress_bar(progress) as bar:
            task = bar.add_task(f"embed ({self.layer})", total=len(images))
            for start in range(0, len(images), self.batch_size):
                batch = self._forward(tf.constant(images[start : start + self.batch_size])).numpy()
                rows.append(batch.reshape(len(batch), -1))
                bar.advance(task, len(batch))
        return np.concatenate(rows)


def model_file(model: str) -> str:
    """``model`` itself when it is a path (an existing file or one ending in ``.keras``), else
    the shipped file of that pretrained name (unknown names list the known ones)."""
    if model.endswith(".keras") or os.path.exists(model):
        return model
    return weights.weights_path(model)


def main(argv):
    del argv
    if not FLAGS.output.lower().endswith(".png"):
        raise ValueError(f"--output must be a .png file. Received: --output={FLAGS.output}")
    model = load_model(model_file(FLAGS.model))
    spec = model_spec(model)
    embedder = Embedder(model, FLAGS.layer)  # before loading data: a missing layer fails at once
    split = FLAGS.split or evaluation_split(FLAGS.dataset, FLAGS.data_dir)
    arrays = load_split(FLAGS.dataset, FLAGS.data_dir, split, spec.input_spec, limit=FLAGS.limit)
    labels = arrays.targets if arrays.targets.ndim == 1 else arrays.targets.argmax(axis=1)
    features = embedder(arrays.images, progress=True)
    title = f"{os.path.basename(FLAGS.model)} {FLAGS.layer}: t-SNE of {len(features)} {FLAGS.dataset}/{split} images"
    plot_embedding(features, labels, arrays.class_names, FLAGS.output, title)
    print(f"t-SNE of {len(features)} {features.shape[1]}-d features ({FLAGS.layer}) of {FLAGS.dataset}/{split} written to {FLAGS.output}")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("model", None, "A .keras model file, or a shipped pretrained name (e.g. vgg4-fer2013).")
    flags.DEFINE_string("data_dir", None, "Root of the data set.")
    flags.DEFINE_string("output", None, "The PNG to write.")
    flags.DEFINE_string("dataset", "fer2013", "Data set adapter name (see fer_keras.train --help).")
    flags.DEFINE_string("split", None, "Split to embed (default: the data set's validation split).")
    flags.DEFINE_integer("limit", 2000, "Embed at most this many images (a seeded subset spanning every class).")
    flags.DEFINE_string("layer", "embedding", "The model output, or functional layer, whose values are embedded.")
    flags.mark_flags_as_required(["model", "data_dir", "output"])
    cli.run(main)
