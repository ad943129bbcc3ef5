"""Pretrained fer_keras models shipped inside the package: ``<name>.keras`` + ``<name>.json``.

``fer_keras.pretrained("baseline-fer2013")`` (the same as :func:`load_pretrained`) loads one
offline with ``safe_mode=True``. Each model has a card, ``<name>.json``: training data,
preset, the exact training command, validation accuracy with and without ten-crop,
per-class figures, parameter count, file size and SHA-256.

Storage: the ``.keras`` files hold their weights as float16 (half the bytes); Keras casts
them back to the model's float32 variables when it loads them, so the loaded model runs in
float32 like the trained one. The card records the accuracy of both the float32 source and
the float16 file on the full validation split (``fer_keras.weights.build`` measures them).

Add a model (one command; see ``build.py``)::

    python -m fer_keras.weights.build --name=mrcar-fer2013 --run_dir=../runs/mrcar-cosine-fer2013

Export one for TF Serving (``serving/models/<name>/<version>/``; see ``export.py``)::

    python -m fer_keras.weights.export --name=baseline-fer2013 --export_root=serving/models
"""

from __future__ import annotations

import hashlib
import json
import os

WEIGHTS_DIR = os.path.dirname(os.path.abspath(__file__))
# The model the Recognizer and the predict CLI use unless told otherwise: the most accurate
# shipped one on FER2013 validation (see the README's table).
DEFAULT_MODEL = "vgg4-wide-fer2013"


def pretrained_names(weights_dir: str | None = None) -> list[str]:
    """Names of the shipped models (a ``.keras`` file with its ``.json`` card) in
    ``weights_dir`` (default: this package folder)."""
    folder = weights_dir or WEIGHTS_DIR
    return sorted(
        name[: -len(".keras")]
        for name in os.listdir(folder)
        if name.endswith(".keras") and os.path.exists(os.path.join(folder, name[: -len(".keras")] + ".json"))
    )


def _check_name(name: str, weights_dir: str | None = None) -> None:
    known = pretrained_names(weights_dir)
    if name not in known:
        raise ValueError(f"Unknown pretrained model {name!r}. Known pretrained models: {', '.join(known) or '(none)'}")


def weights_path(name: str, weights_dir: str | None = None) -> str:
    """Path of the shipped ``<name>.keras`` (in ``weights_dir``, default this package folder)."""
    _check_name(name, weights_dir)
    return os.path.join(weights_dir or WEIGHTS_DIR, f"{name}.keras")


def model_card(name: str, weights_dir: str | None = None) -> dict:
    """The ``<name>.json`` model card as a dict (from ``weights_dir``, default this package folder)."""
    _check_name(name, weights_dir)
    with open(os.path.join(weights_dir or WEIGHTS_DIR, f"{name}.json")) as f:
        return json.load(f)


def write_card(name: str, card: dict, output_dir: str = WEIGHTS_DIR) -> str:
    """Write ``<output_dir>/<name>.json`` atomically; returns its path."""
    path = os.path.join(output_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(card, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


def load_pretrained(name: str, weights_dir: str | None = None):
    """Load the shipped model ``name`` (float32 variables) with ``safe_mode=True``, offline
    (from ``weights_dir``, default this package folder: a model built elsewhere before it ships).

    Raises:
        ValueError: unknown name, with the list of known ones.
    """
    from fer_keras.saving import load_model

    return load_model(weights_path(name, weights_dir))


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
