"""Export trained models: TF Serving SavedModels (single models and voting ensembles) and TFLite.

- ``export_model``: one model -> ``<root>/<name>/<version>/`` with signatures
  ``serving_default`` (encoded image bytes), ``predict_images`` (uint8 faces), ``metadata``.
- ``export_ensemble``: several members -> one SavedModel with ``t2v``, ``noi``, ``bagging``.
- ``convert_saved_model``: an exported SavedModel -> ``.tflite`` (none / float16 / int8).

CLI: ``python -m fer_keras.export --help``.
"""

from fer_keras.export.ensemble import export_ensemble
from fer_keras.export.savedmodel import METADATA_ASSET, export_model
from fer_keras.export.tflite import QUANTIZATIONS, TFLiteExport, analyze_ops, convert_saved_model, make_interpreter, predict_tflite

__all__ = ["METADATA_ASSET", "QUANTIZATIONS", "TFLiteExport", "analyze_ops", "convert_saved_model", "export_ensemble", "export_model", "make_interpreter", "predict_tflite"]
