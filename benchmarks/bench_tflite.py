"""TFLite (float32 / float16 / int8) vs Keras: parity on real validation images of the
model's data set (FER2013 val, FER+ valid, ...), file sizes, per-image latency at batch 1.

    python benchmarks/bench_tflite.py --model_path=../runs/baseline-fer2013/best.keras \
        --data_dir=../shared/datasets/fer2013
    python benchmarks/bench_tflite.py --model_path=fer_keras/weights/resface-ferplus.keras \
        --data_dir=../shared/datasets/ferplus

Exports the model as a SavedModel (temporary directory), converts its ``predict_images``
signature with ``fer_keras.export.convert_saved_model`` (int8 calibrated on
``--representative_count`` training images), then measures on ``--limit`` validation images
(``--dataset``, default the model's training data set; its default splits; FER+ accuracy on
the majority vote, images without one left out): top-1 agreement with Keras and accuracy of
each variant. Latency: batch 1 over
``--latency_images`` images, ``--warmup`` calls first, median / min / max of the per-image
mean over ``--reps`` repetitions. Every row includes the same preprocessing (uint8 aligned
face in: normalise, centre crop; ``eval_inputs`` for the Keras rows). Prints a markdown table.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A trained .keras model.", required=True)
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fer2013"), "Root of the data set (default: the shared FER2013 class folders).")
flags.DEFINE_string("dataset", None, "Data set adapter of --data_dir (default: the model's training data set, else fer2013).")
flags.DEFINE_integer("limit", 1000, "Val images for the parity measurement.")
flags.DEFINE_integer("representative_count", 300, "Training images for int8 calibration.")
flags.DEFINE_integer("latency_images", 200, "Images per latency repetition (batch 1).")
flags.DEFINE_integer("reps", 3, "Latency repetitions.")
flags.DEFINE_integer("warmup", 20, "Warm-up calls before timing.")
flags.DEFINE_integer("threads", None, "TFLite interpreter threads (default: the runtime's).")


def _latency(call, images) -> tuple[float, float, float]:
    for image in images[: FLAGS.warmup]:
        call(image[None])
    means = []
    for _ in range(FLAGS.reps):
        start = time.perf_counter()
        for image in images:
            call(image[None])
        means.append((time.perf_counter() - start) / len(images) * 1e3)
    return statistics.median(means), min(means), max(means)


def _tflite_call(model_path, shape):
    from fer_keras.export import make_interpreter

    interpreter = make_interpreter(model_path, num_threads=FLAGS.threads)
    (image_input,) = interpreter.get_input_details()  # predict_images: one input, images
    input_index = image_input["index"]
    # outputs: class_ids [N], labels [N], probabilities [N, C] (the only rank-2 one)
    output_index = next(d["index"] for d in interpreter.get_output_details() if len(d["shape_signature"]) == 2)
    interpreter.resize_tensor_input(input_index, [1, *shape])
    interpreter.allocate_tensors()

    def call(image):
        interpreter.set_tensor(input_index, image)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return call


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from fer_keras.weights.export import directory_bytes
    from fer_keras.export import convert_saved_model, export_model, make_interpreter, predict_tflite
    from fer_keras.export.tflite import interpreter_name
    from fer_keras.inference import predict_scores
    from fer_keras.saving import load_model, model_spec
    from pipelines.datasets import load_split
    from pipelines.datasets.splits import default_splits
    from pipelines.input import eval_inputs

    model = load_model(FLAGS.model_path)
    dataset = FLAGS.dataset or model_spec(model).dataset or "fer2013"
    spec = model_spec(model).input_spec
    train_split, val_split = default_splits(dataset)
    load = lambda split, limit: load_split(dataset, FLAGS.data_dir, split, spec, limit=limit, progress=False)
    val, train = load(val_split, FLAGS.limit), load(train_split, FLAGS.representative_count)
    keras_scores = predict_scores(model, val.images)
    keras_accuracy = float((keras_scores.argmax(1) == val.targets).mean())
    latency_images = val.images[: FLAGS.latency_images]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        saved_model = export_model(model, tmp, "bench")
        signature = tf.saved_model.load(saved_model).signatures["predict_images"]
        for quantize in ("none", "float16", "int8"):
            result = convert_saved_model(saved_model, os.path.join(tmp, f"bench-{quantize}.tflite"), quantize, train.images)
            interpreter = make_interpreter(result.path, num_threads=FLAGS.threads)
            scores = predict_tflite(interpreter, val.images)
            agreement = float((scores.argmax(1) == keras_scores.argmax(1)).mean())
            accuracy = float((scores.argmax(1) == val.targets).mean())
            timing = _latency(_tflite_call(result.path, val.images.shape[1:]), latency_images)
            name = {"none": "TFLite float32", "float16": "TFLite float16", "int8": "TFLite int8"}[quantize]
            rows.append((name, f"{result.size_bytes / 1e6:.3f}", f"{agreement * 100:.2f}", f"{accuracy * 100:.2f}", *timing))
        saved_model_size = directory_bytes(saved_model)
        scores = signature(images=tf.constant(val.images))["probabilities"].numpy()
        agreement = float((scores.argmax(1) == keras_scores.argmax(1)).mean())
        accuracy = float((scores.argmax(1) == val.targets).mean())
        timing = _latency(lambda x: signature(images=tf.constant(x)), latency_images)
        rows.append(("SavedModel predict_images", f"{saved_model_size / 1e6:.3f}", f"{agreement * 100:.2f}", f"{accuracy * 100:.2f}", *timing))
    keras_size = f"{os.path.getsize(FLAGS.model_path) / 1e6:.3f}"
    timing = _latency(lambda x: model(eval_inputs(x, spec), training=False), latency_images)
    rows.append(("Keras model(x, training=False)", keras_size, "(reference)", f"{keras_accuracy * 100:.2f}", *timing))
    timing = _latency(lambda x: model.predict(eval_inputs(x, spec), verbose=0), latency_images)
    rows.append(("Keras model.predict", keras_size, "(reference)", f"{keras_accuracy * 100:.2f}", *timing))

    print(f"\nModel {FLAGS.model_path} ({model.name}, {model.count_params()} parameters); {dataset} {val_split}, {len(val.images)} images; "
          f"int8 calibrated on {len(train.images)} train images; latency: batch 1, {len(latency_images)} images x {FLAGS.reps} reps after {FLAGS.warmup} warm-up calls.")
    print(f"Runtime: {interpreter_name()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}).\n")
    print("| variant | size (MB) | top-1 agreement with Keras (%) | accuracy (%) | latency median (ms/image) | min | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, size, agreement, accuracy, median, low, high in rows:
        print(f"| {name} | {size} | {agreement} | {accuracy} | {median:.3f} | {low:.3f} | {high:.3f} |")
    return 0


if __name__ == "__main__":
    app.run(main)
