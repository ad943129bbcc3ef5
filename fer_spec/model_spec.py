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
    """

    architecture: str
    input_spec: InputSpec
    class_names: tuple[str, ...]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    ten_crop: bool = False
    dataset: str = ""
    output: str = "probabilities"
    temperature: float = 1.0

    def __post_init__(self):
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be positive. Received: temperature={self.temperature}")
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
        return {
            "architecture": self.architecture,
            "input_spec": self.input_spec.to_dict(),
            "class_names": list(self.class_names),
            "options": dict(self.options),
            "ten_crop": self.ten_crop,
            "dataset": self.dataset,
            "output": self.output,
            "temperature": self.temperature,
        }

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
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls.from_dict(json.loads(text))
