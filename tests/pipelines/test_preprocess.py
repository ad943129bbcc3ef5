"""Preprocessing real FER2013 images into resumable TFRecord shards."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from pipelines import faces, preprocess, tfrecords
from pipelines.datasets import open_dataset

LIMIT, SHARD = 150, 50


def _open_fer2013(fer2013_dir):
    return open_dataset("fer2013", str(fer2013_dir), "train", on_error="raise")


@pytest.fixture(scope="module")
def detector():
    return faces.FaceDetector(min_confidence=0.9)


@pytest.fixture(scope="module")
def adapter_examples(fer2013_dir):
    examples = []
    for example in _open_fer2013(fer2013_dir):
        examples.append(example)
        if len(examples) == LIMIT:
            return examples


def _run(fer2013_dir, out, detector, **kwargs):
    prep = faces.FacePreprocessor(48, no_face=kwargs.pop("no_face", "assume_aligned"), channels=1, detector=detector)
    return preprocess.run(
        _open_fer2013(fer2013_dir), str(out), dataset_name="fer2013", face_size=48, shard_size=SHARD,
        no_face=prep.no_face, limit=LIMIT, batch_size=32, preprocessor=prep, verbose=0, **kwargs,
    )


def _read(out):
    return list(tfrecords.read_shards(str(out), with_meta=True).as_numpy_iterator())


def test_preprocess_writes_shards_manifest_and_resumes(fer2013_dir, detector, adapter_examples, tmp_path):
    out = tmp_path / "cache"
    manifest = _run(fer2013_dir, out, detector)
    names = [tfrecords.shard_name(i) for i in range(LIMIT // SHARD)]
    assert manifest["shards"] == names and manifest["complete"]
    assert sorted(os.listdir(out)) == sorted([*names, *(n + ".done" for n in names), "manifest.json"])
    on_disk = tfrecords.read_manifest(str(out))
    assert on_disk == manifest
    assert on_disk["class_names"] == list(_open_fer2013(fer2013_dir).class_names)
    assert on_disk["face_size"] == 48 and on_disk["channels"] == 1 and on_disk["label_type"] == "class"
    det = on_disk["detection"]
    assert det["total"] == LIMIT and det["detected"] + det["assumed_aligned"] == LIMIT and det["skipped"] == 0
    assert det["detection_rate"] == pytest.approx(det["detected"] / LIMIT)
    assert 0.5 < det["detection_rate"] < 1.0  # ~80% of FER2013 faces are found natively at 48 px

    rows = _read(out)
    assert len(rows) == LIMIT == on_disk["counts"]["records"]
    assert [int(r["label"]) for r in rows] == [int(e.target) for e in adapter_examples]
    assert [r["path"].decode() for r in rows] == [str(e.meta["path"]) for e in adapter_examples]
    assert sum(on_disk["counts"]["per_class"].values()) == LIMIT
    assert sum(int(r["detected"]) for r in rows) == det["detected"]
    for row, example in zip(rows, adapter_examples):
        assert row["face"].shape == (48, 48, 1) and row["face"].dtype == np.uint8
        assert row["landmarks"].shape == (5, 2)
        if not row["detected"]:  # assume_aligned keeps FER's own 48x48 pixels
            np.testing.assert_array_equal(row["face"], example.image.reshape(48, 48, 1))
        else:
            assert row["confidence"] >= 0.9

    # Resume: delete one finished shard -> only it is rewritten; others untouched.
    mtimes = {n: os.stat(out / n).st_mtime_ns for n in names}
    os.remove(out / names[1])
    # A killed run's leftover .tmp (garbage bytes) is never read and gets overwritten.
    (out / (names[1] + ".tmp")).write_bytes(b"not a tfrecord")
    (out / (names[2] + ".tmp")).write_bytes(b"junk of a killed run")
    again = _run(fer2013_dir, out, detector)
    assert again["resumed_examples"] == 2 * SHARD
    for n in (names[0], names[2]):
        assert os.stat(out / n).st_mtime_ns == mtimes[n]
    assert os.stat(out / names[1]).st_mtime_ns != mtimes[names[1]]
    assert not (out / (names[1] + ".tmp")).exists()
    assert again["detection"] == det and again["counts"] == on_disk["counts"]
    rows_again = _read(out)
    assert [int(r["label"]) for r in rows_again] == [int(r["label"]) for r in rows]
    for a, b in zip(rows_again, rows):
        np.testing.assert_array_equal(a["face"], b["face"])


def test_tmp_and_unmarked_shards_are_never_read(tmp_path, detector, fer2013_dir):
    out = tmp_path / "cache"
    record = tfrecords.Record(np.zeros((48, 48, 1), np.uint8), np.zeros((5, 2), np.float32), 3, "a.png", False, 0.0)
    tfrecords.write_shard(str(out), 0, [record, record])
    # A shard renamed into place whose marker never got written, and a stray .tmp.
    tfrecords.write_shard(str(out), 1, [record])
    os.remove(out / (tfrecords.shard_name(1) + ".done"))
    (out / (tfrecords.shard_name(2) + ".tmp")).write_bytes(b"garbage")
    assert [os.path.basename(p) for p in tfrecords.finished_shards(str(out))] == [tfrecords.shard_name(0)]
    tfrecords.write_manifest(str(out), {"class_names": ["a"] * 7, "face_size": 48, "channels": 1, "label_type": "class"})
    assert len(list(tfrecords.read_shards(str(out)))) == 2
    assert not tfrecords.shard_done(str(out), 1)


def test_skip_mode_and_settings_mismatch(fer2013_dir, detector, tmp_path):
    out = tmp_path / "skip"
    manifest = _run(fer2013_dir, out, detector, no_face="skip")
    det = manifest["detection"]
    assert det["skipped"] == LIMIT - det["detected"] > 0 and det["assumed_aligned"] == 0
    assert manifest["counts"]["records"] == det["detected"] == len(_read(out))
    with pytest.raises(ValueError, match="other settings"):
        _run(fer2013_dir, out, detector, no_face="assume_aligned")


def test_label_distribution_records_round_trip(tmp_path):
    dist = np.array([0.1, 0.0, 0.0, 0.7, 0.0, 0.2, 0.0], np.float32)
    face = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48, 1)
    tfrecords.write_shard(str(tmp_path), 0, [tfrecords.Record(face, np.ones((5, 2)), dist, "x", True, 0.95)])
    tfrecords.write_manifest(str(tmp_path), {"class_names": list("abcdefg"), "face_size": 48, "channels": 1,
                                             "label_type": "distribution", "shards": [tfrecords.shard_name(0)]})
    (row,) = list(tfrecords.read_shards(str(tmp_path)).as_numpy_iterator())
    np.testing.assert_allclose(row["label"], dist)
    np.testing.assert_array_equal(row["face"], face)


def test_cli_end_to_end(fer2013_dir, tmp_path):
    out = tmp_path / "cli"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "pipelines.preprocess", "--dataset=fer2013", f"--data_dir={fer2013_dir}",
           "--split=train", f"--output_dir={out}", "--face_size=48", "--shard_size=20", "--limit=40",
           "--no_face=assume_aligned", "--min_confidence=0.9", "--batch_size=32"]
    done = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Detection rate" in done.stdout
    assert sorted(os.listdir(out)) == ["train"]  # <output_dir>/<split>/, the layout --dataset=cache reads
    manifest = tfrecords.read_manifest(str(out / "train"))
    assert manifest["counts"]["records"] == 40 and len(manifest["shards"]) == 2


def test_a_cache_missing_a_split_names_the_command_that_makes_it(tmp_path):
    settings = {"dataset": "fer2013", "data_dir": "../shared/datasets/fer2013", "split": "train", "face_size": 48, "channels": 1,
                "shard_size": 2000, "no_face": "assume_aligned", "min_confidence": 0.9, "class_names": list("abcdefg")}
    (tmp_path / "train").mkdir()
    tfrecords.write_manifest(str(tmp_path / "train"), settings)
    with pytest.raises(ValueError) as error:
        open_dataset("cache", str(tmp_path), "val")
    command = str(error.value).split("Cache the val split with: ", 1)[1]
    assert command == (f"python -m pipelines.preprocess --dataset=fer2013 --data_dir=../shared/datasets/fer2013 --split=val --output_dir={tmp_path} "
                       "--face_size=48 --channels=1 --shard_size=2000 --no_face=assume_aligned --min_confidence=0.9")


def test_cache_adapter_trains_from_preprocessed_shards(fer2013_dir, detector, adapter_examples, tmp_path):
    """The cache written by preprocess reads back through open_dataset("cache") and load_arrays."""
    from pipelines.datasets import load_arrays

    source = _open_fer2013(fer2013_dir)
    preprocess.run(source, str(tmp_path / "train"), dataset_name="fer2013", face_size=48, shard_size=40, limit=60, verbose=0,
                   preprocessor=faces.FacePreprocessor(48, no_face="assume_aligned", channels=1, detector=detector))
    cache = open_dataset("cache", str(tmp_path), "train")
    assert cache.class_names == source.class_names
    arrays = load_arrays(cache, progress=False)
    assert arrays.images.shape == (60, 48, 48, 1)
    np.testing.assert_array_equal(arrays.targets, [e.target for e in adapter_examples[:60]])
    assert {m["detected"] for m in arrays.meta} <= {0, 1}
    with pytest.raises(ValueError, match="no manifest.json"):
        open_dataset("cache", str(tmp_path), "val")
