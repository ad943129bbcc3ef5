"""Briefly trained models on real FER2013 images, shared by the export and serving tests."""

from __future__ import annotations

import keras
import numpy as np

from fer_spec import InputSpec
from fer_keras.registry import build_model, get_model_entry
from pipelines.input import eval_inputs


def train_tiny_baseline(images: np.ndarray, targets: np.ndarray, classes=7, seed: int = 0, widths=(16, 32, 64), epochs: int = 2, spec: InputSpec | None = None,
                        dataset: str = "fer2013"):
    """A narrow baseline fitted on centre crops (no augmentation); returns ``(model, spec)``
    (``spec`` is the model's ``InputSpec``; its ``ModelSpec`` is attached to the model and
    records ``dataset``, the data set ``images`` come from). ``classes``: class names, or their number."""
    spec = spec or get_model_entry("baseline").input_spec
    keras.utils.set_random_seed(seed)
    model = build_model("baseline", classes, spec, dataset=dataset, widths=widths)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(eval_inputs(images, spec), targets, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return model, spec
