"""Evaluate a saved model: ``python -m fer_keras.evaluate --model_path=runs/x/best.keras --dataset=fer2013 --data_dir=... --split=val``.

The model's input spec (crop, source size, channels, regions) and class names are read
from the file (``fer_keras.saving``), never from its name. ``--model=mrcar-fer2013`` evaluates a shipped pretrained model instead of a file (its report
goes to ``./eval-<name>-<dataset>-<split>/`` unless ``--output_dir`` says otherwise).

Writes ``<output_dir>/report.json`` (accuracy, mean per-class accuracy "Ave", per-class
sensitivity / precision / F1, confusion matrix counts and row-normalised) and the two
confusion matrices as PNG.

Cross-data-set evaluation: the model's classes and the data set's are matched by name
(``fer_keras.label_mapping``). ``report.json`` lists ``shared_classes`` (scored),
``unscorable`` (images per data set class the model cannot predict, e.g. FER+ contempt
for a 7-class model: counted, not scored) and ``model_only_classes`` (never the truth;
predicting one is an error). Without ``--split`` the data set's validation split is
evaluated, or all of a ``--dataset=folder`` that holds its class folders directly. ``--ten_crop`` averages the scores of 4 corner + centre crops and
their mirrors.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from fer_keras.inference import predict_scores
from fer_keras.label_mapping import map_classes
from fer_keras.metrics import classification_report
from fer_keras.plots import plot_confusion_matrix
from fer_keras.saving import load_model, model_spec
from pipelines import cli

FLAGS = flags.FLAGS


def write_report(model, images: np.ndarray, targets: np.ndarray, class_names, output_dir: str, use_ten_crop: bool = False, title: str = "", batch_size: int = 256, model_class_names=None) -> dict:
    """Score ``model`` on aligned faces, write ``report.json`` and confusion PNGs, return the report.

    Classes are matched by name (``fer_keras.label_mapping``): ``class_names`` are the data
    set's, ``model_class_names`` the model's (default: its ``ModelSpec``). Images of data
    set classes the model cannot predict are not scored but counted per class in
    ``report["unscorable"]``; the scores (accuracy, mean per-class accuracy, confusion in
    the model's class space) cover the images of ``report["shared_classes"]``. A model
    class the data set lacks is never the truth, and predicting it is an error.

    Raises:
        ValueError: no class in common, no scorable image, or a model whose output width
            differs from its class list.
    """
    model_names = tuple(model_class_names) if model_class_names is not None else tuple(model_spec(model).class_names)
    mapping = map_classes(class_names, model_names)
    model_targets, scorable, unscorable = mapping.apply(targets)
    if not scorable.any():
        raise ValueError(f"None of the {len(scorable)} images is of a class the model predicts {list(model_names)}. Unscorable images per class: {unscorable}")
    scores = predict_scores(model, images[scorable], batch_size, use_ten_crop)
    if scores.shape[1] != len(model_names):
        raise ValueError(f"The model outputs {scores.shape[1]} scores per image but names {len(model_names)} classes {list(model_names)}.")
    report = classification_report(model_targets, scores, model_names)
    report.update({
        "ten_crop": use_ten_crop,
        "title": title,
        "data_class_names": list(mapping.data_class_names),
        "shared_classes": list(mapping.shared_classes),
        "model_only_classes": list(mapping.model_only_classes),
        "unscorable": unscorable,
        "num_unscorable": int(sum(unscorable.values())),
    })
    os.makedirs(output_dir, exist_ok=True)
    matrix = np.asarray(report["confusion_matrix"])
    plot_confusion_matrix(matrix, model_names, os.path.join(output_dir, "confusion_counts.png"), normalize=False, title=f"{title} (counts)")
    plot_confusion_matrix(matrix, model_names, os.path.join(output_dir, "confusion_normalized.png"), normalize=True, title=f"{title} (row-normalised)")
    path = os.path.join(output_dir, "report.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(path + ".tmp", path)
    return report


def print_report(report: dict, title: str) -> None:
    """Console summary of a ``write_report`` result, unscorable images included."""
    print(f"{title}: accuracy {report['accuracy']:.4f}, mean per-class accuracy {report['mean_class_accuracy']:.4f} on {report['num_examples']} images")
    for name, row in report["per_class"].items():
        print(f"  {name:>9s}: sensitivity {row['sensitivity']:.3f} precision {row['precision']:.3f} F1 {row['f1']:.3f} (n={row['support']})")
    if report["unscorable"]:
        counts = ", ".join(f"{name} {n}" for name, n in report["unscorable"].items())
        print(f"  Not scored (classes the model cannot predict): {counts}")
    if report["model_only_classes"]:
        print(f"  Model classes absent from the data set (predicting them is an error): {', '.join(report['model_only_classes'])}")


def main(argv):
    del argv
    from pipelines.datasets import load_split
    from pipelines.datasets.splits import evaluation_split

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
    spec = model_spec(model)
    split = FLAGS.split or evaluation_split(FLAGS.dataset, FLAGS.data_dir)
    arrays = load_split(FLAGS.dataset, FLAGS.data_dir, split, spec.input_spec, FLAGS.label_mode, FLAGS.limit)
    if arrays.skipped.total:
        print(f"{FLAGS.dataset}/{split}: {arrays.skipped.summary()}")
    output_dir = FLAGS.output_dir or f"{default_dir}-{FLAGS.dataset}-{split}{'-tencrop' if FLAGS.ten_crop else ''}"
    title = f"{model.name} on {FLAGS.dataset}/{split}{' ten-crop' if FLAGS.ten_crop else ''}"
    report = write_report(model, arrays.images, arrays.targets, arrays.class_names, output_dir, FLAGS.ten_crop, title, model_class_names=spec.class_names)
    print_report(report, title)
    print(f"Report and confusion matrices in {output_dir}")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("model_path", None, "A .keras model file (or use --model).")
    flags.DEFINE_string("model", None, "A shipped pretrained model name, e.g. mrcar-fer2013 (or use --model_path).")
    flags.DEFINE_string("dataset", "fer2013", "Data set adapter name (see fer_keras.train --help).")
    flags.DEFINE_string("data_dir", None, "Root of the data set.")
    flags.DEFINE_string("split", None, "Split to evaluate (default: the data set's validation split; all of a folder of class folders).")
    flags.DEFINE_string("label_mode", None, "FER+ label mode.")
    flags.DEFINE_bool("ten_crop", False, "Ten-crop test-time augmentation.")
    flags.DEFINE_integer("limit", None, "Evaluate at most this many images.")
    flags.DEFINE_string("output_dir", None, "Where to write report.json and PNGs (default beside the model).")
    cli.run(main)
