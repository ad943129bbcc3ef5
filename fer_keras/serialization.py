"""One decorator registers every fer_keras layer, loss and model for ``.keras`` files."""

import keras


def register(cls):
    """Register ``cls`` under the ``fer_keras`` package so ``safe_mode=True`` loads it."""
    return keras.saving.register_keras_serializable(package="fer_keras")(cls)
