"""The contract between data pipelines and models, importing neither.

``InputSpec`` (what a model eats), ``ModelSpec`` (what scoring a trained model needs, saved
with it) and ``geometry`` (face template, region boxes, region sizes). ``pipelines`` and
``fer_keras`` both import this package; it imports only NumPy, so there is no cycle.
"""

from fer_spec.input_spec import InputSpec
from fer_spec.model_spec import ModelSpec

__all__ = ["InputSpec", "ModelSpec"]
