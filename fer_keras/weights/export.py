"""Export a shipped pretrained model for TF Serving (``<export_root>/<name>/<version>/``).

    python -m fer_keras.weights.export --name=baseline-fer2013 --export_root=serving/models [--version=1] [--served_name=baseline] [--weights_dtype=float16]

Uses ``fer_keras.export.savedmodel.export_model`` (signatures ``serving_default``,
``predict_images``, ``metadata``): input spec, class names and data set from the model's
stored ``ModelSpec`` (so an 8-class FER+ model serves 8 probabilities), the card's weights
hash and training command in the metadata. ``--weights_dir`` exports a model built into
another folder (``fer_keras.weights.build --output_dir``) before it ships. Either storage
serves exactly the shipped values (they are float16 numbers already): ``--weights_dtype=float32``
(default, fastest per request) or ``float16`` (half the bytes, e.g. ResNet-18 45 -> 23 MB, for a
servable that must fit 25 MB per file; the cast to float32 costs ~3 ms per request for ResNet-18).
"""

from __future__ import annotations

import os

from absl import flags

from pipelines import cli


def export_pretrained(name: str, export_root: str, version: int | None = None, served_name: str | None = None, weights_dir: str | None = None,
                      weights_dtype: str = "float32") -> str:
    """Export pretrained ``name`` (from ``weights_dir``, default the package folder) under
    ``export_root/<served_name or name>/<version>``; returns the directory."""
    from fer_keras import weights
    from fer_keras.export.savedmodel import export_model

    card = weights.model_card(name, weights_dir)
    model = weights.load_pretrained(name, weights_dir)
    extra = {"pretrained_name": name, "weights_sha256": card["file"]["sha256"], "training_command": card.get("training_command")}
    return export_model(model, export_root, served_name or name, version=version, extra_metadata=extra, weights_dtype=weights_dtype)


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    path = export_pretrained(FLAGS.name, FLAGS.export_root, FLAGS.version, FLAGS.served_name, FLAGS.weights_dir, FLAGS.weights_dtype)
    print(f"exported {FLAGS.name} to {path} ({directory_bytes(path):,} bytes)")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("name", None, "Pretrained model name.", required=True)
    flags.DEFINE_string("export_root", "serving/models", "TF Serving model root.")
    flags.DEFINE_integer("version", None, "Version number (default: next free one).")
    flags.DEFINE_string("served_name", None, "Directory/model name under export_root (default: the pretrained name).")
    flags.DEFINE_string("weights_dir", None, "Folder of the model's .keras and card (default: the fer_keras/weights package folder).")
    flags.DEFINE_enum("weights_dtype", "float32", ["float32", "float16"], "SavedModel weight storage: float16 halves the bytes (cast to float32 per request).")
    cli.run(main)
