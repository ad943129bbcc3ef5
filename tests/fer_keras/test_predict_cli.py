"""``python -m fer_keras.predict``: JSON, CSV, annotated PNGs, no-face rows, skipped files, videos."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fer_keras import predict, weights
from tests.cli_output import own_lines, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def recognizer():
    from fer_keras.recognizer import Recognizer

    return Recognizer("baseline-fer2013")


def test_cli_writes_json_and_annotated_pngs(faces_dir, tmp_path):
    output, annotated = tmp_path / "results.json", tmp_path / "annotated"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "fer_keras.predict", str(faces_dir), f"--output={output}", f"--annotate_dir={annotated}", "--noprogress"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 photo(s): 7 face(s), 1 without a face" in proc.stdout
    data = json.loads(output.read_text())
    assert data["model"] == weights.DEFAULT_MODEL == "vgg4-wide-fer2013" and data["class_names"][0] == "angry"  # the default model
    by_name = {os.path.basename(e["path"]): e for e in data["results"]}
    assert by_name["anime_not_a_photo.png"]["no_face"] is True and by_name["anime_not_a_photo.png"]["faces"] == []
    assert by_name["surprised_man.png"]["faces"][0]["label"] == "surprise"
    pngs = sorted(os.listdir(annotated))
    assert len(pngs) == 8 and all(name.endswith(".png") for name in pngs)
    drawn = np.asarray(Image.open(annotated / "angry_man.png").convert("RGB"))
    assert drawn.shape[:2] == np.asarray(Image.open(faces_dir / "angry_man.png")).shape[:2]


def test_csv_one_row_per_face_and_no_face_rows(recognizer, faces_dir, tmp_path):
    output = tmp_path / "results.csv"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"garbage")
    result = predict.run([str(faces_dir / "angry_man.png"), str(faces_dir / "anime_not_a_photo.png"), str(bad)], output=str(output), recognizer=recognizer, progress=False)
    rows = list(csv.DictReader(output.open()))
    assert [(os.path.basename(r["path"]), r["no_face"], r["label"]) for r in rows] == [("angry_man.png", "0", "angry"), ("anime_not_a_photo.png", "1", "")]
    assert float(rows[0]["p_angry"]) > 0.5 and set(predict.CSV_FIELDS) <= set(rows[0])
    assert [os.path.basename(p) for p, _ in result["skipped"]] == ["broken.jpg"]


def test_two_faces_give_two_csv_rows(recognizer, faces_dir, tmp_path):
    a, b = Image.open(faces_dir / "angry_man.png").convert("RGB"), Image.open(faces_dir / "surprised_man.png").convert("RGB")
    b = b.resize((round(b.width * a.height / b.height), a.height))
    pair = Image.new("RGB", (a.width + b.width, a.height))
    pair.paste(a, (0, 0))
    pair.paste(b, (a.width, 0))
    pair.save(tmp_path / "pair.png")
    predict.run([str(tmp_path / "pair.png")], output=str(tmp_path / "r.csv"), recognizer=recognizer, progress=False)
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(r["face"], r["label"]) for r in rows] == [("0", "angry"), ("1", "surprise")]


def test_video_rows_have_frames_and_timestamps(recognizer, faces_dir, tmp_path):
    pytest.importorskip("av")
    from fer_keras.video import write_video

    rgb = np.asarray(Image.open(faces_dir / "surprised_man.png").convert("RGB"))[:188, :166]
    write_video(tmp_path / "clip.mp4", [rgb] * 4, fps=4)
    predict.run([str(tmp_path / "clip.mp4")], output=str(tmp_path / "v.csv"), every_n_frames=2, recognizer=recognizer, progress=False)
    rows = list(csv.DictReader((tmp_path / "v.csv").open()))
    assert [(r["frame"], float(r["timestamp"]), r["label"]) for r in rows] == [("0", 0.0, "surprise"), ("2", 0.5, "surprise")]


def test_bad_output_extension_is_rejected(recognizer, faces_dir):
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        predict.run([str(faces_dir)], output="out.txt", recognizer=recognizer)


def test_stdout_redirected_to_a_file_holds_plain_results_and_the_bars_go_to_stderr(faces_dir, tmp_path):
    """Results and the summary on lines of their own in stdout, no escape codes anywhere;
    progress bars (12/12 for a 12-frame video read whole) and skipped files on stderr."""
    pytest.importorskip("av")
    from fer_keras.video import write_video

    rgb = np.asarray(Image.open(faces_dir / "surprised_man.png").convert("RGB"))[:188, :166]
    clip = write_video(tmp_path / "clip.mp4", [rgb] * 12, fps=6)
    angry, surprised, missing = faces_dir / "angry_man.png", faces_dir / "surprised_man.png", tmp_path / "missing.jpg"
    with (tmp_path / "stdout.txt").open("w") as stdout:
        proc = run_cli("-m", "fer_keras.predict", str(angry), str(surprised), str(missing), clip, "--every_n_frames=1", stdout=stdout, stderr=subprocess.PIPE)
    assert proc.returncode == 1  # a file was skipped
    out = (tmp_path / "stdout.txt").read_text()
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert lines[0].startswith(f"{angry}: angry ") and lines[1].startswith(f"{surprised}: surprise ")
    assert lines[2] == "2 photo(s): 2 face(s), 0 without a face; 1 video(s): 12 frame(s) read; 1 skipped"
    assert "\x1b" not in proc.stderr
    err = own_lines(proc.stderr)
    assert f"skipped {missing}: no such file or folder" in err
    assert [line.split()[-3] for line in err if line.startswith(("photos ", "clip.mp4 "))] == ["2/2", "12/12"]
