"""Built-in models; importing this package registers them."""

from fer_keras.models import baseline  # noqa: F401
from fer_keras.models import lban  # noqa: F401
from fer_keras.models import mrcar  # noqa: F401
from fer_keras.models import r18fa  # noqa: F401
from fer_keras.models import resface  # noqa: F401
from fer_keras.models import resnet  # noqa: F401
