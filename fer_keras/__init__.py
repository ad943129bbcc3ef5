"""fer_keras: facial expression recognition in TensorFlow / Keras 3."""

__version__ = "0.1.0"
