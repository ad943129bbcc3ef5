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

    python -m fer_keras.weights.build --name=mrcar-fer2013 --run_dir=/work/runs/mrcar-fer2013

Export one for TF Serving (``serving/models/<name>/<version>/``; see ``export.py``)::

    python -m fer_keras.weights.export --name=baseline-fer2013 --export_root=serving/models
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile

WEIGHTS_DIR = os.path.dirname(os.path.abspath(__file__))
_WEIGHTS_ENTRY = "model.weights.h5"


def pretrained_names() -> list[str]:
    """Names of the shipped models (a ``.keras`` file with its ``.json`` card)."""
    return sorted(
        name[: -len(".keras")]
        for name in os.listdir(WEIGHTS_DIR)
        if name.endswith(".keras") and os.path.exists(os.path.join(WEIGHTS_DIR, name[: -len(".keras")] + ".json"))
    )


def _check_name(name: str) -> None:
    known = pretrained_names()
    if name not in known:
        raise ValueError(f"Unknown pretrained model {name!r}. Known pretrained models: {', '.join(known) or '(none)'}")


def weights_path(name: str) -> str:
    """Path of the shipped ``<name>.keras``."""
    _check_name(name)
    return os.path.join(WEIGHTS_DIR, f"{name}.keras")


def model_card(name: str) -> dict:
    """The ``<name>.json`` model card as a dict."""
    _check_name(name)
    with open(os.path.join(WEIGHTS_DIR, f"{name}.json")) as f:
        return json.load(f)


def load_pretrained(name: str):
    """Load the shipped model ``name`` (float32 variables) with ``safe_mode=True``, offline.

    Raises:
        ValueError: unknown name, with the list of known ones.
    """
    from fer_keras.saving import load_model

    return load_model(weights_path(name))


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_compact(model, path: str, dtype: str = "float16") -> str:
    """Save ``model`` as a ``.keras`` file without optimizer state, its float weights cast to
    ``dtype`` ("float16" or "float32") inside ``model.weights.h5``. Written atomically."""
    import h5py
    import numpy as np

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32'. Received: dtype={dtype!r}")
    tmp_dir = tempfile.mkdtemp(prefix=".save-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        plain = os.path.join(tmp_dir, "plain.keras")
        model.save(plain)
        out = os.path.join(tmp_dir, "out.keras")
        with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == _WEIGHTS_ENTRY and dtype == "float16":
                    h5_path = os.path.join(tmp_dir, _WEIGHTS_ENTRY)
                    with open(h5_path, "wb") as f:
                        f.write(data)
                    _cast_h5(h5_path, np.float32, np.float16, h5py)
                    with open(h5_path, "rb") as f:
                        data = f.read()
                dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
        os.replace(out, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _cast_h5(path: str, source, target, h5py) -> None:
    """Rewrite every ``source``-typed dataset of an HDF5 file as ``target`` (attrs kept), then
    repack the file so the freed space is gone."""
    with h5py.File(path, "r") as src, h5py.File(path + ".new", "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = dst.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
                return
            values = obj[()]
            if getattr(values, "dtype", None) == source:
                values = values.astype(target)
            dataset = dst.create_dataset(name, data=values)
            for key, value in obj.attrs.items():
                dataset.attrs[key] = value

        src.visititems(copy)
    os.replace(path + ".new", path)
