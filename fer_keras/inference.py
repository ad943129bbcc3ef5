"""Inference: the one place a trained model is scored (spec, preprocessing, forward, ten-crop).

Evaluation, training's validation pass, export, the Recognizer and the weights builder all
score through this module. Everything it needs comes from the model's ``ModelSpec``
(``fer_keras.saving.model_spec``), never from the model's name. It does not import
``fer_keras.training``.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from fer_keras.metrics import classification_report
from fer_keras.saving import model_spec
from fer_spec import ModelSpec
from pipelines.input import eval_inputs, ten_crop_inputs


def inference_output(outputs, spec: ModelSpec) -> tf.Tensor:
    """The class probabilities among a model's outputs (the output itself, or the entry
    ``spec.output`` of a dict of outputs; the others serve training losses only), calibrated
    with ``spec.temperature`` and ``spec.temperature_weights``: ``softmax(log p / T(x))``, the
    same ranking (``fer_keras.calibration.apply_temperature`` is the NumPy reference)."""
    if isinstance(outputs, dict):
        if spec.output not in outputs:
            raise ValueError(f"The model returned outputs {sorted(outputs)}; its spec names {spec.output!r} as the inference output.")
        outputs = outputs[spec.output]
    probabilities = tf.cast(outputs, tf.float32)
    if spec.temperature == 1.0 and not spec.temperature_weights:
        return probabilities
    log_p = tf.math.log(tf.maximum(probabilities, 1e-12))
    temperature = tf.constant(spec.temperature, tf.float32)
    if spec.temperature_weights:
        weights = tf.constant(spec.temperature_weights[:-1], tf.float32)
        ranked = tf.sort(log_p, axis=-1, direction="DESCENDING")
        exponent = tf.reduce_sum(ranked * weights, axis=-1, keepdims=True) + spec.temperature_weights[-1]
        temperature = temperature * tf.exp(tf.clip_by_value(exponent, -10.0, 10.0))
    return tf.nn.softmax(log_p / temperature, axis=-1)


def forward(model: keras.Model, inputs: dict, spec: ModelSpec) -> tf.Tensor:
    """Class probabilities float32 ``[N, K]`` of prepared model inputs (``training=False``;
    only the inputs the spec names are passed). ``model``: a Keras model, or a callable with
    its call signature (``fer_keras.export.savedmodel.Float16Weights``)."""
    names = spec.input_spec.input_names
    return inference_output(model({name: inputs[name] for name in names}, training=False), spec)


def probabilities(model: keras.Model, images: tf.Tensor, spec: ModelSpec, use_ten_crop: bool = False) -> tf.Tensor:
    """Class probabilities of aligned faces ``[N, *source_size, C]`` (0..255): centre crop,
    or the mean over ten crops."""
    if use_ten_crop:
        scores = forward(model, ten_crop_inputs(images, spec.input_spec), spec)
        return tf.reduce_mean(tf.reshape(scores, (-1, 10, spec.num_classes)), axis=1)
    return forward(model, eval_inputs(images, spec.input_spec), spec)


class Scorer:
    """Class probabilities ``[N, K]`` of aligned faces uint8/float ``[N, *source_size, C]``:
    preprocessing and the forward pass in one compiled function, built once and reused.

    Args:
        model: a model carrying a ``ModelSpec`` (built by the registry or loaded with
            ``fer_keras.saving.load_model``).
        use_ten_crop: bool. Average 4 corner + centre crops and their mirrors.
        batch_size: int. Images per forward pass.
    """

    def __init__(self, model: keras.Model, use_ten_crop: bool = False, batch_size: int = 256):
        self.spec = model_spec(model)
        self.use_ten_crop = bool(use_ten_crop)
        self.batch_size = int(batch_size)
        # A weak reference: a cached Scorer (``predict_scores``) must not keep its model alive.
        model_ref = weakref.ref(model)
        self._forward = tf.function(lambda images: probabilities(model_ref(), images, self.spec, self.use_ten_crop), reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        input_spec = self.spec.input_spec
        expected = (*input_spec.source_size, input_spec.channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must be [N, {expected[0]}, {expected[1]}, {expected[2]}] for this model. Received: {images.shape}")
        if len(images) == 0:
            raise ValueError("No images to score.")
        return np.concatenate([self._forward(tf.constant(images[start : start + self.batch_size])).numpy() for start in range(0, len(images), self.batch_size)])


# model -> {(ten_crop, batch_size): Scorer}; an entry goes when its model is garbage-collected.
_SCORERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_scorer(model: keras.Model, use_ten_crop: bool = False, batch_size: int = 256) -> Scorer:
    """The ``Scorer`` of ``model`` with these settings, built on first use and reused while the
    model lives and its spec is unchanged (a new spec, e.g. a calibration temperature, gets a
    new one): the validation pass after every training epoch traces its function once, not
    once per epoch."""
    scorers = _SCORERS.setdefault(model, {})
    key = (bool(use_ten_crop), int(batch_size))
    scorer = scorers.get(key)
    if scorer is None or scorer.spec != model_spec(model):
        scorer = scorers[key] = Scorer(model, *key)
    return scorer


def predict_scores(model: keras.Model, images: np.ndarray, batch_size: int = 256, use_ten_crop: bool = False) -> np.ndarray:
    """Class probabilities ``[N, K]`` for aligned faces, centre crop or ten-crop averaged (see ``Scorer``)."""
    return cached_scorer(model, use_ten_crop, batch_size)(images)


def evaluate_arrays(model: keras.Model, images: np.ndarray, targets: np.ndarray, batch_size: int = 256, use_ten_crop: bool = False) -> dict:
    """Loss, accuracy and mean per-class accuracy on arrays (a local pass, no collectives).

    ``targets``: class ids ``[N]`` or label distributions ``[N, K]`` (scored on their argmax;
    the loss is the cross-entropy against the distribution).
    """
    scores = predict_scores(model, images, batch_size, use_ten_crop)
    labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
    if targets.ndim == 1:
        loss = -np.mean(np.log(np.clip(scores[np.arange(len(labels)), labels], 1e-7, 1.0)))
    else:
        loss = -np.mean(np.sum(targets * np.log(np.clip(scores, 1e-7, 1.0)), axis=1))
    report = classification_report(labels, scores, class_names=list(model_spec(model).class_names))
    return {"loss": float(loss), "accuracy": report["accuracy"], "mean_class_accuracy": report["mean_class_accuracy"], "scores": scores}
