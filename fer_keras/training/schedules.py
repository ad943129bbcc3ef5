"""Per-epoch learning-rate schedules and optimisers selected by name.

``cosine_then_step_on_plateau`` is FAML's two learning-rate phases (Zhou, Xie, Tian,
``../shared/papers/faml_fga_t2v_ensemble.txt``, Sec. 3.1): ``Lr_1``, Adam at the base rate
(3e-4) with cosine annealing, until the loss "achieves a stable state", then ``Lr_2``,
``phase2_lr`` (1e-5) with a step schedule. The paper gives no test for "stable"; ours is
:func:`plateau_update`, the rule of PyTorch's ``ReduceLROnPlateau`` (mode "min", absolute
threshold) applied once, to switch phases:

- after each epoch the loop passes the epoch's mean training loss (the loss the network
  minimises; validation data stays out of training decisions);
- an epoch improves when its loss is below the best so far by more than ``min_delta``
  (absolute); otherwise it is a bad epoch;
- after ``patience`` bad epochs in a row the next epoch is the first of phase 2, and the
  rule stops (no third phase).

Phase 1 is the ``cosine`` schedule over the run's epochs (warm-up included); phase 2 is
PyTorch's ``StepLR`` from the switch: ``phase2_lr * decay_factor ** (k // decay_every)`` in
its ``k``-th epoch (``lr_decay_every``, ``lr_decay_factor``; torch's ``step_size`` and
``gamma``). The rule's state (best loss, bad epochs, switch epoch) is part of the run's
checkpoint (``fer_keras.training.loop``).
"""

from __future__ import annotations

import dataclasses
import math

import keras

PLATEAU_SCHEDULE = "cosine_then_step_on_plateau"
SCHEDULES = ("constant", "step", "cosine", PLATEAU_SCHEDULE)
OPTIMIZERS = ("sgd", "adam", "adamw")


def learning_rate_at(epoch: int, base: float, schedule: str, epochs: int, decay_start: int = 0, decay_every: int = 1, decay_factor: float = 0.1, warmup_epochs: int = 0, switch_epoch: int = -1, phase2_lr: float = 1e-5) -> float:
    """Learning rate of ``epoch`` (0-based).

    ``step``: ``base * decay_factor ** k`` with ``k = (epoch - decay_start) // decay_every + 1``
    from ``decay_start`` on (MrCAR: x0.9 every 5 epochs after epoch 80); ``cosine``: half
    cosine from ``base`` to 0 over ``epochs`` (after the warm-up, over the epochs left).
    ``warmup_epochs``: the first epochs ramp linearly, ``base * (epoch + 1) / (warmup + 1)``.
    ``cosine_then_step_on_plateau`` (module docstring): ``cosine`` before ``switch_epoch``
    (``-1``: not switched), then ``phase2_lr * decay_factor ** ((epoch - switch_epoch) // decay_every)``.
    """
    if schedule == PLATEAU_SCHEDULE:
        if 0 <= switch_epoch <= epoch:
            if decay_every < 1:
                raise ValueError(f"decay_every must be >= 1. Received: decay_every={decay_every}")
            return phase2_lr * decay_factor ** ((epoch - switch_epoch) // decay_every)
        schedule = "cosine"
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


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """The plateau rule's state after some epochs (module docstring).

    Attributes:
        best_loss: float. Lowest epoch loss so far (``inf`` before the first epoch).
        bad_epochs: int. Epochs in a row without an improvement larger than ``min_delta``.
        switch_epoch: int. First epoch (0-based) of phase 2, or ``-1`` while in phase 1.
    """

    best_loss: float = math.inf
    bad_epochs: int = 0
    switch_epoch: int = -1


def plateau_update(state: PlateauState, epoch: int, loss: float, patience: int, min_delta: float) -> PlateauState:
    """The state after epoch ``epoch`` (0-based) ended with mean training loss ``loss``."""
    if patience < 1 or min_delta < 0:
        raise ValueError(f"plateau_patience must be >= 1 and plateau_min_delta >= 0. Received: patience={patience}, min_delta={min_delta}")
    if state.switch_epoch >= 0:
        return state
    if loss < state.best_loss - min_delta:
        return PlateauState(loss, 0, -1)
    bad = state.bad_epochs + 1
    return PlateauState(state.best_loss, bad, epoch + 1 if bad >= patience else -1)


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
