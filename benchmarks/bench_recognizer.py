"""End-to-end Recognizer latency on the shared photos: one photo per call vs recognize_many.

    PYTHONPATH=. python benchmarks/bench_recognizer.py [--shared=../shared] [--model=baseline-fer2013] [--repeats=5] [--ten_crop]

Each timed pass reads every photo of ``<shared>/faces`` from disk and runs detection
(MTCNN, every face), alignment and classification: "single" calls ``recognize(path)`` once
per photo, "batched" calls ``recognize_many(paths)`` once (MTCNN batches only same-size
photos; all faces go through the model together). One warm-up pass per case, then the
median (min, max) of ``--repeats`` passes, per photo and per face. A last row times the
classification step alone on the aligned faces (batched), to show where the time goes.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from timing import timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared"))
    parser.add_argument("--model", default="baseline-fer2013")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ten_crop", action="store_true")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from fer_keras.recognizer import Recognizer, read_photo

    paths = sorted(p for p in glob.glob(os.path.join(args.shared, "faces", "*")) if p.lower().endswith((".png", ".jpg", ".jpeg")))
    if not paths:
        sys.exit(f"No photos in {args.shared}/faces")
    recognizer = Recognizer(args.model, ten_crop=args.ten_crop)
    faces = sum(len(recognizer.recognize(p).faces) for p in paths)

    aligned = []  # the faces as the model takes them (framed per its InputSpec)
    for path in paths:
        image = read_photo(path)
        aligned += recognizer._frame(image, recognizer.detector.detect_one(image))
    aligned = np.stack(aligned)

    cases = {
        "single (recognize per photo)": lambda: [recognizer.recognize(p) for p in paths],
        "batched (recognize_many)": lambda: recognizer.recognize_many(paths, progress=False),
        "classification only (aligned faces, one batch)": lambda: recognizer.classify_faces(aligned),
    }
    print(f"{args.model}{' ten-crop' if args.ten_crop else ''}: {len(paths)} photos, {faces} faces (min_confidence {recognizer.min_confidence}); "
          f"median (min-max) of {args.repeats} passes after 1 warm-up")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print("| case | ms / photo | ms / face | pass total (s) |")
    print("|---|---:|---:|---:|")
    for name, fn in cases.items():
        median, low, high = timed(fn, args.repeats)
        per_photo = "" if name.startswith("classification") else f"{1000 * median / len(paths):.1f} ({1000 * low / len(paths):.1f}-{1000 * high / len(paths):.1f})"
        print(f"| {name} | {per_photo} | {1000 * median / faces:.1f} ({1000 * low / faces:.1f}-{1000 * high / faces:.1f}) | {median:.3f} |")


if __name__ == "__main__":
    main()
