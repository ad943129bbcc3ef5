"""Framing gap: accuracy through the Recognizer's detect + align path vs the direct path.

    python benchmarks/bench_framing.py --data_dir=../shared/datasets/fer2013 [--model=baseline-fer2013] [--limit=1000] [--upscale=4]

FER2013 validation faces (a seeded subset of ``--limit``) are upscaled ``--upscale`` times
(bicubic, RGB) so MTCNN can find them, then classified: **direct** (the 48x48 image as the
data set gives it: what validation accuracy measures) and through ``fer_keras.Recognizer``
(MTCNN detection on the bordered photo, then each ``InputSpec.framing``: ``aligned``, the
similarity alignment of the 5 landmarks to the template, and ``fer2013_box``, the FER2013
frame around the box). Accuracies are compared on the images where MTCNN finds a face (the
most confident one is used). The shared photos (``../shared/faces``, label in the file name) are also
classified through the Recognizer and as the whole photo resized to the model's input.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import platform

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--model", default="baseline-fer2013")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--upscale", type=int, default=4)
    parser.add_argument("--faces_dir", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "faces"))
    parser.add_argument("--output", default=None, help="Write the figures as JSON here.")
    args = parser.parse_args()

    import tensorflow as tf

    from fer_keras.inference import predict_scores
    from fer_keras.recognizer import Recognizer, read_photo
    from fer_keras.saving import attach_spec, model_spec
    from pipelines.datasets import load_arrays, open_dataset
    from pipelines.images import resize_image, to_channels

    recognizer = Recognizer(args.model)
    spec = recognizer.spec
    val = load_arrays(open_dataset("fer2013", args.data_dir, "val"), image_size=spec.source_size, channels=spec.channels, limit=args.limit, progress=False)
    direct = predict_scores(recognizer.model, val.images).argmax(1)
    size = spec.source_size[0] * args.upscale
    photos = [np.asarray(Image.fromarray(image.squeeze(-1)).convert("RGB").resize((size, size), Image.BICUBIC)) for image in val.images]
    truth = val.targets
    shipped_spec = model_spec(recognizer.model)
    result = {"model": args.model, "images": int(len(truth)), "upscale": args.upscale, "direct_accuracy_all": float(np.mean(direct == truth)), "framings": {}}
    for framing in ("aligned", "fer2013_box"):
        attach_spec(recognizer.model, shipped_spec.replace(input_spec=dataclasses.replace(shipped_spec.input_spec, framing=framing)))
        recognizer.spec = model_spec(recognizer.model).input_spec
        found, through = [], []
        for start in range(0, len(photos), 32):
            for faces in recognizer._recognize_arrays(photos[start : start + 32]):
                found.append(bool(faces))
                through.append(max(faces, key=lambda f: f.confidence).class_id if faces else -1)
        found, through = np.array(found), np.array(through)
        row = {
            "detected": int(found.sum()),
            "direct_accuracy_detected": float(np.mean(direct[found] == truth[found])),
            "recognizer_accuracy_detected": float(np.mean(through[found] == truth[found])),
            "agreement_detected": float(np.mean(through[found] == direct[found])),
        }
        row["gap_points"] = 100 * (row["direct_accuracy_detected"] - row["recognizer_accuracy_detected"])
        result["framings"][framing] = row
    attach_spec(recognizer.model, shipped_spec)
    recognizer.spec = shipped_spec.input_spec
    photos_rows = []
    for path in sorted(glob.glob(os.path.join(args.faces_dir, "*"))):
        name = os.path.basename(path).split("_")[0]
        rgb = read_photo(path)
        whole = resize_image(to_channels(rgb, spec.channels), spec.source_size)
        whole_label = recognizer.class_names[int(predict_scores(recognizer.model, whole[None]).argmax())]
        faces = recognizer.recognize(path).faces
        photos_rows.append({"photo": os.path.basename(path), "truth": name, "recognizer": [f.label for f in faces], "whole_photo_resized": whole_label})
    result["photos"] = photos_rows
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}")
    print(json.dumps({k: v for k, v in result.items() if k != "photos"}, indent=2))
    for row in photos_rows:
        print(f"  {row['photo']:32s} truth {row['truth']:10s} recognizer {','.join(row['recognizer']) or '(no face)':20s} whole photo {row['whole_photo_resized']}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
