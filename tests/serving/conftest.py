"""Shared helpers of the serving tests: a tiny SavedModel with the signatures of
``fer_keras.export.savedmodel.export_model``, a model repository and an in-process server."""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import socket

import numpy as np
import pytest
import tensorflow as tf

from serving import config as serving_config
from serving.server import ModelServer

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
SIZE = 48


class TinyFerModule(tf.Module):
    """48x48 grayscale faces -> a fixed linear layer -> softmax, with export_model's signatures."""

    def __init__(self, seed: int, class_names=CLASS_NAMES):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.kernel = tf.Variable(rng.normal(0, 0.05, (SIZE * SIZE, len(class_names))).astype(np.float32))
        self.bias = tf.Variable(rng.normal(0, 0.1, (len(class_names),)).astype(np.float32))
        self.class_names = tf.constant(class_names)

    def _outputs(self, pixels):
        flat = tf.reshape(tf.cast(pixels, tf.float32) / 255.0, [-1, SIZE * SIZE])
        probabilities = tf.nn.softmax(flat @ self.kernel + self.bias)
        class_ids = tf.argmax(probabilities, axis=1, output_type=tf.int64)
        return {"probabilities": probabilities, "class_ids": class_ids, "labels": tf.gather(self.class_names, class_ids)}

    @staticmethod
    def _decode(data):
        image = tf.io.decode_image(data, channels=1, expand_animations=False)
        return tf.cast(tf.image.resize(image, [SIZE, SIZE]), tf.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serving_default(self, images):
        pixels = tf.map_fn(self._decode, images, fn_output_signature=tf.TensorSpec([SIZE, SIZE, 1], tf.uint8))
        return self._outputs(pixels)

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 1], tf.uint8, name="images")])
    def predict_images(self, images):
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="unused")])
    def metadata(self, unused):
        del unused  # like export_model: TF Serving rejects signatures without inputs
        return {"class_names": self.class_names}


def save_tiny_model(path, seed: int = 0) -> pathlib.Path:
    """Write a tiny SavedModel to ``path`` (a version folder) and return it."""
    module = TinyFerModule(seed)
    signatures = {
        "serving_default": module.serving_default.get_concrete_function(),
        "predict_images": module.predict_images.get_concrete_function(),
        "metadata": module.metadata.get_concrete_function(),
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return pathlib.Path(path)


def install_version(source, base_path, version: int) -> pathlib.Path:
    """Copy a SavedModel into ``base_path/<version>`` atomically (temp folder, then rename)."""
    base_path = pathlib.Path(base_path)
    base_path.mkdir(parents=True, exist_ok=True)
    temp = base_path / f".tmp-{version}"
    shutil.copytree(source, temp)
    final = base_path / str(version)
    os.rename(temp, final)
    return final


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array).squeeze().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two tiny SavedModels (different weights): ``{"v1": path, "v2": path}``."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {"v1": save_tiny_model(root / "v1", seed=1), "v2": save_tiny_model(root / "v2", seed=2)}


@pytest.fixture(scope="session")
def face_files(faces_dir):
    """Real PNG/JPEG face photos (a few) from the shared folder."""
    files = sorted(p for p in pathlib.Path(faces_dir).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        pytest.skip(f"no PNG/JPEG files under {faces_dir}")
    pngs = [p for p in files if p.suffix.lower() == ".png"][:3]
    jpgs = [p for p in files if p.suffix.lower() in {".jpg", ".jpeg"}][:3]
    return pngs + jpgs or files[:4]


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory, tiny_models):
    """``models.config`` with "fer" (v1), "pinned" (v1+v2 on disk, policy specific v1, label stable)
    and "reload" (v1; the reload test adds versions) models."""
    root = tmp_path_factory.mktemp("repo")
    install_version(tiny_models["v1"], root / "models" / "fer", 1)
    install_version(tiny_models["v1"], root / "models" / "pinned", 1)
    install_version(tiny_models["v2"], root / "models" / "pinned", 2)
    install_version(tiny_models["v1"], root / "models" / "reload", 1)
    (root / "models.config").write_text(
        """
model_config_list {
  config { name: "fer" base_path: "/models/fer" model_platform: "tensorflow"
           model_version_policy { latest { num_versions: 1 } } }
  config { name: "pinned" base_path: "/models/pinned" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 } }
           version_labels { key: "stable" value: 1 } }
  config { name: "reload" base_path: "/models/reload" model_platform: "tensorflow" }
}
"""
    )
    return root


@pytest.fixture(scope="module")
def server(model_repo):
    """In-process server on a free loopback port (gRPC + REST), polling every 0.2 s. The config
    has a version label, which TF Serving only accepts at startup with
    --allow_version_labels_for_unavailable_models."""
    config_path = model_repo / "models.config"
    instance = ModelServer.from_config_file(
        config_path,
        serving_config.parse_path_map([f"/models={model_repo / 'models'}"]),
        port=0,
        rest_api_port=0,
        poll_seconds=0.2,
        max_message_bytes=1024 * 1024,
        allow_version_labels_for_unavailable_models=True,
    )
    instance.start()
    yield instance
    instance.stop()
