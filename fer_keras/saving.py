"""Loading fer_keras ``.keras`` files: offline, ``safe_mode=True``, every custom class registered."""

import keras


def load_model(path: str) -> keras.Model:
    """Load a ``.keras`` model written by fer_keras (any registered model, e.g. MrCAR).

    Importing ``fer_keras.models`` runs the registration decorators of all built-in
    layers and models first, so no ``custom_objects`` are needed.
    """
    import fer_keras.models  # noqa: F401

    return keras.saving.load_model(path, compile=False, safe_mode=True)
