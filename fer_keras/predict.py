"""Every face's emotion in photos, folders and videos, from the command line.

    python -m fer_keras.predict photo.jpg folder/ clip.mp4 [--model=baseline-fer2013]
        [--output=results.json|results.csv] [--annotate_dir=DIR] [--min_confidence=0.9]
        [--ten_crop] [--every_n_frames=10]

Folders are searched recursively for images; videos (by extension) need
``pip install fer_keras[video]``. JSON holds one entry per photo/video (frames inside);
CSV one row per face, and one row with ``no_face=1`` for a photo or frame without a face.

stdout holds the results (one line per photo, then the summary); progress bars go to stderr
(plain when it is not a terminal), and so does one ``skipped <file>: <reason>`` line per
file that could not be read; the exit status is then 1. Bad flags, an unknown model or a
bad ``--output`` name stop the run with one ``error:`` line and status 2. Photos of any size
are detected at a bounded working size (``--max_detection_side``), one at a time, so
memory does not grow with their size or number (``fer_keras.recognizer``).
"""

from __future__ import annotations

import collections
import csv
import json
import os
import sys

from absl import app, flags

from fer_keras.recognizer import DETECTION_MAX_SIDE, Recognizer, annotate, list_images, read_photo
from fer_keras.video import is_video
from fer_keras.weights import DEFAULT_MODEL
from pipelines import cli

FLAGS = flags.FLAGS

CSV_FIELDS = ("path", "frame", "timestamp", "face", "no_face", "label", "class_id", "confidence", "x", "y", "w", "h")


def expand_paths(paths) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """``(images, videos, missing)`` from files and folders (recursive image search)."""
    images, videos, missing = [], [], []
    for path in paths:
        if os.path.isdir(path):
            images += list_images(path)
        elif not os.path.exists(path):
            missing.append((path, f"{path}: no such file or folder"))
        elif is_video(path):
            videos.append(path)
        else:
            images.append(path)
    return images, videos, missing


def csv_rows(entries: list[dict], class_names: list[str]) -> list[dict]:
    """One row per face (per frame for videos); a ``no_face`` row for photos/frames without one."""
    rows = []
    for entry in entries:
        frames = entry["frames"] if "frames" in entry else [dict(entry, frame="", timestamp="")]
        for frame in frames:
            base = {"path": entry["path"], "frame": frame["frame"], "timestamp": frame["timestamp"]}
            if not frame["faces"]:
                rows.append({**base, "face": "", "no_face": 1})
            for number, face in enumerate(frame["faces"]):
                x, y, w, h = face["box"]
                row = {**base, "face": number, "no_face": 0, "label": face["label"], "class_id": face["class_id"],
                       "confidence": round(face["confidence"], 4), "x": x, "y": y, "w": w, "h": h}
                row.update({f"p_{name}": round(face["probabilities"][name], 5) for name in class_names})
                rows.append(row)
    return rows


def write_results(path: str, entries: list[dict], class_names: list[str], meta: dict) -> None:
    tmp = path + ".tmp"
    if path.lower().endswith(".csv"):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(CSV_FIELDS) + [f"p_{name}" for name in class_names])
            writer.writeheader()
            writer.writerows(csv_rows(entries, class_names))
    elif path.lower().endswith(".json"):
        with open(tmp, "w") as f:
            json.dump({**meta, "results": entries}, f, indent=2)
    else:
        raise ValueError(f"--output must end in .json or .csv. Received: {path}")
    os.replace(tmp, path)


def annotated_path(annotate_dir: str, path: str, roots: list[str]) -> str:
    """``annotate_dir/<path relative to its input folder>.png`` (flat name for single files)."""
    relative = os.path.basename(path)
    for root in roots:
        if os.path.isdir(root) and os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
            relative = os.path.relpath(path, root)
            break
    return os.path.join(annotate_dir, os.path.splitext(relative)[0] + ".png")


def summarize(photos, videos, skipped) -> str:
    labels = collections.Counter()
    faces = no_face = frames = 0
    for photo in photos:
        faces += len(photo.faces)
        no_face += photo.no_face
        labels.update(face.label for face in photo.faces)
    for result in videos:
        frames += len(result.frames)
        for frame in result.frames:
            labels.update(face.label for face in frame.faces)
    parts = [f"{len(photos)} photo(s): {faces} face(s), {no_face} without a face"]
    if videos:
        parts.append(f"{len(videos)} video(s): {frames} frame(s) read")
    if skipped:
        parts.append(f"{len(skipped)} skipped")
    text = "; ".join(parts)
    if labels:
        text += "\nlabels: " + ", ".join(f"{name} {count}" for name, count in labels.most_common())
    return text


def run(paths, model=DEFAULT_MODEL, output=None, annotate_dir=None, min_confidence=0.9, ten_crop=False, every_n_frames=10, batch_size=32, progress=True,
        recognizer=None, max_detection_side=DETECTION_MAX_SIDE) -> dict:
    """The CLI as a function: returns ``{"photos", "videos", "skipped", "entries"}``."""
    if output and not output.lower().endswith((".json", ".csv")):
        raise ValueError(f"--output must end in .json or .csv. Received: {output}")
    images, video_paths, skipped = expand_paths(paths)
    recognizer = recognizer or Recognizer(model, min_confidence=min_confidence, ten_crop=ten_crop, batch_size=batch_size, max_detection_side=max_detection_side)
    many = recognizer.recognize_many(images, progress=progress and len(images) > 1)
    skipped += many.skipped
    videos = []
    for path in video_paths:
        try:
            videos.append(recognizer.recognize_video(path, every_n_frames=every_n_frames, progress=progress))
        except ImportError:
            raise
        except (OSError, ValueError) as error:
            skipped.append((path, str(error)))
    if annotate_dir:
        for photo in many.photos:
            target = annotated_path(annotate_dir, photo.path, list(paths))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            annotate(read_photo(photo.path), photo.faces).save(target)
    entries = [photo.to_dict() for photo in many.photos] + [v.to_dict() for v in videos]
    entries += [{"path": path, "error": reason, "faces": [], "no_face": None} for path, reason in skipped]
    if output:
        meta = {"model": recognizer.model_name, "min_confidence": recognizer.min_confidence, "ten_crop": recognizer.ten_crop, "class_names": recognizer.class_names}
        write_results(output, [e for e in entries if "error" not in e] if output.lower().endswith(".csv") else entries, recognizer.class_names, meta)
    return {"photos": many.photos, "videos": videos, "skipped": skipped, "entries": entries}


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("no photo, folder or video given. Usage: python -m fer_keras.predict PATH... [--model=NAME] [--output=results.json|.csv]")
    result = run(paths, FLAGS.model, FLAGS.output, FLAGS.annotate_dir, FLAGS.min_confidence, FLAGS.ten_crop, FLAGS.every_n_frames, FLAGS.batch_size, FLAGS.progress,
                 max_detection_side=FLAGS.max_detection_side)
    if not FLAGS.output:
        for photo in result["photos"]:
            faces = ", ".join(f"{f.label} {f.probabilities[f.label]:.2f}" for f in photo.faces) or "no face"
            print(f"{photo.path}: {faces}")
    for path, reason in result["skipped"]:
        print(f"skipped {reason}", file=sys.stderr)
    print(summarize(result["photos"], result["videos"], result["skipped"]))
    if FLAGS.output:
        print(f"results in {FLAGS.output}")
    return 1 if result["skipped"] else 0


if __name__ == "__main__":
    flags.DEFINE_string("model", DEFAULT_MODEL, "Pretrained model name or path of a .keras file.")
    flags.DEFINE_string("output", None, "Write results to this .json or .csv file.")
    flags.DEFINE_string("annotate_dir", None, "Write each photo with boxes and labels drawn here (PNG).")
    flags.DEFINE_float("min_confidence", 0.9, "MTCNN confidence threshold for a face.")
    flags.DEFINE_bool("ten_crop", False, "Average ten crops per face.")
    flags.DEFINE_integer("every_n_frames", 10, "Videos: classify every n-th frame.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Faces per model call (and video frames per detection call).", lower_bound=1)
    flags.DEFINE_integer("max_detection_side", DETECTION_MAX_SIDE, "Longer side of the working image faces are detected on; faces below ~20 px of it are missed.", lower_bound=1)
    flags.DEFINE_bool("progress", True, "Progress bars (on stderr) for folders and videos.")
    cli.run(main)
