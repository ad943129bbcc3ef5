"""Images/s of the tf.data input pipeline alone vs the training step it feeds.

    python benchmarks/bench_pipeline.py --data_dir=../shared/datasets/fer2013 [--model=baseline]
        [--batch_sizes=64,128] [--precisions=float32,mixed_bfloat16] [--repeats=3] [--steps=60]

For each (batch size, precision): the pipeline alone (augmenting FER2013 train batches,
nothing else), the train step on one batch held in memory (compute only), and the train
step fed by the pipeline (what training really does). Warm-up first, then the median of
``--repeats`` runs with min and max. Prints a markdown table.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from timing import repeated  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/datasets/fer2013", "FER2013 class folders.")
flags.DEFINE_integer("threads", None, "CPU cores (as fer_keras.train: the model's thread plan, fer_keras.runtime).")
flags.DEFINE_enum("thread_plan", "model", ["model", "split", "branches"], "Ops split over the cores, branches side by side (one thread per op), or the model's declaration.")
flags.DEFINE_string("model", "baseline", "Registered model.")
flags.DEFINE_list("batch_sizes", ["64"], "Global batch sizes to try.")
flags.DEFINE_list("precisions", ["float32"], "Keras dtype policies to try (float32, mixed_bfloat16).")
flags.DEFINE_list("jit_compile", ["false"], "XLA-compile the train step: false, true or both.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions per measurement.")
flags.DEFINE_integer("steps", 60, "Steps (batches) per timed repetition.")


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from fer_keras import runtime
    from fer_keras.registry import build_model, get_model_entry
    from fer_keras.training.loop import LoopConfig, Trainer
    from pipelines import input as input_pipeline
    from pipelines.datasets import load_arrays, open_dataset

    entry = get_model_entry(FLAGS.model)
    branches = entry.parallel_branches if FLAGS.thread_plan == "model" else FLAGS.thread_plan == "branches"
    plan = runtime.configure(FLAGS.threads, False, branches)
    spec = entry.input_spec
    arrays = load_arrays(open_dataset("fer2013", FLAGS.data_dir, "train"), image_size=spec.source_size, channels=spec.channels, progress=False)
    images, targets = arrays.images, arrays.targets
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs; {FLAGS.model} on {len(images)} FER2013 train images; {FLAGS.steps} steps x {FLAGS.repeats} repeats; threads: {plan.describe()}")
    rows = []
    for precision in FLAGS.precisions:
        keras.mixed_precision.set_dtype_policy(precision)
        for batch_size, jit in ((int(b), j == "true") for b in FLAGS.batch_sizes for j in FLAGS.jit_compile):
            steps = FLAGS.steps
            epoch = [0]

            def fresh_dataset():
                epoch[0] += 1
                return input_pipeline.train_dataset(images, targets, spec, batch_size, epoch=epoch[0]).take(steps)

            def pipeline_only():
                ds = fresh_dataset()
                start = time.perf_counter()
                for _ in ds:
                    pass
                return steps * batch_size / (time.perf_counter() - start)

            trainer = Trainer(lambda: build_model(FLAGS.model, arrays.class_names, spec), lambda model: entry.objective(model, "labels"), LoopConfig(batch_size=batch_size, jit_compile=jit, verbose=0), tempfile.mkdtemp(prefix="fer_keras_bench-"), tf.distribute.get_strategy())
            step = trainer.make_train_step(batch_size)
            batch = next(iter(fresh_dataset()))

            def compute_only():
                iterator = iter(tf.data.Dataset.from_tensors(batch).repeat(steps))
                start = time.perf_counter()
                for _ in range(steps):
                    loss, _ = step(iterator, tf.constant(0, tf.int64))
                float(loss)
                return steps * batch_size / (time.perf_counter() - start)

            def fed_by_pipeline():
                iterator = iter(fresh_dataset())
                start = time.perf_counter()
                for _ in range(steps):
                    loss, _ = step(iterator, tf.constant(0, tf.int64))
                float(loss)
                return steps * batch_size / (time.perf_counter() - start)

            pipe = repeated(pipeline_only, FLAGS.repeats)
            compute = repeated(compute_only, FLAGS.repeats)
            fed = repeated(fed_by_pipeline, FLAGS.repeats)
            rows.append((precision + (" + XLA" if jit else ""), batch_size, pipe, compute, fed))
            print(f"  {rows[-1][0]} batch {batch_size}: pipeline {pipe[0]:.0f}/s, train step {compute[0]:.0f}/s, fed {fed[0]:.0f}/s", flush=True)
    print("\n| precision | batch | pipeline alone img/s (min-max) | train step, data in memory | train step fed by pipeline | pipeline / train step |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision, batch_size, pipe, compute, fed in rows:
        cell = lambda m: f"{m[0]:.0f} ({m[1]:.0f}-{m[2]:.0f})"  # noqa: E731
        print(f"| {precision} | {batch_size} | {cell(pipe)} | {cell(compute)} | {cell(fed)} | {pipe[0] / fed[0]:.1f}x |")


if __name__ == "__main__":
    app.run(main)
