"""Evaluate a saved model: ``python -m fer_keras.evaluate --model_path=runs/x/best.keras --dataset=fer2013 --data_dir=... --split=val``.

``--model=mrcar-fer2013`` evaluates a shipped pretrained model instead of a file (its report
goes to ``./eval-<name>-<dataset>-<split>/`` unless ``--output_dir`` says otherwise).

Writes ``<output_dir>/report.json`` (accuracy, mean per-class accuracy "Ave", per-class
sensitivity / precision / F1, confusion matrix counts and row-normalised) and the two
confusion matrices as PNG. ``--ten_crop`` averages the scores of 4 corner + centre crops and
their mirrors.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def write_report(model, images: np.ndarray, targets: np.ndarray, class_names, spec, output_dir: str, use_ten_crop: bool = False, title: str = "", batch_size: int = 256) -> dict:
    """Score ``model`` on aligned faces, write ``report.json`` and confusion PNGs, return the report."""
    from fer_keras.metrics import classification_report
    from fer_keras.plots import plot_confusion_matrix
    from fer_keras.training.loop import predict_scores

    scores = predict_scores(model, images, spec, batch_size, use_ten_crop)
    report = classification_report(targets, scores, class_names)
    report.update({"ten_crop": use_ten_crop, "title": title})
    os.makedirs(output_dir, exist_ok=True)
    matrix = np.asarray(report["confusion_matrix"])
    plot_confusion_matrix(matrix, class_names, os.path.join(output_dir, "confusion_counts.png"), normalize=False, title=f"{title} (counts)")
    plot_confusion_matrix(matrix, class_names, os.path.join(output_dir, "confusion_normalized.png"), normalize=True, title=f"{title} (row-normalised)")
    path = os.path.join(output_dir, "report.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(path + ".tmp", path)
    return report


def _input_shapes(model) -> dict[str, tuple]:
    """Input name -> (h, w, c): from a functional model's inputs, or from a subclassed
    model's config (``image_size``, ``channels``, ``regions``, as MrCAR stores them)."""
    if getattr(model, "inputs", None):
        return {tensor.name.split(":")[0]: tuple(tensor.shape[1:]) for tensor in model.inputs}
    config = model.get_config()
    if "image_size" not in config:
        raise ValueError(f"{model.name}: cannot tell its input sizes (no functional inputs, no image_size in its config).")
    channels = config.get("channels", 1)
    shapes = {"face": (*config["image_size"], channels)}
    shapes.update({name: (*size, channels) for name, size in (config.get("regions") or {}).items()})
    return shapes


def spec_for_model(model):
    """The input spec a saved model was trained with.

    The registered spec of ``model.name`` (or of one of its presets) whose input sizes match
    the model's inputs; otherwise one read off the model's inputs, with no crop margin.
    """
    from fer_keras.input_spec import InputSpec
    from fer_keras.registry import get_model_entry, model_names

    shapes = _input_shapes(model)
    if model.name in model_names():
        entry = get_model_entry(model.name)
        for spec in [entry.input_spec] + [p.input_spec for p in entry.presets.values() if p.input_spec]:
            if all(shapes.get(name) == shape for name, shape in spec.input_shapes().items()):
                return spec
    if "face" not in shapes:
        raise ValueError(f"{model.name}: expected an input named 'face'. Inputs: {sorted(shapes)}")
    height, width, channels = shapes["face"]
    regions = {name: shape[:2] for name, shape in shapes.items() if name not in ("face", "label")}
    return InputSpec(image_size=(height, width), source_size=(height, width), channels=channels, regions=regions)


def main(argv):
    del argv
    from fer_keras.saving import load_model
    from pipelines.datasets.splits import default_splits
    from pipelines.datasets import load_split

    if bool(FLAGS.model_path) == bool(FLAGS.model):
        raise app.UsageError("Pass exactly one of --model_path (a .keras file) and --model (a shipped pretrained name).")
    if FLAGS.model:
        from fer_keras import weights

        model_path = weights.weights_path(FLAGS.model)  # unknown names list the known ones
        default_dir = os.path.abspath(f"eval-{FLAGS.model}")
    else:
        model_path = FLAGS.model_path
        default_dir = os.path.join(os.path.dirname(os.path.abspath(model_path)), "eval")
    model = load_model(model_path)
    spec = spec_for_model(model)
    split = FLAGS.split or default_splits(FLAGS.dataset)[1]
    arrays = load_split(FLAGS.dataset, FLAGS.data_dir, split, spec, FLAGS.label_mode, FLAGS.limit)
    if arrays.skipped.total:
        print(f"{FLAGS.dataset}/{split}: {arrays.skipped.summary()}")
    output_dir = FLAGS.output_dir or f"{default_dir}-{FLAGS.dataset}-{split}{'-tencrop' if FLAGS.ten_crop else ''}"
    title = f"{model.name} on {FLAGS.dataset}/{split}{' ten-crop' if FLAGS.ten_crop else ''}"
    report = write_report(model, arrays.images, arrays.targets, arrays.class_names, spec, output_dir, FLAGS.ten_crop, title)
    print(f"{title}: accuracy {report['accuracy']:.4f}, mean per-class accuracy {report['mean_class_accuracy']:.4f} on {report['num_examples']} images")
    for name, row in report["per_class"].items():
        print(f"  {name:>9s}: sensitivity {row['sensitivity']:.3f} precision {row['precision']:.3f} F1 {row['f1']:.3f} (n={row['support']})")
    print(f"Report and confusion matrices in {output_dir}")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("model_path", None, "A .keras model file (or use --model).")
    flags.DEFINE_string("model", None, "A shipped pretrained model name, e.g. mrcar-fer2013 (or use --model_path).")
    flags.DEFINE_string("dataset", "fer2013", "Data set adapter name (see fer_keras.train --help).")
    flags.DEFINE_string("data_dir", None, "Root of the data set.")
    flags.DEFINE_string("split", None, "Split to evaluate (default: the data set's validation split).")
    flags.DEFINE_string("label_mode", None, "FER+ label mode.")
    flags.DEFINE_bool("ten_crop", False, "Ten-crop test-time augmentation.")
    flags.DEFINE_integer("limit", None, "Evaluate at most this many images.")
    flags.DEFINE_string("output_dir", None, "Where to write report.json and PNGs (default beside the model).")
    app.run(main)
