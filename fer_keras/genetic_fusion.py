"""FGA: feature fusion among networks based on a genetic algorithm (FAML-FGA-T2V Sec. 3.2, Algorithm 1).

One generation turns M trained networks of one architecture into new ones:

1. **Selection** (Algorithm 1, lines 3-4). The paper says only that each network's
   probability of being selected is computed "according to the loss in the training
   process" and that networks are selected "randomly and preferentially"; it prints no
   formula. We use fitness-proportional (roulette-wheel) selection with fitness ``1 / L_l``::

       p_l = (1 / L_l) / sum_k (1 / L_k)

   where ``L_l`` is network ``l``'s cross-entropy on training images. The ``k`` parents of
   one fused network are drawn one after another without replacement, each draw from the
   remaining networks with their ``p`` renormalised (:func:`select_parents`).
2. **Fusion** (lines 5-7, Eq. 9). Every convolution kernel (and bias) of the fused network is
   the mean of the selected parents' at the same place: ``W_ji = 1/k sum_l W_ji^l``.
   Eq. 9 says nothing of the other weights. The paper "forcibly updates the convolution layer
   parameters in the main network", so by default (``other_weights="fittest"``) every other
   weight (batch-norm scale and offset, dense layers, attention projections) is the fittest
   selected parent's (lowest loss); ``other_weights="mean"`` averages them too.
   Batch-norm moving statistics are not averaged: the fused kernels change every feature
   distribution, so they are re-estimated on training images (:func:`reestimate_batch_norm`,
   a cumulative average of batch statistics, as ``torch.optim.swa_utils.update_bn``).
3. **Retraining** (lines 8-10): the fused networks are fine-tuned through the training loop
   (``fer_keras.members``), optionally beside freshly initialised networks, and become the
   next generation's input (``python -m fer_keras.fga``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from fer_keras.saving import model_spec
from pipelines.input import eval_inputs

CONV_LAYERS = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose, keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
OTHER_WEIGHTS = ("fittest", "mean")


def selection_probabilities(losses: Sequence[float]) -> np.ndarray:
    """Roulette-wheel probabilities ``p_l = (1/L_l) / sum_k (1/L_k)`` of networks with losses ``L``."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or len(losses) == 0 or not np.all(np.isfinite(losses)) or np.any(losses <= 0):
        raise ValueError(f"losses must be finite positive numbers, one per network. Received: {losses.tolist()}")
    fitness = 1.0 / losses
    return fitness / fitness.sum()


def select_parents(probabilities: Sequence[float], count: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``count`` distinct networks, drawn one at a time with ``probabilities``
    renormalised over the networks not yet drawn."""
    p = np.asarray(probabilities, dtype=np.float64)
    if not 1 <= count <= len(p):
        raise ValueError(f"count must be between 1 and the {len(p)} networks. Received: count={count}")
    chosen = []
    for _ in range(count):
        remaining = p.copy()
        remaining[chosen] = 0.0
        chosen.append(int(rng.choice(len(p), p=remaining / remaining.sum())))
    return chosen


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested ones (blocks, sub-models) included."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def conv_weight_mask(model: keras.Model) -> list[bool]:
    """Per entry of ``model.weights``: whether it belongs to a convolution layer (kernel or bias)."""
    conv = {id(v) for layer in _layers(model) if isinstance(layer, CONV_LAYERS) for v in layer.weights}
    return [id(v) in conv for v in model.weights]


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def check_same_architecture(models: Sequence[keras.Model], names: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` naming the first difference when ``models`` are not one architecture
    (registry name and builder options, input, classes, and every weight's kind and shape)."""
    names = list(names or [m.name for m in models])
    if len(models) < 2:
        raise ValueError(f"FGA fuses at least 2 networks. Received: {len(models)}")
    first = models[0]
    first_spec = model_spec(first)
    for model, name in zip(models[1:], names[1:]):
        spec = model_spec(model)
        for field in ("architecture", "options", "input_spec", "class_names"):
            if getattr(spec, field) != getattr(first_spec, field):
                raise ValueError(f"FGA needs networks of one architecture: {name} has {field} {getattr(spec, field)!r}, {names[0]} has {getattr(first_spec, field)!r}.")
        if len(model.weights) != len(first.weights):
            raise ValueError(f"FGA needs networks of one architecture: {name} has {len(model.weights)} weights, {names[0]} has {len(first.weights)}.")
        for a, b in zip(first.weights, model.weights):
            if (a.name, tuple(a.shape)) != (b.name, tuple(b.shape)):
                raise ValueError(f"FGA needs networks of one architecture: {name} has weight {b.path} {tuple(b.shape)} where {names[0]} has {a.path} {tuple(a.shape)}.")


def fused_weights(parents: Sequence[keras.Model], fittest: int, other_weights: str = "fittest") -> list[np.ndarray]:
    """The fused network's weights, in ``model.weights`` order (see the module docstring).

    Args:
        parents: the selected networks, one architecture.
        fittest: int. Index in ``parents`` of the one with the lowest loss.
        other_weights: "fittest" (the fittest parent's non-convolution weights) or "mean".

    Batch-norm moving statistics are the fittest parent's here; re-estimate them afterwards.
    """
    if other_weights not in OTHER_WEIGHTS:
        raise ValueError(f"other_weights must be one of {OTHER_WEIGHTS}. Received: other_weights={other_weights!r}")
    check_same_architecture(parents)
    moving = {id(v) for layer in batch_norm_layers(parents[fittest]) for v in (layer.moving_mean, layer.moving_variance)}
    averaged = conv_weight_mask(parents[fittest])
    if other_weights == "mean":
        averaged = [a or id(v) not in moving for a, v in zip(averaged, parents[fittest].weights)]
    values = [m.get_weights() for m in parents]
    return [np.mean([v[i] for v in values], axis=0).astype(values[fittest][i].dtype) if average else values[fittest][i]
            for i, average in enumerate(averaged)]


def reestimate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> int:
    """Replace every batch-norm layer's moving mean and variance with the average of its batch
    statistics over ``images`` (aligned faces at the model's source size; centre crops),
    leaving every other weight unchanged. Returns the number of batches."""
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    spec = model_spec(model)
    names = spec.input_spec.input_names
    momenta = [layer.momentum for layer in layers]
    frozen = [(v, v.numpy()) for v in model.weights if not any(v is w for layer in layers for w in (layer.moving_mean, layer.moving_variance))]
    batches = 0
    try:
        for start in range(0, len(images) - batch_size + 1, batch_size):
            batches += 1
            for layer in layers:  # moving = (1 - 1/t) * moving + 1/t * batch: the running mean over t batches
                layer.momentum = 1.0 - 1.0 / batches
            inputs = eval_inputs(images[start : start + batch_size], spec.input_spec)
            model({name: inputs[name] for name in names}, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    for variable, value in frozen:  # nothing but the statistics may change (stateful layers in training mode)
        variable.assign(value)
    if batches == 0:
        raise ValueError(f"Re-estimating batch-norm statistics needs at least one batch of {batch_size} images. Received: {len(images)}")
    return batches
