"""What this CPU's convolutions reach: one 3x3 convolution in float32 and bfloat16, GFLOP/s.

    python benchmarks/bench_conv.py [--shape=64,22,22,128] [--filters=128] [--repeats=20]

The first thing to run when training speeds look off on a new machine: it prints the CPU's
bfloat16 flags (``fer_keras.runtime.cpu_flags``) next to the rate of a convolution the size of
MrCAR's second stage, so the gap between float32 and bfloat16 (``--mixed_precision``) is seen,
not guessed. Warm-up first, then the median of ``--repeats`` calls with min and max.
"""

from __future__ import annotations

import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from timing import timed  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("shape", ["64", "22", "22", "128"], "Input batch, height, width, channels.")
flags.DEFINE_integer("filters", 128, "Output channels.")
flags.DEFINE_integer("repeats", 20, "Timed calls per precision.")


def main(argv):
    del argv
    import tensorflow as tf

    from fer_keras.runtime import NATIVE_BFLOAT16_FLAGS, cpu_flags, cpu_model

    batch, height, width, channels = (int(v) for v in FLAGS.shape)
    flops = 2 * batch * height * width * channels * FLAGS.filters * 9
    features = cpu_flags()
    native = sorted(features & NATIVE_BFLOAT16_FLAGS) if features is not None else "unknown"
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs ({cpu_model()}, {platform.machine()}); bfloat16 flags: {native or 'none'}")
    print("| precision | ms per call (min-max) | GFLOP/s |\n|---|---:|---:|")
    for dtype in (tf.float32, tf.bfloat16):
        x = tf.cast(tf.random.normal([batch, height, width, channels]), dtype)
        w = tf.cast(tf.random.normal([3, 3, channels, FLAGS.filters]), dtype)
        conv = tf.function(lambda x=x, w=w: tf.nn.conv2d(x, w, 1, "SAME"))
        median, low, high = timed(lambda: conv().numpy(), FLAGS.repeats)
        print(f"| {dtype.name} | {median * 1e3:.1f} ({low * 1e3:.1f}-{high * 1e3:.1f}) | {flops / median / 1e9:.0f} |")


if __name__ == "__main__":
    app.run(main)
