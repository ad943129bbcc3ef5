"""Export trained models for TF Serving or TFLite.

    python -m fer_keras.export --model_path=runs/baseline-fer2013/best.keras --export_dir=exports --name=baseline
    python -m fer_keras.export --model_path=... --export_dir=exports --name=baseline --format=tflite --quantize=int8 --data_dir=../shared/datasets/fer2013
    python -m fer_keras.export --ensemble=a.keras,b.keras,c.keras --export_dir=exports --name=fer_t2v --default_vote=t2v

``--format=savedmodel`` writes ``<export_dir>/<name>/<version>/`` (TF Serving's layout,
next version unless ``--version``). ``--format=tflite`` converts the SavedModel's
``predict_images`` signature (exported to a temporary directory, or ``--saved_model_dir``)
to ``<export_dir>/<name>-<quantize>.tflite``; int8 calibrates on ``--representative_count``
images of the training split of ``--dataset_name`` in ``--data_dir``.

Class names come from ``--class_names``, else the ``run.json`` the trainer wrote beside the
model, else the training split in ``--data_dir``, else class ids.
"""

from __future__ import annotations

import json
import os
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A trained .keras model.")
flags.DEFINE_list("ensemble", [], "Comma-separated .keras members of an ensemble SavedModel (instead of --model_path).")
flags.DEFINE_string("export_dir", "exports", "Root of the exports (TF Serving's model base paths live under it).")
flags.DEFINE_string("name", None, "Served model name: the directory under --export_dir.", required=True)
flags.DEFINE_integer("version", None, "Version number (default: the next after the existing ones).")
flags.DEFINE_string("dataset_name", "fer2013", "Training data set (kept in the metadata; adapter for --data_dir).")
flags.DEFINE_string("data_dir", None, "Data set root: representative images for int8, class names when there is no run.json.")
flags.DEFINE_list("class_names", [], "Class names in output order (default: run.json beside the model, then --data_dir).")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "tflite"], "What to write.")
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


def _run_info(model_path) -> dict:
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "run.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _training_arrays(spec, limit):
    from pipelines.datasets import load_arrays, open_dataset
    from pipelines.datasets.splits import default_splits

    split = default_splits(FLAGS.dataset_name)[0]
    return load_arrays(open_dataset(FLAGS.dataset_name, FLAGS.data_dir, split), image_size=spec.source_size, channels=spec.channels, limit=limit)


def _class_names(model_path, spec):
    if FLAGS.class_names:
        return list(FLAGS.class_names)
    names = _run_info(model_path).get("class_names")
    if names:
        return names
    if FLAGS.data_dir:
        return list(_training_arrays(spec, limit=1).class_names)
    print("No --class_names, run.json or --data_dir: labels will be class ids.")
    return None


def main(argv):
    del argv
    from fer_keras.evaluate import spec_for_model
    from fer_keras.export import export_ensemble, export_model

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
        specs = [spec_for_model(m) for m in members]
        info = _run_info(FLAGS.ensemble[0])
        path = export_ensemble(
            members, FLAGS.export_dir, FLAGS.name, FLAGS.version, default=FLAGS.default_vote, alpha=FLAGS.alpha, beta=FLAGS.beta,
            class_names=_class_names(FLAGS.ensemble[0], specs[0]), dataset_name=info.get("dataset", FLAGS.dataset_name),
            extra_metadata={"source_models": [os.path.abspath(p) for p in FLAGS.ensemble]}, specs=specs,
        )
        print(f"Wrote ensemble SavedModel of {len(members)} members to {path} (signatures t2v, noi, bagging, metadata; serving_default = {FLAGS.default_vote})")
        return 0

    model = _load(FLAGS.model_path)
    spec = spec_for_model(model)
    info = _run_info(FLAGS.model_path)
    kwargs = dict(class_names=_class_names(FLAGS.model_path, spec), spec=spec, dataset_name=info.get("dataset", FLAGS.dataset_name),
                  extra_metadata={"source_model": os.path.abspath(FLAGS.model_path)})
    if FLAGS.format == "savedmodel":
        path = export_model(model, FLAGS.export_dir, FLAGS.name, FLAGS.version, **kwargs)
        print(f"Wrote SavedModel {path} (signatures serving_default [encoded image bytes], predict_images [uint8 {spec.source_size[0]}x{spec.source_size[1]}x{spec.channels}], metadata)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        return _write_tflite(export_model(model, tmp, FLAGS.name, 1, **kwargs), spec)


def _write_tflite(saved_model_dir, spec):
    from fer_keras.export import convert_saved_model

    representative = None
    if FLAGS.quantize == "int8":
        if spec is None:
            import tensorflow as tf

            meta = tf.saved_model.load(saved_model_dir).signatures["metadata"](unused=tf.constant(0))
            from fer_keras.input_spec import InputSpec

            spec = InputSpec(image_size=(int(meta["input_height"]), int(meta["input_width"])), source_size=(int(meta["source_height"]), int(meta["source_width"])), channels=int(meta["channels"]))
        representative = _training_arrays(spec, FLAGS.representative_count).images
    output = os.path.join(FLAGS.export_dir, f"{FLAGS.name}-{FLAGS.quantize}.tflite")
    result = convert_saved_model(saved_model_dir, output, FLAGS.quantize, representative)
    print(f"Wrote {result.path} ({result.size_bytes / 1e6:.2f} MB, {FLAGS.quantize}); ops: {', '.join(result.ops)}")
    return 0


if __name__ == "__main__":
    app.run(main)
