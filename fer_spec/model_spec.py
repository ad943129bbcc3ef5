"""What a trained model needs to be scored, stored with it (``.keras``, SavedModel, card)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fer_spec.input_spec import InputSpec, check_fields


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The scoring contract of one model, saved with it and read back from there.

    Everything that scores a model (evaluation, export, the Recognizer, the weights builder)
    reads this, never the model's name: a model saved under another name scores the same.

    Args:
        architecture: str. Registry name of the builder (``"baseline"``, ``"mrcar"``).
        input_spec: InputSpec. Crop, source size, channels, regions, normalisation.
        class_names: tuple of str. Output order of the class probabilities.
        options: dict. Builder options the model was built with (JSON values).
        ten_crop: bool. Whether the model's paper scores it with ten-crop testing.
        dataset: str. Data set it was trained on ("" when unknown).
        output: str. Name of the inference output when the model returns a dict of
            outputs (auxiliary outputs such as an embedding are for training losses only).
        temperature: float. Calibration temperature ``T`` (Guo et al. 2017): scoring returns
            ``softmax(log p / T)`` of the model's probabilities ``p``. 1.0 = as trained.
        temperature_weights: tuple of float, ``num_classes + 1`` values ``(w_1..w_K, b)``, or
            empty. A per-face temperature (parameterized temperature scaling, C. Tomani,
            D. Cremers, F. Buettner, ECCV 2022): ``T(x) = temperature * exp(b + sum_k w_k s_k)``
            with ``s`` the face's log-probabilities sorted in descending order (clipped at
            ``log 1e-12``; the exponent at +-10). Like a single ``T`` it keeps every ranking;
            unlike it, it can soften confident faces and sharpen ambiguous ones. Empty = one
            ``T`` for every face.
    """

    architecture: str
    input_spec: InputSpec
    class_names: tuple[str, ...]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    ten_crop: bool = False
    dataset: str = ""
    output: str = "probabilities"
    temperature: float = 1.0
    temperature_weights: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "temperature_weights", tuple(float(w) for w in self.temperature_weights))
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be positive. Received: temperature={self.temperature}")
        if self.temperature_weights and len(self.temperature_weights) != len(self.class_names) + 1:
            raise ValueError(f"temperature_weights must hold num_classes + 1 = {len(self.class_names) + 1} values (w_1..w_K, b). "
                             f"Received {len(self.temperature_weights)}: {list(self.temperature_weights)}")
        if not self.class_names:
            raise ValueError("class_names must name at least one class.")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be distinct. Received: class_names={list(self.class_names)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready fields; ``temperature_weights`` only when set (specs written before it existed read back equal)."""
        data = {
            "architecture": self.architecture,
            "input_spec": self.input_spec.to_dict(),
            "class_names": list(self.class_names),
            "options": dict(self.options),
            "ten_crop": self.ten_crop,
            "dataset": self.dataset,
            "output": self.output,
            "temperature": self.temperature,
        }
        if self.temperature_weights:
            data["temperature_weights"] = list(self.temperature_weights)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        check_fields(cls, data, "model spec")
        return cls(
            architecture=data["architecture"],
            input_spec=InputSpec.from_dict(data["input_spec"]),
            class_names=tuple(str(name) for name in data["class_names"]),
            options=dict(data.get("options", {})),
            ten_crop=bool(data.get("ten_crop", False)),
            dataset=str(data.get("dataset", "")),
            output=str(data.get("output", "probabilities")),
            temperature=float(data.get("temperature", 1.0)),
            temperature_weights=tuple(float(w) for w in data.get("temperature_weights", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls.from_dict(json.loads(text))
