"""A model's training objective: the losses the one training loop minimises, declared by the model.

An ``Objective`` is a weighted sum of ``Term`` s. Each term reads one named output of the
model (``"probabilities"``; auxiliary training-only outputs such as MrCAR's ``"cosine"``
or an embedding) and the batch ``Targets``; it returns a per-example loss. What the
registry declares for a model (``register_model(..., objective=...)``) is a factory
``objective(model, target_kind, **options) -> Objective``; presets and
``--objective_options`` set its options, and unknown options are an error naming the
known ones.

Kinds of term the loop supports, each under the default, mirrored and multi-worker
strategies:

- plain losses (``CrossEntropy``, ``ArcFaceTerm``), weighted;
- a per-batch random choice between losses (``LossChoice``, FAML's multi-loss): one draw
  per global batch, made by the loop from ``(seed, step)`` so every replica and a resumed
  run make the same choice; the batch's loss is exactly one of the alternatives;
- losses that change with training progress (``ContextLoss``, e.g. an ArcFace margin that
  grows from 0 over the first epochs): the loop passes a ``Context`` with the draw and the
  fractional epoch;
- losses with state of their own that the optimiser does not update (``StatefulLoss``,
  e.g. ``fer_keras.losses.CenterLoss``: class centres moved by a rule). The loop sums
  their update statistics over replicas and applies them after the optimiser step, so
  the state stays identical everywhere; it is part of the run's checkpoint;
- soft targets: label distributions from the data (FER+ votes) or from a frozen
  ``teacher`` network's softmax on the same augmented batch.

Nothing here reaches export or serving: an exported model has only its inference output.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Sequence

import keras
from keras import ops

TARGET_KINDS = ("labels", "distribution", "multi_hot")


@dataclasses.dataclass
class Targets:
    """What a batch says about its images.

    Attributes:
        labels: int32 ``[B]`` class ids (the argmax of ``values`` for soft targets).
        values: the targets as the data gives them: ids ``[B]``, a distribution ``[B, K]``
            or a multi-hot mask ``[B, K]``.
        kind: one of ``TARGET_KINDS``.
    """

    labels: Any
    values: Any
    kind: str

    @classmethod
    def from_batch(cls, targets, kind: str) -> "Targets":
        if kind not in TARGET_KINDS:
            raise ValueError(f"kind must be one of {TARGET_KINDS}. Received: kind={kind!r}")
        if kind == "labels":
            return cls(ops.cast(ops.reshape(targets, (-1,)), "int32"), targets, kind)
        values = ops.cast(targets, "float32")
        return cls(ops.cast(ops.argmax(values, axis=-1), "int32"), values, kind)


@dataclasses.dataclass
class Context:
    """What the loop tells context-dependent losses about the current batch.

    Attributes:
        draw: float32 scalar, uniform in [0, 1), one per global batch (same on every replica).
        epoch: float32 scalar, training progress in epochs (``epoch + step / steps``, 0-based).
    """

    draw: Any = 0.0
    epoch: Any = 0.0


class ContextLoss:
    """Base of term losses that read the ``Context``: ``__call__(targets, output, context)``."""

    def __call__(self, targets: "Targets", output, context: Context):
        raise NotImplementedError


class Term:
    """One loss on one model output, with its weight.

    Args:
        name: str. Shown in logs.
        loss: callable ``(targets: Targets, output) -> [B]`` per-example loss.
        output: str. Key of the model output the loss reads.
        weight: float. Multiplier in the sum.
        target_kinds: kinds of target the loss accepts.
        warmup_epochs: float. Ramp the weight linearly from 0 at the start of training to
            ``weight`` at this (fractional) epoch; ``0``: the full weight from the start.
            For auxiliary losses that would otherwise dominate an untrained network (e.g.
            a center loss pulling every feature towards centres that start at zero).
    """

    def __init__(self, name: str, loss: Callable, output: str = "probabilities", weight: float = 1.0, target_kinds: Sequence[str] = TARGET_KINDS, warmup_epochs: float = 0.0):
        if float(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0. Received: warmup_epochs={warmup_epochs} for term {name!r}")
        self.name, self.loss, self.output, self.weight = name, loss, output, float(weight)
        self.target_kinds = tuple(target_kinds)
        self.warmup_epochs = float(warmup_epochs)

    def weight_at(self, epoch) -> Any:
        """The term's weight at training progress ``epoch`` (see ``warmup_epochs``)."""
        if not self.warmup_epochs:
            return self.weight
        return self.weight * ops.clip(ops.cast(epoch, "float32") / self.warmup_epochs, 0.0, 1.0)

    def per_example(self, targets: Targets, outputs: dict, context: Context) -> Any:
        if isinstance(self.loss, ContextLoss):
            return self.loss(targets, outputs[self.output], context)
        if isinstance(self.loss, StatefulLoss):
            # Straight to ``call``: Layer.__call__ accepts only tensors positionally.
            return self.loss.call(targets, outputs[self.output])
        return self.loss(targets, outputs[self.output])


class LossChoice(ContextLoss):
    """A random choice between losses, drawn once per batch (not a weighted sum).

    Args:
        options: sequence of ``(probability, loss)``; probabilities sum to 1.

    The loop provides ``context.draw``, one uniform number in [0, 1) per global batch; the
    batch uses the first option whose cumulative probability exceeds it.
    """

    def __init__(self, options: Sequence[tuple[float, Callable]]):
        total = sum(p for p, _ in options)
        if not options or abs(total - 1.0) > 1e-6 or any(p < 0 for p, _ in options):
            raise ValueError(f"options need probabilities >= 0 summing to 1. Received: {[p for p, _ in options]}")
        self.options = list(options)

    def index(self, draw):
        """Index of the option ``draw`` selects (an int32 scalar)."""
        index = ops.convert_to_tensor(0, "int32")
        cumulative = 0.0
        for i, (p, _) in enumerate(self.options[:-1]):
            cumulative += p
            index = ops.where(ops.logical_and(index == i, draw >= cumulative), i + 1, index)
        return index

    def __call__(self, targets: Targets, output, context: Context):
        index = self.index(context.draw)
        result = self.options[-1][1](targets, output)
        for i in range(len(self.options) - 2, -1, -1):
            result = ops.where(index == i, self.options[i][1](targets, output), result)
        return result


class StatefulLoss(keras.layers.Layer):
    """Base of losses with state that a rule, not the optimiser, updates (e.g. class centres).

    A layer so that its state is a (non-trainable) weight that checkpoints track; the
    objective calls ``call`` directly. Subclasses create their weights in ``__init__`` and
    implement ``call(targets, output) -> [B]`` (the loss),
    ``statistics(targets, output) -> tuple of tensors`` (sums over the batch that the rule
    needs; the loop adds them up over replicas) and ``apply_statistics(*sums)``.
    """

    def statistics(self, targets: Targets, output) -> tuple:
        raise NotImplementedError

    def apply_statistics(self, *sums) -> None:
        raise NotImplementedError


class Objective:
    """The weighted sum of a model's loss terms (see the module docstring).

    Args:
        terms: list of ``Term``.
        teacher: optional frozen ``keras.Model`` whose inference output on the training
            batch replaces the targets by a distribution (label-distribution learning).
        options: dict. The options the factory was called with (kept for the run record).
    """

    def __init__(self, terms: Sequence[Term], teacher: keras.Model | None = None, options: dict | None = None):
        if not terms:
            raise ValueError("An objective needs at least one term.")
        self.terms = list(terms)
        self.teacher = teacher
        self.options = dict(options or {})
        if teacher is not None:
            teacher.trainable = False

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(term.output for term in self.terms))

    @property
    def stateful_terms(self) -> list[Term]:
        return [term for term in self.terms if isinstance(term.loss, StatefulLoss)]

    def check_targets(self, kind: str) -> None:
        """Raise if a term cannot learn from targets of ``kind`` (e.g. ArcFace from a distribution)."""
        kind = "distribution" if self.teacher is not None else kind
        for term in self.terms:
            if kind not in term.target_kinds:
                raise ValueError(f"Loss term {term.name!r} needs targets of kind {term.target_kinds}; the data gives {kind!r}.")

    def __call__(self, targets: Targets, outputs, context: Context | None = None):
        """``(total [B], {term name: [B]})``: the weighted sum and each term's per-example loss."""
        context = context or Context()
        outputs = outputs if isinstance(outputs, dict) else {"probabilities": outputs}
        missing = [name for name in self.outputs if name not in outputs]
        if missing:
            raise ValueError(f"The objective reads outputs {missing}, but the model returns {sorted(outputs)}.")
        values = {term.name: ops.cast(term.per_example(targets, outputs, context), "float32") for term in self.terms}
        total = sum(term.weight_at(context.epoch) * values[term.name] for term in self.terms)
        return total, values


def call_factory(factory: Callable, model: keras.Model, target_kind: str, options: dict) -> Objective:
    """``factory(model, target_kind, **options)``, with unknown option keys named."""
    known = [name for name in inspect.signature(factory).parameters if name not in ("model", "target_kind")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"Unknown objective option(s) {unknown}. Known: {sorted(known)}")
    objective = factory(model, target_kind, **options)
    objective.options = dict(options)
    objective.check_targets(target_kind)
    return objective
