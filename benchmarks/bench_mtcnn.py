"""MTCNN throughput: one image per call vs batched calls (mtcnn 1.0, CPU).

    PYTHONPATH=. python benchmarks/bench_mtcnn.py [--shared=../shared] [--fer_count=64] [--repeats=3]

Cases: the shared photos (assorted sizes; "batched" is one raw ``detect_faces(list)`` call,
which pads them to the largest), and FER2013 48x48 training images native and upscaled to
96 px (same size, so batches of ``--batch_size``). One warm-up run per case, then the median
(min, max) of ``--repeats`` timed runs. Also prints FER detection rates (confidence >= 0.9).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
from PIL import Image
from timing import timed

from fer_keras.runtime import cpu_model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    parser.add_argument("--fer_count", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf
    from mtcnn import MTCNN

    mtcnn = MTCNN()
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(glob.glob(os.path.join(args.shared, "faces", "*")))]
    fer_paths = sorted(glob.glob(os.path.join(args.shared, "datasets", "fer2013", "train", "*", "*.png")))
    rng = np.random.default_rng(0)
    fer_paths = [fer_paths[i] for i in rng.choice(len(fer_paths), args.fer_count, replace=False)]
    fer48 = [np.asarray(Image.open(p).convert("RGB")) for p in fer_paths]
    fer96 = [np.asarray(Image.fromarray(im).resize((96, 96), Image.BILINEAR)) for im in fer48]

    def single(images):
        return lambda: [mtcnn.detect_faces(im, output_type="numpy") for im in images]

    def batched(images, size):
        return lambda: [mtcnn.detect_faces(images[i : i + size], output_type="numpy") for i in range(0, len(images), size)]

    cases = [
        ("shared photos (8, 166-521 px)", photos, [("single", single(photos)), ("batched x8 (padded)", batched(photos, 8))]),
        (f"FER2013 48x48 ({len(fer48)})", fer48, [("single", single(fer48)), (f"batched x{args.batch_size}", batched(fer48, args.batch_size))]),
        (f"FER2013 upscaled 96x96 ({len(fer96)})", fer96, [("single", single(fer96)), (f"batched x{args.batch_size}", batched(fer96, args.batch_size))]),
    ]
    print(f"python {sys.version.split()[0]}, TF {tf.__version__}, nproc {os.cpu_count()}, CPU {cpu_model()}")
    print(f"repeats {args.repeats} (+1 warm-up), median (min-max)\n")
    print("| images | mode | images/s median | min | max |")
    print("|---|---|---:|---:|---:|")
    for label, images, modes in cases:
        for mode, fn in modes:
            med, lo, hi = timed(fn, args.repeats)
            n = len(images)
            print(f"| {label} | {mode} | {n / med:.1f} | {n / hi:.1f} | {n / lo:.1f} |", flush=True)

    print("\nFER2013 detection rate at confidence >= 0.9 (single calls):")
    for label, images in (("48x48 native", fer48), ("96x96 upscaled", fer96)):
        found = sum(bool(len(r)) and float(np.max(r[:, 5])) >= 0.9 for r in (mtcnn.detect_faces(im, output_type="numpy") for im in images))
        print(f"  {label}: {found}/{len(images)} = {100 * found / len(images):.1f}%")


if __name__ == "__main__":
    main()
