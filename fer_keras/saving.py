"""Saving and loading fer_keras ``.keras`` files with the model's ``ModelSpec`` inside.

A ``.keras`` file is a zip (``config.json``, ``metadata.json``, ``model.weights.h5``);
:func:`save_model` adds ``fer_keras_spec.json`` (the ``fer_spec.ModelSpec``: input spec,
class names, normalisation, ten-crop default) and :func:`load_model` reads it back onto
the model (``model_spec(model)``). Keras ignores the extra entry, so the files still load
with plain ``keras.saving.load_model``. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile

import h5py
import keras
import numpy as np

from fer_spec import ModelSpec

SPEC_ENTRY = "fer_keras_spec.json"
_WEIGHTS_ENTRY = "model.weights.h5"
_ATTRIBUTE = "fer_spec"


def attach_spec(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """Attach ``spec`` to ``model`` (saved with it by :func:`save_model`); returns the model."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a fer_spec.ModelSpec. Received: {type(spec).__name__}")
    object.__setattr__(model, _ATTRIBUTE, spec)
    return model


def model_spec(model: keras.Model) -> ModelSpec:
    """The ``ModelSpec`` a model was built or loaded with.

    Raises:
        ValueError: the model carries none (built outside ``fer_keras.registry.build_model``
            and loaded from a file saved without :func:`save_model`).
    """
    spec = getattr(model, _ATTRIBUTE, None)
    if spec is None:
        raise ValueError(
            f"Model {model.name!r} carries no fer_keras ModelSpec (input size, crop, class names). "
            "Build it with fer_keras.registry.build_model, load it with fer_keras.saving.load_model "
            "from a file written by fer_keras.saving.save_model, or attach one with fer_keras.saving.attach_spec."
        )
    return spec


def _float32_policies(config):
    """``config`` (a serialized Keras object) with every dtype policy set to float32."""
    if isinstance(config, list):
        return [_float32_policies(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(config.get("config"), dict):
        return dict(config, config=dict(config["config"], name="float32"))
    return {key: _float32_policies(value) for key, value in config.items()}


def float32_compute(model: keras.Model) -> keras.Model:
    """``model`` computing in float32 everywhere: itself when it already does, else a copy
    rebuilt from its config with every layer's dtype policy float32, the same weights and spec.

    A model trained with ``--mixed_precision`` keeps Keras' ``mixed_bfloat16`` policy in its
    layers, so it would compute in bfloat16 wherever it is loaded, and its graph would carry
    bfloat16 ops that TFLite's builtin kernels do not have. Shipping and export go through this.
    """
    layers = model._flatten_layers(include_self=True, recursive=True)
    if all(layer.dtype_policy.name == "float32" for layer in layers):
        return model
    copy = keras.saving.deserialize_keras_object(_float32_policies(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return attach_spec(copy, model_spec(model))


def save_model(model: keras.Model, path: str, weights_dtype: str = "float32") -> str:
    """Save ``model`` and its ``ModelSpec`` as a ``.keras`` file, atomically.

    Args:
        model: a model with a spec (see :func:`model_spec`).
        path: str. Ends in ``.keras``.
        weights_dtype: ``"float32"`` or ``"float16"``: the float16 file stores every float32
            weight at half precision; Keras casts them back to float32 when loading.

    Returns:
        ``path``.
    """
    if weights_dtype not in ("float16", "float32"):
        raise ValueError(f"weights_dtype must be 'float16' or 'float32'. Received: weights_dtype={weights_dtype!r}")
    if not path.endswith(".keras"):
        raise ValueError(f"path must end in .keras. Received: path={path!r}")
    spec = model_spec(model)
    tmp_dir = tempfile.mkdtemp(prefix=".save-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        plain = os.path.join(tmp_dir, "plain.keras")
        model.save(plain)
        out = os.path.join(tmp_dir, "out.keras")
        with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == _WEIGHTS_ENTRY and weights_dtype == "float16":
                    data = _cast_weights(data, tmp_dir)
                _write_entry(dst, info.filename, data)
            _write_entry(dst, SPEC_ENTRY, spec.to_json().encode())
        os.replace(out, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def read_spec(path: str) -> ModelSpec | None:
    """The ``ModelSpec`` stored in a ``.keras`` file, or None for a file without one."""
    with zipfile.ZipFile(path) as archive:
        if SPEC_ENTRY not in archive.namelist():
            return None
        return ModelSpec.from_json(archive.read(SPEC_ENTRY).decode())


def recorded_architecture(path: str) -> str | None:
    """The registered model name a ``.keras`` file records, read without TensorFlow (so a CLI
    can choose its thread plan before TensorFlow starts); None for a missing or unreadable
    file or one without a spec (loading it fails later with its own error)."""
    try:
        spec = read_spec(path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return spec.architecture if spec else None


def load_model(path: str, require_spec: bool = True) -> keras.Model:
    """Load a ``.keras`` model written by fer_keras, offline, ``safe_mode=True``, spec attached.

    Importing ``fer_keras.models`` runs the registration decorators of all built-in
    layers and models first, so no ``custom_objects`` are needed.

    Raises:
        ValueError: the file holds no ``ModelSpec`` and ``require_spec`` is true.
    """
    import fer_keras.models  # noqa: F401  (registers the built-in layers and models)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path}")
    spec = read_spec(path)
    if spec is None and require_spec:
        raise ValueError(
            f"{path} holds no {SPEC_ENTRY} (input spec, class names): it was not saved by fer_keras.saving.save_model. "
            "Load it with require_spec=False and attach_spec(model, ModelSpec(...)), then save it again."
        )
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return attach_spec(model, spec) if spec is not None else model


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    # A fixed timestamp: the same model saved twice gives the same bytes.
    archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)


def _cast_weights(data: bytes, tmp_dir: str) -> bytes:
    """``model.weights.h5`` bytes with every float32 dataset stored as float16 (attrs kept)."""
    source, target = os.path.join(tmp_dir, "in.h5"), os.path.join(tmp_dir, "out.h5")
    with open(source, "wb") as f:
        f.write(data)
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = dst.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
                return
            values = obj[()]
            if getattr(values, "dtype", None) == np.float32:
                values = values.astype(np.float16)
            dataset = dst.create_dataset(name, data=values)
            for key, value in obj.attrs.items():
                dataset.attrs[key] = value

        src.visititems(copy)
    with open(target, "rb") as f:
        return f.read()
