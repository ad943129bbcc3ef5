"""Export a trained model as a TF Serving SavedModel: encoded image bytes in, named outputs.

Layout (TF Serving's): ``<export_root>/<model_name>/<version>/`` with ``saved_model.pb``,
``variables/`` and ``assets/fer_keras_metadata.json``. A version is written into a hidden
temporary directory (``.tmp-<version>-*``; TF Serving only loads all-digit directory
names) beside the versions and renamed into place in one ``os.rename``, so a server
polling the folder never sees half a model.

Signatures (every output named):

- ``serving_default``: ``images`` string ``[N]`` of encoded JPEG, PNG, GIF (first frame), BMP
  or WebP bytes (``SERVED_IMAGE_FORMATS``), each at least ``MIN_IMAGE_SIDE`` (16) px per side.
  Decoded in the graph (``tf.io.decode_image``). Other bytes (TIFF, HEIC, text, ...) and
  smaller images fail the call with an ``InvalidArgumentError`` that says what is accepted
  (TF Serving and ``serving.server`` answer INVALID_ARGUMENT, HTTP 400). Converted to the
  model's channels, resized to its ``source_size`` (bilinear with antialiasing, like the
  Pillow resize of the data pipelines, then rounded to 0..255), then
  ``pipelines.input.eval_inputs`` (normalise, centre crop, region crops of an aligned face).
  Each image must be an ALIGNED FACE CROP, framed like the training data (the face
  detected and aligned, upright): the graph does no face detection and ignores EXIF
  orientation. For a whole photo, run ``fer_keras.Recognizer`` (or ``pipelines.faces``:
  MTCNN, alignment) and send the crops.
  Outputs ``probabilities`` float32 ``[N, C]``, ``class_ids`` int64 ``[N]``, ``labels``
  string ``[N]``.
- ``predict_images``: ``images`` uint8 ``[N, source_h, source_w, C]`` aligned faces; same
  outputs. TFLite is converted from this one.
- ``metadata``: a dummy scalar input ``unused`` (int32, any value: TF Serving rejects
  signatures without inputs) and constant outputs ``class_names`` ``[C]``, ``model_name``,
  ``dataset_name``, ``fer_keras_version``, ``metadata_json`` (the whole JSON, with the
  model's ``fer_spec.ModelSpec`` under ``model_spec``, the input contract under
  ``expected_input``, ``image_formats`` and ``min_image_side``) and the
  int64 scalars ``input_height``, ``input_width``, ``source_height``, ``source_width``,
  ``channels``, ``num_classes``.

The same metadata is also the asset ``assets/fer_keras_metadata.json`` for clients that read
files. The model is always called with ``training=False``: no dropout, no augmentation.

Weights are stored as float32, or as float16 (``weights_dtype="float16"``: half the bytes, e.g.
a ResNet-18 servable 22.7 MB instead of 45.1 MB) and cast to float32 in the graph at each call
(``Float16Weights``); the computation stays float32. The cast runs on every request (~3 ms
for ResNet-18's 11 M weights at batch 1, 14.1 vs 11.1 ms), so float16 is for servables that
must be small. A model shipped with float16 weights (``fer_keras.weights``) is exported
exactly either way: its values are already float16.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable

import keras
import tensorflow as tf

import fer_keras
from fer_keras.inference import probabilities
from fer_keras.saving import float32_compute, model_spec
from fer_spec import InputSpec, ModelSpec

METADATA_ASSET = "fer_keras_metadata.json"
# What ``serving_default`` decodes: the formats ``tf.io.decode_image`` tells apart by their first
# bytes (JPEG XL, which TF 2.21 also decodes, is left out: Pillow, the Python path, cannot read it).
SERVED_IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
# Smallest side (px) of an image ``serving_default`` accepts. Measured on 1000 FER2013 val crops
# shrunk to s x s px (shipped baseline / vgg4): at 12 px and below the accuracy is 0.15-0.27, about
# the rate of always answering the most frequent class (0.25); at 16 px 0.33, at 48 px 0.63 / 0.69.
MIN_IMAGE_SIDE = 16
_FORMAT_SIGNATURES = (  # per format, (offset, bytes) pairs that must all match
    ((0, b"\xff\xd8\xff"),),  # JPEG
    ((0, b"\x89PNG\r\n\x1a\n"),),  # PNG
    ((0, b"GIF8"),),  # GIF
    ((0, b"BM"),),  # BMP
    ((0, b"RIFF"), (8, b"WEBP")),  # WebP
)
FORMAT_ERROR = (
    f"serving_default decodes only {', '.join(SERVED_IMAGE_FORMATS[:-1])} or {SERVED_IMAGE_FORMATS[-1]} images and these bytes are none of them. "
    "Convert other formats (TIFF, HEIC, ...) to PNG or JPEG first, or classify them with the Python "
    "fer_keras.Recognizer / python -m fer_keras.predict, which read any format Pillow reads."
)
SIZE_ERROR = (
    "serving_default needs images of at least {min_side}x{min_side} px (smaller faces are classified no "
    "better than always answering the most frequent class); got an image of {{}}x{{}} px (height x width)."
).format(min_side=MIN_IMAGE_SIDE)
EXPECTED_INPUT = (
    f"serving_default: encoded {', '.join(SERVED_IMAGE_FORMATS)} bytes, at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} px, "
    "of ALIGNED FACE CROPS (a detected, aligned, upright face "
    "framed like the training data; no face detection and no EXIF rotation happen in the graph). "
    "For a whole photo, detect and align the faces first (fer_keras.Recognizer or pipelines.faces) and send the crops."
)


def next_version(model_dir: str) -> int:
    """1 + the largest all-digit version directory in ``model_dir`` (1 when there is none)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def write_version_atomically(export_root: str, model_name: str, version: int | None, write: Callable[[str], None]) -> str:
    """Run ``write(tmp_dir)`` then rename ``tmp_dir`` to ``<export_root>/<model_name>/<version>``.

    The temporary directory sits beside the versions (same file system, so the rename is
    atomic) and is named ``.tmp-<version>-<random>``, which TF Serving's version scan skips.
    On any error it is removed and no version directory exists.

    Raises:
        FileExistsError: the version directory already exists.
    """
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain directory name. Received: model_name={model_name!r}")
    model_dir = os.path.join(export_root, model_name)
    os.makedirs(model_dir, exist_ok=True)
    version = next_version(model_dir) if version is None else int(version)
    if version < 0:
        raise ValueError(f"version must be a non-negative integer. Received: version={version}")
    final_dir = os.path.join(model_dir, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(f"{final_dir} already exists: pick another --version or leave it out for the next one.")
    tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir)
    try:
        write(tmp_dir)
        os.rename(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return final_dir


def is_served_format(data: tf.Tensor) -> tf.Tensor:
    """Whether scalar string ``data`` starts with the signature of a ``SERVED_IMAGE_FORMATS`` file
    (the first bytes ``tf.io.decode_image`` tells formats by)."""
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 12), b"\0" * 12]), 0, 12)

    def starts(position, magic):
        return tf.equal(tf.strings.substr(head, position, len(magic)), magic)

    matches = [tf.reduce_all(tf.stack([starts(offset, magic) for offset, magic in signature])) for signature in _FORMAT_SIGNATURES]
    return tf.reduce_any(tf.stack(matches))


def decode_images(encoded: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """Encoded image bytes ``[N]`` -> float32 ``[N, *source_size, channels]`` in 0..255.

    Any channel count and any size from ``MIN_IMAGE_SIDE`` px per side up is accepted: grayscale
    is repeated to RGB, alpha dropped, RGB converted to luma (``tf.image.rgb_to_grayscale``) for
    1-channel models. Bytes of another format than ``SERVED_IMAGE_FORMATS`` fail with
    ``FORMAT_ERROR``, smaller images with ``SIZE_ERROR`` (``InvalidArgumentError``).
    """
    height, width = spec.source_size

    def decode_one(data):
        with tf.control_dependencies([tf.debugging.Assert(is_served_format(data), [FORMAT_ERROR])]):
            image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        size = tf.shape(image)[:2]
        too_small = tf.strings.format(SIZE_ERROR, (size[0], size[1]))
        with tf.control_dependencies([tf.debugging.Assert(tf.reduce_min(size) >= MIN_IMAGE_SIDE, [too_small])]):
            image = tf.cast(image, tf.float32)
        if spec.channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        image = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
        return tf.clip_by_value(tf.round(image), 0.0, 255.0)

    return tf.map_fn(decode_one, encoded, fn_output_signature=tf.TensorSpec((height, width, spec.channels), tf.float32))


def named_outputs(probabilities: tf.Tensor, class_names: list[str]) -> dict[str, tf.Tensor]:
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {"probabilities": probabilities, "class_ids": class_ids, "labels": tf.gather(tf.constant(class_names), class_ids)}


def build_metadata(model_name: str, spec: ModelSpec, extra: dict | None = None) -> dict:
    """The metadata of an export: the served name, the model's ``ModelSpec`` and flat fields
    for clients that read single values."""
    input_spec = spec.input_spec
    metadata = {
        "model_name": model_name,
        "class_names": list(spec.class_names),
        "num_classes": spec.num_classes,
        "input_height": input_spec.image_size[0],
        "input_width": input_spec.image_size[1],
        "source_height": input_spec.source_size[0],
        "source_width": input_spec.source_size[1],
        "channels": input_spec.channels,
        "regions": {name: list(size) for name, size in input_spec.regions.items()},
        "dataset_name": spec.dataset,
        "fer_keras_version": fer_keras.__version__,
        "model_spec": spec.to_dict(),
        "expected_input": EXPECTED_INPUT,
        "image_formats": list(SERVED_IMAGE_FORMATS),
        "min_image_side": MIN_IMAGE_SIDE,
    }
    metadata.update(extra or {})
    return metadata


_METADATA_SCALARS = ("model_name", "dataset_name", "fer_keras_version")
_METADATA_INTS = ("input_height", "input_width", "source_height", "source_width", "channels", "num_classes")


def add_metadata(archive: keras.export.ExportArchive, metadata: dict, asset_dir: str) -> None:
    """Add the ``metadata`` signature and the ``fer_keras_metadata.json`` asset to ``archive``.

    ``asset_dir`` holds the source file until the archive is written (the SavedModel keeps
    a copy in its ``assets/``).
    """
    text = json.dumps(metadata, sort_keys=True)
    path = os.path.join(asset_dir, METADATA_ASSET)
    with open(path, "w") as f:
        f.write(text)
    # ExportArchive saves only variables, endpoints and lookup tables; an Asset must hang
    # off the object it saves to be copied into assets/ (checked in the tests).
    archive._tf_trackable.fer_keras_metadata = tf.saved_model.Asset(path)

    def metadata_fn(unused):
        del unused
        outputs = {"class_names": tf.constant(list(metadata["class_names"]), tf.string), "metadata_json": tf.constant(text)}
        outputs.update({key: tf.constant(str(metadata[key])) for key in _METADATA_SCALARS})
        outputs.update({key: tf.constant(int(metadata[key]), tf.int64) for key in _METADATA_INTS})
        return outputs

    archive.add_endpoint("metadata", metadata_fn, input_signature=[tf.TensorSpec([], tf.int32, name="unused")])


class Float16Weights:
    """``model`` called with its float32 weights held as float16 variables, cast back to float32
    on each call (``keras.Model.stateless_call``), so a SavedModel stores half the bytes and
    computes in float32. Only the float16 copies are captured by a traced call: the model's own
    variables are not read, hence not saved. Other variables (integers) are kept as they are.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self.trainable = [self._store(v) for v in model.trainable_variables]
        self.non_trainable = [self._store(v) for v in model.non_trainable_variables]

    @staticmethod
    def _store(variable) -> tf.Variable:
        value = tf.convert_to_tensor(variable.value)
        return tf.Variable(tf.cast(value, tf.float16) if value.dtype == tf.float32 else value, trainable=False, name=variable.name)

    @staticmethod
    def _load(stored: list[tf.Variable]) -> list[tf.Tensor]:
        return [tf.cast(v, tf.float32) if v.dtype == tf.float16 else tf.convert_to_tensor(v) for v in stored]

    def __call__(self, inputs, training: bool = False):
        outputs, _ = self.model.stateless_call(self._load(self.trainable), self._load(self.non_trainable), inputs, training=False)
        return outputs


def export_model(model: keras.Model, export_root: str, model_name: str, version: int | None = None, extra_metadata: dict | None = None,
                 weights_dtype: str = "float32") -> str:
    """Export ``model`` as ``<export_root>/<model_name>/<version>/`` (see the module docstring).

    Args:
        model: a trained Keras model carrying its ``ModelSpec`` (``fer_keras.saving``): input
            spec, class names and training data set come from there.
        export_root: str. TF Serving's ``model_base_path`` parent.
        model_name: str. The served model name (a directory name).
        version: int or None. None takes the next integer after the existing versions.
        extra_metadata: dict. More JSON-serialisable metadata.
        weights_dtype: str. "float32", or "float16" to store the weights at half the bytes
            (``Float16Weights``; the computation stays float32).

    Returns:
        The version directory written.

    A model with a mixed-precision policy is exported computing in float32
    (``fer_keras.saving.float32_compute``): TF Serving's CPU kernels and TFLite's builtins.
    """
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype must be float32 or float16. Received: weights_dtype={weights_dtype!r}")
    model = float32_compute(model)
    spec = model_spec(model)
    class_names = list(spec.class_names)
    metadata = build_metadata(model_name, spec, extra_metadata)
    metadata["keras_model_name"] = model.name
    metadata["weights_dtype"] = weights_dtype
    network = Float16Weights(model) if weights_dtype == "float16" else model

    def serving_default(images):
        return named_outputs(probabilities(network, decode_images(images, spec.input_spec), spec), class_names)

    def predict_images(images):
        return named_outputs(probabilities(network, images, spec), class_names)

    def write(tmp_dir):
        # No ``archive.track(model)``: the endpoints' variables are tracked on their own
        # (``_all_variables``), and tracking the model too stores every weight a second
        # time through its Keras variables (2x the file; there are no lookup tables here).
        archive = keras.export.ExportArchive()
        archive.add_endpoint("serving_default", serving_default, input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        archive.add_endpoint(
            "predict_images", predict_images, input_signature=[tf.TensorSpec([None, *spec.input_spec.source_size, spec.input_spec.channels], tf.uint8, name="images")]
        )
        with tempfile.TemporaryDirectory() as asset_dir:
            add_metadata(archive, metadata, asset_dir)
            archive.write_out(tmp_dir, verbose=False)

    return write_version_atomically(export_root, model_name, version, write)
