"""One registry maps model names to builders, input specs and training presets."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras

from fer_keras.input_spec import InputSpec


@dataclasses.dataclass(frozen=True)
class Preset:
    """Named training settings from a paper; the CLI prints it at start and flags override it.

    Args:
        name: str. What ``--preset`` selects.
        description: str. One line printed at start (cite the paper's section).
        settings: dict. ``LoopConfig`` fields (epochs, batch_size, optimizer, learning_rate,
            lr_schedule, lr_decay_*, ...).
        input_spec: InputSpec or None. Overrides the model's default input (e.g. 98x98 RAF-DB).
        model_options: dict. Keyword arguments of the builder (``--model_options`` overrides).
        ten_crop: bool. Whether the paper evaluates with ten-crop testing.
    """

    name: str
    description: str
    settings: dict[str, Any]
    input_spec: InputSpec | None = None
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    ten_crop: bool = False


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered model. ``label_input``: the model takes ``inputs["label"]`` (class ids)
    while training (e.g. an ArcFace margin head); the training loop then feeds the targets."""

    name: str
    builder: Callable[..., keras.Model]
    input_spec: InputSpec
    presets: dict[str, Preset]
    default_preset: str
    label_input: bool = False


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, input_spec: InputSpec, presets: list[Preset], default_preset: str, label_input: bool = False):
    """Decorator registering ``builder(num_classes, input_spec, **options) -> keras.Model``."""

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"Model {name!r} is registered twice ({_REGISTRY[name].builder} and {builder}).")
        by_name = {p.name: p for p in presets}
        if default_preset not in by_name:
            raise ValueError(f"default_preset {default_preset!r} of {name!r} is not in {sorted(by_name)}")
        _REGISTRY[name] = ModelEntry(name, builder, input_spec, by_name, default_preset, label_input)
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


def build_model(name: str, num_classes: int, input_spec: InputSpec | None = None, **options) -> keras.Model:
    entry = get_model_entry(name)
    return entry.builder(num_classes=num_classes, input_spec=input_spec or entry.input_spec, **options)
