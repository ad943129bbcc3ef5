"""One registry maps model names to builders, input specs, training objectives and presets.

A model family declares, in its own file under ``fer_keras/models/`` and nowhere else:

- its builder ``builder(num_classes, input_spec, **options) -> keras.Model``;
- its default ``InputSpec``;
- its training objective ``objective(model, target_kind, **options) -> Objective``
  (``fer_keras.objective``); the default is cross-entropy on the ``probabilities`` output;
- whether its graph is independent branches (``parallel_branches``, ``fer_keras.runtime``);
- its presets (a paper's settings), whose keys are checked: an unknown training setting,
  builder option or objective option is an error that names the known ones.

``build_model`` attaches the ``fer_spec.ModelSpec`` (input spec, class names) to the model;
``fer_keras.saving.save_model`` stores it in the ``.keras`` file.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Sequence

import keras

from fer_keras.losses.crossentropy import CrossEntropy
from fer_keras.objective import Objective, Term
from fer_keras.saving import attach_spec
from fer_spec import InputSpec, ModelSpec


def classification_objective(model: keras.Model, target_kind: str, label_smoothing: float = 0.0) -> Objective:
    """Cross-entropy on the ``probabilities`` output, for every target kind (FER+ schemes
    included, see ``fer_keras.losses.crossentropy``); optional label smoothing."""
    return Objective([Term("crossentropy", CrossEntropy(label_smoothing), "probabilities")])


@dataclasses.dataclass(frozen=True)
class Preset:
    """Named training settings from a paper; the CLI prints it at start and flags override it.

    Args:
        name: str. What ``--preset`` selects.
        description: str. One line printed at start (cite the paper's section).
        settings: dict. Training-loop settings (epochs, batch_size, optimizer,
            learning_rate, lr_schedule, lr_decay_*, ...; ``fer_keras.training.LoopConfig``).
        input_spec: InputSpec or None. Overrides the model's default input (e.g. 98x98 RAF-DB).
        model_options: dict. Keyword arguments of the builder (``--model_options`` overrides).
        objective_options: dict. Keyword arguments of the objective (``--objective_options``).
        ten_crop: bool. Whether the paper evaluates with ten-crop testing.
    """

    name: str
    description: str
    settings: dict[str, Any]
    input_spec: InputSpec | None = None
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    objective_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    ten_crop: bool = False


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered model (see the module docstring)."""

    name: str
    builder: Callable[..., keras.Model]
    input_spec: InputSpec
    presets: dict[str, Preset]
    default_preset: str
    objective: Callable[..., Objective] = classification_objective
    parallel_branches: bool = False

    def option_names(self) -> list[str]:
        """Builder options ``--model_options`` may set."""
        return [name for name in inspect.signature(self.builder).parameters if name not in ("num_classes", "input_spec")]

    def objective_option_names(self) -> list[str]:
        return [name for name in inspect.signature(self.objective).parameters if name not in ("model", "target_kind")]

    def check_options(self, model_options: dict, objective_options: dict) -> None:
        """Raise ``ValueError`` naming the known keys for unknown builder or objective options."""
        for kind, given, known in (("model", model_options, self.option_names()), ("objective", objective_options, self.objective_option_names())):
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise ValueError(f"Unknown {kind} option(s) {unknown} for {self.name!r}. Known: {sorted(known)}")


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, input_spec: InputSpec, presets: list[Preset], default_preset: str, objective: Callable[..., Objective] = classification_objective, parallel_branches: bool = False):
    """Decorator registering ``builder(num_classes, input_spec, **options) -> keras.Model``.

    ``parallel_branches``: the network is independent branches of small ops (MrCAR's regions),
    which train faster side by side than with each op split over the cores (``fer_keras.runtime``).
    """

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"Model {name!r} is registered twice ({_REGISTRY[name].builder} and {builder}).")
        by_name = {p.name: p for p in presets}
        if default_preset not in by_name:
            raise ValueError(f"default_preset {default_preset!r} of {name!r} is not in {sorted(by_name)}")
        entry = ModelEntry(name, builder, input_spec, by_name, default_preset, objective, parallel_branches)
        for preset in presets:
            entry.check_options(preset.model_options, preset.objective_options)
        _REGISTRY[name] = entry
        return builder

    return decorate


def _load_builtin_models() -> None:
    import fer_keras.models  # noqa: F401  (registers the built-in models)


def model_names() -> list[str]:
    _load_builtin_models()
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    _load_builtin_models()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, classes: int | Sequence[str], input_spec: InputSpec | None = None, ten_crop: bool = False, dataset: str = "", **options) -> keras.Model:
    """Build registered model ``name`` with its ``ModelSpec`` attached.

    Args:
        name: str. Registry name.
        classes: the class names in output order, or their number (names ``"0"``, ``"1"``, ...).
        input_spec: InputSpec or None (the registered default).
        ten_crop: bool. Whether scoring defaults to ten-crop testing (the preset's choice).
        dataset: str. Training data set, recorded in the spec.
        **options: builder options (unknown ones are an error naming the known ones).
    """
    entry = get_model_entry(name)
    entry.check_options(options, {})
    class_names = tuple(str(k) for k in range(classes)) if isinstance(classes, int) else tuple(str(c) for c in classes)
    spec = input_spec or entry.input_spec
    model = entry.builder(num_classes=len(class_names), input_spec=spec, **options)
    return attach_spec(model, ModelSpec(name, spec, class_names, options=dict(options), ten_crop=ten_crop, dataset=dataset))
