"""Built-in models; importing this package registers them."""

from fer_keras.models import baseline  # noqa: F401
