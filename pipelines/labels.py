"""Canonical label spaces: ordered class lists, never positional assumptions.

Every adapter maps its source's labels into one of these tuples. The 7-class space uses
FER2013's id order (0=angry 1=disgust 2=fear 3=happy 4=sad 5=surprise 6=neutral), so a
FER2013 CSV label id is its canonical id; the 8-class space appends ``contempt``.
"""

from __future__ import annotations

BASIC7: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
BASIC8: tuple[str, ...] = BASIC7 + ("contempt",)

# Spellings used by the sources, mapped to canonical names.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happy",
    "happiness": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
}


def canonical_name(name: str) -> str:
    """Return the canonical class name for a source spelling (case-insensitive).

    Raises:
        ValueError: the name is not an emotion we know, with the accepted names.
    """
    key = name.strip().lower()
    if key not in SYNONYMS:
        raise ValueError(
            f"Unknown emotion label {name!r}. Expected one of {sorted(set(SYNONYMS))}."
        )
    return SYNONYMS[key]


def class_space(num_classes: int) -> tuple[str, ...]:
    """The canonical class list with 7 or 8 classes."""
    if num_classes == 7:
        return BASIC7
    if num_classes == 8:
        return BASIC8
    raise ValueError(f"A label space has 7 or 8 classes. Received: num_classes={num_classes}")
