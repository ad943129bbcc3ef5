"""Add a trained run to the shipped pretrained models.

    python -m fer_keras.weights.build --name=mrcar-fer2013 --run_dir=../runs/mrcar-cosine-fer2013

Reads ``<run_dir>/best.keras`` and ``<run_dir>/run.json`` (written by ``fer_keras.train``),
scores the model on the run's full validation split (centre crop and ten-crop) in float32
and again after the float16 storage round trip, computing in float32 whatever the run's
precision policy (``fer_keras.saving.float32_compute``; a run trained with a ``label_mode``, FER+, is
scored as the training CLI validates it: on the majority vote, the images without one left
out and counted in the card), writes ``fer_keras/weights/<name>.keras``
(``--dtype=auto`` stores float16 when it agrees with float32, see ``choose_dtype``) and the
model card ``<name>.json``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile

import numpy as np
from absl import flags

from fer_keras import weights
from fer_keras.inference import predict_scores
from fer_keras.metrics import classification_report
from fer_keras.saving import float32_compute, load_model, model_spec, save_model
from pipelines import cli

# float16 is shipped when its top-1 agrees with float32 on at least this share of the
# validation images and its accuracy moves by at most this much (absolute).
MIN_AGREEMENT = 0.995
MAX_ACCURACY_CHANGE = 0.002


def _summary(report: dict) -> dict:
    return {
        "accuracy": report["accuracy"],
        "mean_class_accuracy": report["mean_class_accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class": {
            name: {key: row[key] for key in ("sensitivity", "precision", "f1", "support")}
            for name, row in report["per_class"].items()
        },
    }


def score_variants(models: dict, images, targets, class_names, ten_crop: bool = True) -> tuple[dict, dict]:
    """``({variant: {"centre": summary, "ten_crop": summary}}, {variant: top-1 predictions})``."""
    results, predictions = {}, {}
    for variant, model in models.items():
        results[variant] = {}
        for mode in ("centre", "ten_crop") if ten_crop else ("centre",):
            scores = predict_scores(model, images, use_ten_crop=mode == "ten_crop")
            results[variant][mode] = _summary(classification_report(targets, scores, class_names))
            predictions[(variant, mode)] = scores.argmax(axis=1)
    return results, predictions


def portable_path(path: str) -> str:
    """``path`` as a card should show it: relative to the repository (``../shared/...`` for
    the shared data beside it), never a machine's absolute path."""
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.relpath(os.path.abspath(path), repository)


def portable_command(command: str | None) -> str | None:
    """A training command with every absolute ``--flag=/path`` made :func:`portable_path`."""
    if not command:
        return command
    words = []
    for word in command.split():
        flag, sep, value = word.partition("=")
        words.append(f"{flag}={portable_path(value)}" if sep and os.path.isabs(value) else word)
    return " ".join(words)


def choose_dtype(results: dict, agreement: float) -> str:
    change = abs(results["float16"]["centre"]["accuracy"] - results["float32"]["centre"]["accuracy"])
    return "float16" if agreement >= MIN_AGREEMENT and change <= MAX_ACCURACY_CHANGE else "float32"


def build_pretrained(name: str, run_dir: str, data_dir: str | None = None, dtype: str = "auto", checkpoint: str = "best.keras", output_dir: str = weights.WEIGHTS_DIR, limit: int | None = None, ten_crop: bool = True) -> dict:
    """Write ``<output_dir>/<name>.keras`` and ``<name>.json`` from a training run; return the card."""
    import keras
    import tensorflow as tf

    import fer_keras
    from pipelines.datasets import load_split

    if dtype not in ("auto", "float16", "float32"):
        raise ValueError(f"dtype must be auto, float16 or float32. Received: dtype={dtype!r}")
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    source = os.path.join(run_dir, checkpoint)
    model = float32_compute(load_model(source))  # a --mixed_precision run ships computing in float32
    spec = model_spec(model)
    split = run.get("splits", [None, "val"])[1]
    data_dir = data_dir or run["data_dir"]
    # As fer_keras.train validates: the majority vote whatever the training label mode.
    label_mode = "majority" if run.get("label_mode") else None
    arrays = load_split(run["dataset"], data_dir, split, spec.input_spec, label_mode, limit)
    class_names = list(spec.class_names)

    with tempfile.TemporaryDirectory() as tmp:
        half = load_model(save_model(model, os.path.join(tmp, "half.keras"), "float16"))
        results, predictions = score_variants({"float32": model, "float16": half}, arrays.images, arrays.targets, class_names, ten_crop)
        modes = ("centre", "ten_crop") if ten_crop else ("centre",)
        agreement = {mode: float(np.mean(predictions[("float32", mode)] == predictions[("float16", mode)])) for mode in modes}
        shipped = choose_dtype(results, agreement["centre"]) if dtype == "auto" else dtype
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, f"{name}.keras")
        save_model(model, path, shipped)

    card = {
        "name": name,
        "model": run.get("model", model.name),
        "keras_model_name": model.name,
        "preset": run.get("preset"),
        "dataset": run["dataset"],
        "train_split": run.get("splits", ["train"])[0],
        "train_images": run.get("train_images"),
        "label_mode": run.get("label_mode"),
        "class_names": class_names,
        "training_command": portable_command(run.get("command")),
        "data_dir": portable_path(data_dir),
        "training_settings": run.get("settings", {}),
        "seed": run.get("seed"),
        "parameters": int(model.count_params()),
        "model_spec": spec.to_dict(),
        "file": {
            "name": os.path.basename(path),
            "bytes": os.path.getsize(path),
            "sha256": weights.file_sha256(path),
            "weights_dtype": shipped,
            "loads_as": "float32",
        },
        "validation": {
            "split": split,
            "label_mode": label_mode,
            "num_examples": int(len(arrays.targets)),
            "skipped": dict(arrays.skipped.counts),
            "shipped": results[shipped],
            "float32": results["float32"],
            "float16": results["float16"],
            "float16_float32_top1_agreement": agreement,
        },
        "source": {"checkpoint": checkpoint, "sha256": weights.file_sha256(source)},
        "built_with": {
            "fer_keras": fer_keras.__version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "date": datetime.date.today().isoformat(),
        },
    }
    weights.write_card(name, card, output_dir)
    return card


def main(argv):
    del argv
    card = build_pretrained(FLAGS.name, FLAGS.run_dir, FLAGS.data_dir, FLAGS.dtype, FLAGS.checkpoint, FLAGS.output_dir or weights.WEIGHTS_DIR, FLAGS.limit, FLAGS.ten_crop)
    val = card["validation"]
    print(f"{card['name']}: {card['parameters']:,} parameters, {card['file']['bytes']:,} bytes ({card['file']['weights_dtype']} weights)")
    for variant in ("float32", "float16"):
        for mode, row in val[variant].items():
            print(f"  {variant} {mode:>8s}: accuracy {row['accuracy']:.4f}, mean per-class {row['mean_class_accuracy']:.4f} on {val['num_examples']} {val['split']} images")
    print(f"  float16/float32 top-1 agreement: {val['float16_float32_top1_agreement']}")
    if val["skipped"]:
        print(f"  {val['split']} images left out: " + ", ".join(f"{n} {reason}" for reason, n in val["skipped"].items()))
    return 0


FLAGS = flags.FLAGS

if __name__ == "__main__":
    flags.DEFINE_string("name", None, "Pretrained model name, e.g. mrcar-fer2013.", required=True)
    flags.DEFINE_string("run_dir", None, "Training run directory (best.keras + run.json).", required=True)
    flags.DEFINE_string("data_dir", None, "Data set root (default: the run's data_dir).")
    flags.DEFINE_enum("dtype", "auto", ["auto", "float16", "float32"], "Weight storage (auto: float16 when it agrees with float32).")
    flags.DEFINE_string("checkpoint", "best.keras", "Model file inside run_dir.")
    flags.DEFINE_string("output_dir", None, "Where to write (default: the fer_keras/weights package folder).")
    flags.DEFINE_bool("ten_crop", True, "Also score ten-crop testing (10x the forward passes).")
    flags.DEFINE_integer("limit", None, "Score at most this many validation images (quick checks only).")
    cli.run(main)
