"""Export trained models for TF Serving or TFLite.

    python -m fer_keras.export --model_path=runs/baseline-fer2013/best.keras --export_dir=exports --name=baseline
    python -m fer_keras.export --model_path=... --export_dir=exports --name=baseline --format=tflite --quantize=int8 --data_dir=../shared/datasets/fer2013
    python -m fer_keras.export --ensemble=a.keras,b.keras,c.keras --export_dir=exports --name=fer_t2v --default_vote=t2v

``--format=savedmodel`` writes ``<export_dir>/<name>/<version>/`` (TF Serving's layout,
next version unless ``--version``). ``--format=tflite`` converts the SavedModel's
``predict_images`` signature (exported to a temporary directory, or ``--saved_model_dir``)
to ``<export_dir>/<name>-<quantize>.tflite``; int8 calibrates on ``--representative_count``
images of the training split of ``--dataset_name`` in ``--data_dir``.

Input spec, class names and training data set come from the ``ModelSpec`` stored in the
``.keras`` file (``fer_keras.saving``).
"""

from __future__ import annotations

import os
import tempfile

from absl import app, flags

from pipelines import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A trained .keras model.")
flags.DEFINE_list("ensemble", [], "Comma-separated .keras members of an ensemble SavedModel (instead of --model_path).")
flags.DEFINE_string("export_dir", "exports", "Root of the exports (TF Serving's model base paths live under it).")
flags.DEFINE_string("name", None, "Served model name: the directory under --export_dir.", required=True)
flags.DEFINE_integer("version", None, "Version number (default: the next after the existing ones).")
flags.DEFINE_string("dataset_name", None, "int8: data set adapter of --data_dir (default: the model's training data set).")
flags.DEFINE_string("data_dir", None, "int8: data set root of the representative training images.")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "tflite"], "What to write.")
flags.DEFINE_enum("weights_dtype", "float32", ["float32", "float16"], "SavedModel: store the weights as float16 (half the bytes, cast to float32 in the graph; computation stays float32).")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "int8"], "TFLite quantization.")
flags.DEFINE_string("saved_model_dir", None, "TFLite: convert this exported SavedModel version instead of exporting --model_path.")
flags.DEFINE_integer("representative_count", 300, "int8: number of training images to calibrate on.")
flags.DEFINE_enum("default_vote", "t2v", ["t2v", "noi", "bagging"], "Ensemble: the rule served as serving_default.")
flags.DEFINE_float("alpha", 1.9, "Ensemble T2V weight of each member's first choice.")
flags.DEFINE_float("beta", 1.0, "Ensemble T2V weight of each member's second choice.")


def _load(path):
    from fer_keras.saving import load_model

    if not os.path.isfile(path):
        raise app.UsageError(f"No model file at {path}")
    return load_model(path)


def _training_arrays(dataset_name, input_spec, limit):
    from pipelines.datasets import load_arrays, open_dataset
    from pipelines.datasets.splits import default_splits

    split = default_splits(dataset_name)[0]
    return load_arrays(open_dataset(dataset_name, FLAGS.data_dir, split), image_size=input_spec.source_size, channels=input_spec.channels, limit=limit)


def main(argv):
    del argv
    from fer_keras.export import export_ensemble, export_model
    from fer_keras.saving import model_spec

    if FLAGS.format == "tflite" and FLAGS.quantize == "int8" and not FLAGS.data_dir:
        raise app.UsageError("--quantize=int8 needs --data_dir: it calibrates on real training images.")
    if FLAGS.format == "tflite" and FLAGS.saved_model_dir:
        if FLAGS.model_path or FLAGS.ensemble:
            raise app.UsageError("--saved_model_dir is converted as it is: leave out --model_path and --ensemble.")
        return _write_tflite(FLAGS.saved_model_dir, None)
    if bool(FLAGS.model_path) == bool(FLAGS.ensemble):
        raise app.UsageError("Give exactly one of --model_path (one model) or --ensemble=a.keras,b.keras,...")
    if FLAGS.ensemble:
        if FLAGS.format != "savedmodel":
            raise app.UsageError("--ensemble exports a SavedModel only (--format=savedmodel).")
        members = [_load(path) for path in FLAGS.ensemble]
        path = export_ensemble(
            members, FLAGS.export_dir, FLAGS.name, FLAGS.version, default=FLAGS.default_vote, alpha=FLAGS.alpha, beta=FLAGS.beta,
            extra_metadata={"source_models": [os.path.basename(p) for p in FLAGS.ensemble]},
        )
        print(f"Wrote ensemble SavedModel of {len(members)} members to {path} (signatures t2v, noi, bagging, metadata; serving_default = {FLAGS.default_vote})")
        return 0

    model = _load(FLAGS.model_path)
    spec = model_spec(model)
    extra = {"source_model": os.path.basename(FLAGS.model_path)}
    if FLAGS.format == "savedmodel":
        path = export_model(model, FLAGS.export_dir, FLAGS.name, FLAGS.version, extra, FLAGS.weights_dtype)
        size = spec.input_spec.source_size
        print(f"Wrote SavedModel {path} (signatures serving_default [encoded aligned-face image bytes], predict_images [uint8 {size[0]}x{size[1]}x{spec.input_spec.channels}], metadata)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        return _write_tflite(export_model(model, tmp, FLAGS.name, 1, extra), spec)


def _saved_model_spec(saved_model_dir):
    """The ``ModelSpec`` in an exported SavedModel's metadata asset."""
    import json

    from fer_keras.export import METADATA_ASSET
    from fer_spec import ModelSpec

    with open(os.path.join(saved_model_dir, "assets", METADATA_ASSET)) as f:
        return ModelSpec.from_dict(json.load(f)["model_spec"])


def _write_tflite(saved_model_dir, spec):
    from fer_keras.export import convert_saved_model

    representative = None
    if FLAGS.quantize == "int8":
        spec = spec or _saved_model_spec(saved_model_dir)
        dataset_name = FLAGS.dataset_name or spec.dataset
        if not dataset_name:
            raise app.UsageError("--quantize=int8: the model names no training data set; pass --dataset_name.")
        representative = _training_arrays(dataset_name, spec.input_spec, FLAGS.representative_count).images
    output = os.path.join(FLAGS.export_dir, f"{FLAGS.name}-{FLAGS.quantize}.tflite")
    result = convert_saved_model(saved_model_dir, output, FLAGS.quantize, representative)
    print(f"Wrote {result.path} ({result.size_bytes / 1e6:.2f} MB, {FLAGS.quantize}); ops: {', '.join(result.ops)}")
    return 0


if __name__ == "__main__":
    cli.run(main)
