"""Where a training step's time goes: TensorFlow profiler op statistics of one model's step.

    python benchmarks/profile_step.py --data_dir=../shared/datasets/fer2013 [--model=mrcar] [--batch_size=32]
        [--precision=float32] [--steps=20] [--model_options=variant=global_only]

Builds the registered model and its objective, runs the compiled distributed train step on
one real FER2013 batch held in memory (no input pipeline) for a warm-up, then traces
``--steps`` steps with ``tf.profiler`` and prints the self-time of each TensorFlow op type
(from the profiler's ``framework_op_stats``), grouped, with its share of the total, plus the
step's images/s. Run it on an idle machine for absolute figures; the shares are robust.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/datasets/fer2013", "FER2013 class folders.")
flags.DEFINE_integer("threads", None, "CPU cores (as fer_keras.train: the model's thread plan, fer_keras.runtime).")
flags.DEFINE_string("model", "mrcar", "Registered model.")
flags.DEFINE_list("model_options", [], "Builder options key=value.")
flags.DEFINE_integer("batch_size", 32, "Batch size (the preset's for MrCAR).")
flags.DEFINE_string("precision", "float32", "Keras dtype policy: float32 or mixed_bfloat16.")
flags.DEFINE_integer("steps", 20, "Traced steps.")
flags.DEFINE_integer("top", 25, "Op types to list.")

# Op types grouped by what they do (the rest is listed as it is).
GROUPS = {
    "convolution": ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "_FusedConv2D", "DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput", "DepthwiseConv2dNativeBackpropFilter", "_MklNativeConv2D", "_MklNativeFusedConv2D", "_MklNativeConv2DBackpropInput", "_MklNativeConv2DBackpropFilter"),
    "batch norm": ("FusedBatchNormV3", "FusedBatchNormGradV3", "_MklNativeFusedBatchNormV3", "_MklNativeFusedBatchNormGradV3", "_MklFusedBatchNormV3"),
    "matmul": ("MatMul", "_MklMatMul", "_FusedMatMul", "BatchMatMulV2", "_MklNativeFusedMatMul"),
    "pooling": ("MaxPool", "MaxPoolGrad", "AvgPool", "AvgPoolGrad", "Mean", "_MklNativeMaxPool", "_MklNativeMaxPoolGrad"),
    "casts": ("Cast",),
}


def main(argv):
    del argv
    import keras
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    from fer_keras import runtime
    from fer_keras.objective import call_factory
    from fer_keras.registry import build_model, get_model_entry
    from fer_keras.training.loop import LoopConfig, Trainer
    from pipelines import input as input_pipeline
    from pipelines.cli import parse_options
    from pipelines.datasets import load_arrays, open_dataset

    entry = get_model_entry(FLAGS.model)
    runtime.configure(FLAGS.threads, False, entry.parallel_branches)
    keras.mixed_precision.set_dtype_policy(FLAGS.precision)
    spec = entry.input_spec
    arrays = load_arrays(open_dataset("fer2013", FLAGS.data_dir, "train"), image_size=spec.source_size, channels=spec.channels, limit=FLAGS.batch_size * 4, progress=False)
    options = parse_options(FLAGS.model_options)
    trainer = Trainer(lambda: build_model(FLAGS.model, arrays.class_names, spec, **options), lambda m: call_factory(entry.objective, m, "labels", {}),
                      LoopConfig(batch_size=FLAGS.batch_size, optimizer="sgd", learning_rate=0.01, verbose=0), tempfile.mkdtemp(), tf.distribute.get_strategy())
    step = trainer.make_train_step(FLAGS.batch_size)
    batch = next(iter(input_pipeline.train_dataset(arrays.images, arrays.targets, spec, FLAGS.batch_size)))

    def run(steps):
        iterator = iter(tf.data.Dataset.from_tensors(batch).repeat(steps))
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = step(iterator, tf.constant(0, tf.int64))
        float(loss)
        return steps * FLAGS.batch_size / (time.perf_counter() - start)

    run(5)
    rate = run(FLAGS.steps)
    logdir = tempfile.mkdtemp(prefix="profile-")
    tf.profiler.experimental.start(logdir)
    run(FLAGS.steps)
    tf.profiler.experimental.stop()
    xspace = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    data, _ = _pywrap_profiler_plugin.xspace_to_tools_data(xspace, "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [c["id"] for c in table["cols"]]
    self_time = collections.Counter()
    for row in table["rows"]:
        values = dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"])))
        if values.get("host_or_device") not in (None, "Host") and values.get("host_or_device") != "Device":
            continue
        op_type = values.get("type")
        group = next((name for name, types in GROUPS.items() if op_type in types), op_type)
        self_time[group] += float(values.get("total_self_time") or 0.0)
    total = sum(self_time.values())
    print(f"{FLAGS.model} {options or ''} batch {FLAGS.batch_size} {FLAGS.precision}: {rate:.0f} images/s (compute only, data in memory)")
    print("| op type (grouped) | self time per step, ms | share |")
    print("|---|---:|---:|")
    for name, value in self_time.most_common(FLAGS.top):
        print(f"| {name} | {value / 1000 / FLAGS.steps:.2f} | {100 * value / total:.1f}% |")


if __name__ == "__main__":
    app.run(main)
