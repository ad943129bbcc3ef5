"""Fit a model's calibration temperature: ``python -m fer_keras.calibrate --model_path=best.keras --dataset=fer2013 --data_dir=...``.

Scores the validation split, fits ``T`` (``fer_keras.calibration``) on one seeded half and
reports NLL and expected calibration error (15 bins) before and after on the OTHER half, then
writes the model with ``T`` in its ``ModelSpec`` (``--output``, default: the input file,
replaced atomically), ``calibration.json`` and a reliability diagram beside it.
``--model=<shipped name>`` calibrates a shipped model and records the figures in its card
(``--weights_dir``: a folder of built models other than the package's).

``--method=temperature`` (default) fits one ``T`` (Guo et al. 2017); ``--method=parameterized``
fits a per-face temperature from the face's sorted log-probabilities (Tomani et al. 2022,
``fer_keras.calibration``), for heads one ``T`` cannot calibrate (``mrcar-fer2013``'s ArcFace
confidence is bimodal). Both keep every prediction.

The default split is the data set's validation split (``val`` for FER2013, ``valid`` for
FER+); FER+ is scored on the majority vote, the images without one left out (counted in
the report's ``skipped``), as ``fer_keras.train`` validates.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from fer_keras import weights
from fer_keras.calibration import apply_temperature, calibration_report, fit_temperature, fit_temperature_weights, split_halves
from fer_keras.inference import predict_scores
from fer_keras.plots import plot_reliability
from fer_keras.saving import attach_spec, load_model, model_spec, save_model
from pipelines import cli

FLAGS = flags.FLAGS


METHODS = ("temperature", "parameterized")


def calibrate(model, images, labels, seed: int = 0, method: str = "temperature") -> dict:
    """Fit ``T`` (or, ``method="parameterized"``, a per-face ``T(x)``) on one half of
    ``(images, labels)``, report on the other; attach it to the model's spec. Returns the
    report (with the held-out half's raw scores under ``"_scores"``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    spec = model_spec(model)
    attach_spec(model, spec.replace(temperature=1.0, temperature_weights=()))
    scores = predict_scores(model, images)
    fit, held_out = split_halves(len(labels), seed)
    if method == "parameterized":
        temperature, temperature_weights = 1.0, fit_temperature_weights(scores[fit], labels[fit])
    else:
        temperature, temperature_weights = fit_temperature(scores[fit], labels[fit]), ()
    report = calibration_report(scores[held_out], labels[held_out], temperature, weights=temperature_weights)
    report.update({"method": method, "fitted_on": int(len(fit)), "seed": seed, "_scores": (scores[held_out], labels[held_out])})
    attach_spec(model, spec.replace(temperature=temperature, temperature_weights=temperature_weights))
    return report


def main(argv):
    del argv
    from pipelines.datasets import load_split
    from pipelines.datasets.splits import evaluation_split

    if bool(FLAGS.model_path) == bool(FLAGS.model):
        raise app.UsageError("Pass exactly one of --model_path (a .keras file) and --model (a shipped pretrained name).")
    if FLAGS.model and FLAGS.output:
        raise app.UsageError(f"--model={FLAGS.model} updates the shipped file and its card in place; --output is for --model_path "
                             "(copy the .keras file and pass it as --model_path to calibrate a copy).")
    source = weights.weights_path(FLAGS.model, FLAGS.weights_dir) if FLAGS.model else FLAGS.model_path
    model = load_model(source)
    spec = model_spec(model)
    dataset = FLAGS.dataset or spec.dataset
    if not dataset:
        raise app.UsageError("The model names no training data set; pass --dataset.")
    split = FLAGS.split or evaluation_split(dataset, FLAGS.data_dir)
    arrays = load_split(dataset, FLAGS.data_dir, split, spec.input_spec, limit=FLAGS.limit)
    if arrays.skipped.total:
        print(f"{dataset}/{split}: {arrays.skipped.summary()}")
    report = calibrate(model, arrays.images, arrays.targets, FLAGS.seed, FLAGS.method)
    held_out_scores, held_out_labels = report.pop("_scores")
    output = FLAGS.output or source
    card = weights.model_card(FLAGS.model, FLAGS.weights_dir) if FLAGS.model else None
    save_model(model, output, card["file"]["weights_dtype"] if card else "float32")
    folder = os.path.dirname(os.path.abspath(output))
    stem = os.path.splitext(os.path.basename(output))[0]
    after = "after (T(x) per face)" if report["temperature_weights"] else f"after (T={report['temperature']:.2f})"
    calibrated = apply_temperature(held_out_scores, report["temperature"], report["temperature_weights"])
    plot_reliability({"before": (held_out_scores, held_out_labels), after: (calibrated, held_out_labels)},
                     os.path.join(FLAGS.report_dir or folder, f"{stem}-reliability.png"), title=f"{stem} on {split} (held-out half)")
    report.update({"dataset": dataset, "split": split, "skipped": dict(arrays.skipped.counts)})
    if card is not None:
        card["calibration"] = report
        card["model_spec"] = model_spec(model).to_dict()
        card["file"].update({"bytes": os.path.getsize(output), "sha256": weights.file_sha256(output)})
        weights.write_card(FLAGS.model, card, FLAGS.weights_dir or weights.WEIGHTS_DIR)
    else:
        with open(os.path.join(FLAGS.report_dir or folder, f"{stem}-calibration.json"), "w") as f:
            json.dump(report, f, indent=2)
    fitted = "T(x) per face" if report["temperature_weights"] else f"T = {report['temperature']:.3f}"
    print(f"{stem}: {fitted} (fitted on {report['fitted_on']} {split} images); on the other {report['num_examples']}: "
          f"NLL {report['nll_before']:.4f} -> {report['nll_after']:.4f}, ECE {report['ece_before']:.4f} -> {report['ece_after']:.4f}, accuracy {report['accuracy']:.4f} (unchanged)")
    print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("model_path", None, "A .keras model file (or use --model).")
    flags.DEFINE_string("model", None, "A shipped pretrained model name: its file and card are updated.")
    flags.DEFINE_string("weights_dir", None, "Folder of --model's .keras and card (default: the fer_keras/weights package folder).")
    flags.DEFINE_string("dataset", None, "Data set adapter (default: the model's training data set).")
    flags.DEFINE_string("data_dir", None, "Root of the data set.", required=True)
    flags.DEFINE_string("split", None, "Split to fit and report on, one seeded half each (default: the data set's validation split).")
    flags.DEFINE_integer("limit", None, "Use at most this many images.")
    flags.DEFINE_integer("seed", 0, "Seed of the halving.")
    flags.DEFINE_enum("method", "temperature", METHODS, "temperature: one T for every face (Guo et al. 2017); parameterized: "
                      "a per-face T(x) from the face's sorted log-probabilities (Tomani et al. 2022), for heads one T cannot calibrate.")
    flags.DEFINE_string("output", None, "--model_path only: where to write the calibrated .keras (default: replace the input).")
    flags.DEFINE_string("report_dir", None, "Where to write the JSON report and reliability PNG (default: beside --output).")
    cli.run(main)
