"""Convert an exported SavedModel to TFLite (builtin ops only), list its ops, run it with LiteRT.

The converter reads the SavedModel's ``predict_images`` signature (uint8 aligned faces in,
``probabilities`` / ``class_ids`` / ``labels`` out), so the TFLite model holds the same
preprocessing as the server (normalise, centre crop, region crops) and the signature keeps
its input and output names. Quantization:

- ``none``: float32 weights and activations.
- ``float16``: float16 weights (dequantized to float32 at load), float32 compute.
- ``int8``: full integer quantization (``TFLITE_BUILTINS_INT8``) calibrated on a
  representative data set of real training images; the uint8 image input and float32
  probability output stay as they are.

Only TFLite builtin ops are allowed: a graph that would need Flex (Select TF) ops fails
with a ``ValueError`` naming them. Runs with the LiteRT interpreter (``ai-edge-litert``,
the ``tflite`` extra) when installed, else ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re

import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("none", "float16", "int8")
SIGNATURE = "predict_images"


@dataclasses.dataclass
class TFLiteExport:
    """What ``convert_saved_model`` wrote: ``path``, ``size_bytes``, ``ops`` (sorted unique op
    names from the analyzer) and ``analysis`` (the analyzer's full text)."""

    path: str
    quantize: str
    size_bytes: int
    ops: list[str]
    analysis: str


def analyze_ops(model_content: bytes) -> tuple[list[str], str]:
    """Sorted unique op names of a TFLite model and the text of ``tf.lite.experimental.Analyzer``."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=model_content)
    text = buffer.getvalue()
    return sorted(set(re.findall(r"Op#\d+ (\w+)\(", text))), text


def _flex_ops(message: str) -> list[str]:
    return sorted(set(re.findall(r"\btf\.(\w+)", message)) | set(re.findall(r"\b(Flex\w+)", message)))


def convert_saved_model(saved_model_dir: str, output_path: str, quantize: str = "none", representative_images: np.ndarray | None = None) -> TFLiteExport:
    """Convert ``saved_model_dir``'s ``predict_images`` signature to ``output_path``.

    Args:
        saved_model_dir: str. A version directory written by ``export_model``.
        output_path: str. The ``.tflite`` file to write (atomically).
        quantize: str. "none", "float16" or "int8".
        representative_images: uint8 ``[N, source_h, source_w, C]`` real training images;
            required for "int8" (a few hundred are enough).

    Raises:
        ValueError: unknown ``quantize``, no representative images for int8, or ops that
            are not TFLite builtins (named in the message).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("quantize='int8' needs representative_images: real training images (pass --data_dir in the CLI).")
        images = np.asarray(representative_images, np.uint8)

        def representative_dataset():
            for image in images:
                yield {"images": image[None]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        content = converter.convert()
    except Exception as error:  # the converter raises ConverterError and friends
        message = str(error)
        ops = _flex_ops(message)
        if ops or "not supported" in message.lower():
            raise ValueError(
                f"{saved_model_dir} cannot be converted with TFLite builtin ops only ({quantize}); these ops would need Flex "
                f"(Select TF ops), which fer_keras does not allow: {', '.join(ops) or '(see below)'}.\n{message}"
            ) from error
        raise
    ops, analysis = analyze_ops(content)
    if "CUSTOM" in ops or any(op.startswith("Flex") for op in ops):
        raise ValueError(f"The converted model uses non-builtin ops: {ops}")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path + ".tmp", "wb") as f:
        f.write(content)
    os.replace(output_path + ".tmp", output_path)
    return TFLiteExport(output_path, quantize, len(content), ops, analysis)


def make_interpreter(model_path: str, num_threads: int | None = None):
    """A LiteRT ``Interpreter`` (``ai_edge_litert``), else ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def interpreter_name() -> str:
    try:
        import importlib.metadata

        return f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"
    except importlib.metadata.PackageNotFoundError:
        return f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


def predict_tflite(interpreter, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Probabilities ``[N, C]`` from a converted model's ``predict_images`` signature."""
    runner = interpreter.get_signature_runner(SIGNATURE)
    scores = [runner(images=np.asarray(images[i : i + batch_size], np.uint8))["probabilities"] for i in range(0, len(images), batch_size)]
    return np.concatenate(scores).astype(np.float32)
