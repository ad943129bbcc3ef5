"""The contract between pipelines and models: what a model eats, declared next to it."""

from __future__ import annotations

import dataclasses

from fer_spec.geometry import FRAMINGS

# Pixel normalisations a spec may name; ``pipelines.input.normalize`` implements each.
NORMALIZATIONS = ("unit",)


def check_fields(cls, data: dict, what: str) -> None:
    """Raise ``ValueError`` naming the keys of ``data`` that are no field of dataclass ``cls``."""
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {what} field(s) {unknown}. Known: {sorted(known)}")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Input contract of a model.

    Args:
        image_size: (height, width) of the network's ``face`` input (the crop).
        source_size: (height, width) of the aligned face the pipeline starts from; training
            takes random crops of ``image_size`` from it, evaluation the centre crop (or
            ten crops). FER2013 papers crop 44x44 from 48x48.
        channels: 1 (grayscale) or 3 (RGB).
        regions: extra inputs cut from the aligned face, name -> (height, width), e.g.
            MrCAR's ``{"eyes": (20, 44), "mouth": (26, 44)}``. Empty for single-input models.
        normalization: how 0..255 pixels become model inputs: ``"unit"`` divides by 255.
        framing: how a face found in a photo becomes the ``source_size`` image, matching the
            training data: ``"aligned"`` (similarity alignment of the 5 landmarks to the
            template, as ``pipelines.preprocess`` caches) or ``"fer2013_box"`` (the square
            frame around the detector's box that FER2013 / FER+ images have,
            ``fer_spec.geometry.FER2013_BOX_FRAME``).
    """

    image_size: tuple[int, int] = (44, 44)
    source_size: tuple[int, int] = (48, 48)
    channels: int = 1
    regions: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    normalization: str = "unit"
    framing: str = "aligned"

    def __post_init__(self):
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}. Received: framing={self.framing!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels}")
        if any(i > s for i, s in zip(self.image_size, self.source_size)):
            raise ValueError(
                f"image_size must fit inside source_size. Received: image_size={self.image_size}, "
                f"source_size={self.source_size}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}. Received: normalization={self.normalization!r}")

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("face",) + tuple(self.regions)

    def input_shapes(self) -> dict[str, tuple[int, int, int]]:
        shapes = {"face": (*self.image_size, self.channels)}
        shapes.update({name: (*size, self.channels) for name, size in self.regions.items()})
        return shapes

    def to_dict(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "source_size": list(self.source_size),
            "channels": self.channels,
            "regions": {name: list(size) for name, size in self.regions.items()},
            "normalization": self.normalization,
            "framing": self.framing,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        check_fields(cls, data, "input spec")
        return cls(
            image_size=tuple(int(v) for v in data["image_size"]),
            source_size=tuple(int(v) for v in data["source_size"]),
            channels=int(data["channels"]),
            regions={name: tuple(int(v) for v in size) for name, size in data.get("regions", {}).items()},
            normalization=data.get("normalization", "unit"),
            framing=data.get("framing", "aligned"),
        )
