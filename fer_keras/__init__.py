"""fer_keras: facial expression recognition in TensorFlow / Keras 3.

The two entry points are importable from here without loading TensorFlow up front:

    import fer_keras
    model = fer_keras.pretrained("baseline-fer2013")      # shipped weights, offline
    result = fer_keras.Recognizer().recognize("photo.jpg")  # every face's emotion
"""

__version__ = "0.1.0"


def pretrained(name: str):
    """Load a shipped pretrained model (see ``fer_keras.weights``); unknown names list the known ones."""
    from fer_keras.weights import load_pretrained

    return load_pretrained(name)


def __getattr__(name):
    if name in ("Recognizer", "PhotoResult", "FaceResult"):
        from fer_keras import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")
