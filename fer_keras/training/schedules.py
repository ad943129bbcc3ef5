"""Per-epoch learning-rate schedules and optimisers selected by name."""

from __future__ import annotations

import math

import keras

SCHEDULES = ("constant", "step", "cosine")
OPTIMIZERS = ("sgd", "adam", "adamw")


def learning_rate_at(epoch: int, base: float, schedule: str, epochs: int, decay_start: int = 0, decay_every: int = 1, decay_factor: float = 0.1, warmup_epochs: int = 0) -> float:
    """Learning rate of ``epoch`` (0-based).

    ``step``: ``base * decay_factor ** k`` with ``k = (epoch - decay_start) // decay_every + 1``
    from ``decay_start`` on (MrCAR: x0.9 every 5 epochs after epoch 80); ``cosine``: half
    cosine from ``base`` to 0 over ``epochs`` (after the warm-up, over the epochs left).
    ``warmup_epochs``: the first epochs ramp linearly, ``base * (epoch + 1) / (warmup + 1)``.
    """
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0. Received: warmup_epochs={warmup_epochs}")
    if epoch < warmup_epochs:
        return base * (epoch + 1) / (warmup_epochs + 1)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)))
    if schedule == "constant":
        return base
    if schedule == "step":
        if decay_every < 1:
            raise ValueError(f"decay_every must be >= 1. Received: decay_every={decay_every}")
        if epoch < decay_start:
            return base
        return base * decay_factor ** ((epoch - decay_start) // decay_every + 1)
    raise ValueError(f"Unknown lr_schedule {schedule!r}. Expected one of {SCHEDULES}.")


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False) -> keras.optimizers.Optimizer:
    """An optimiser by name; ``nesterov`` applies to ``sgd`` only (Khaireddin & Chen 2021's
    best FER2013 optimiser is SGD with Nesterov momentum)."""
    if nesterov and name != "sgd":
        raise ValueError(f"nesterov applies to the sgd optimizer only. Received: optimizer={name!r}")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 0.004)
    raise ValueError(f"Unknown optimizer {name!r}. Expected one of {OPTIMIZERS}.")
