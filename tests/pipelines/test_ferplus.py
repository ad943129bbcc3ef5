"""FER+ on the real label.csv files: votes, majority rules, distributions, drops, pixels."""

from __future__ import annotations

import csv
import os
import random

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets import load_arrays, open_dataset
from pipelines.datasets.ferplus import FERPlus, ferplus_target
from pipelines.labels import BASIC8


def _csv_rows(ferplus_dir, folder):
    with open(ferplus_dir / folder / "label.csv", newline="") as f:
        return [(r[0], [int(v) for v in r[2:]]) for r in csv.reader(f) if r]


def _by_name(dataset):
    return {os.path.basename(r.path): r for r in dataset.records()}


@pytest.mark.parametrize("split,folder", [("train", "FER2013Train"), ("valid", "FER2013Valid")])
def test_votes_equal_csv_rows(ferplus_dir, split, folder):
    rows = _csv_rows(ferplus_dir, folder)
    dataset = FERPlus(ferplus_dir, split, label_mode="probability")
    records = _by_name(dataset)
    assert len(records) + dataset.skipped.total == len(rows)
    picked = rows[:30] + random.Random(0).sample(rows, 60)
    checked = 0
    for name, votes in picked:
        if name in records:
            assert records[name].meta["votes"] == votes
            assert records[name].meta["box"] == (0, 0, 48, 48)
            checked += 1
    assert checked >= 80


def test_majority_hand_checked_rows(ferplus_dir):
    plural = _by_name(FERPlus(ferplus_dir, "valid"))
    expected = {
        "fer0028640.png": "neutral",   # 7 neutral, 2 anger, 1 contempt
        "fer0028642.png": "happy",     # 10 happiness
        "fer0028644.png": "sad",       # 1 happiness, 6 sadness, 3 fear
        "fer0028649.png": "angry",     # 2 surprise, 7 anger, 1 unknown
        "fer0028651.png": "fear",      # 3 surprise, 1 sadness, 5 fear, 1 unknown
        "fer0028675.png": "contempt",  # 3 surprise, 2 fear, 4 contempt, 1 unknown
        "fer0028646.png": "neutral",   # 4 neutral, 1 surprise, 2 sadness, 3 unknown (plurality only)
    }
    for name, emotion in expected.items():
        assert BASIC8[plural[name].target] == emotion, name
    # Ties (neutral 4 / contempt 4; neutral 5 / happiness 5), unknown 4 > contempt 3, neutral 4 = unknown 4: dropped.
    for name in ("fer0028638.png", "fer0028641.png", "fer0028812.png", "fer0028788.png"):
        assert name not in plural
    strict = _by_name(FERPlus(ferplus_dir, "valid", majority_rule="strict"))
    assert BASIC8[strict["fer0028640.png"].target] == "neutral"  # 7 of 9 after dropping the single vote
    assert "fer0028646.png" not in strict  # 4 of 9 is not > 50%
    assert "fer0028662.png" not in strict and BASIC8[plural["fer0028662.png"].target] == "sad"


def test_dropped_count_matches_independent_computation(ferplus_dir):
    rows = _csv_rows(ferplus_dir, "FER2013Valid")
    unknown = tie = 0
    for _, votes in rows:
        top = max(votes)
        winners = [i for i, v in enumerate(votes) if v == top]
        if any(i >= 8 for i in winners):
            unknown += 1
        elif len(winners) > 1:
            tie += 1
    dataset = FERPlus(ferplus_dir, "valid")
    kept = dataset.records()
    assert dataset.skipped.counts["unknown/NF majority"] == unknown
    assert dataset.skipped.counts["tied majority"] == tie
    assert len(kept) == len(rows) - unknown - tie
    assert unknown > 0 and tie > 0
    dataset.records()  # listing again counts anew, not twice
    assert dataset.skipped.counts["unknown/NF majority"] == unknown


def test_distributions(ferplus_dir):
    prob = _by_name(FERPlus(ferplus_dir, "valid", label_mode="probability"))
    target = prob["fer0028640.png"].target  # 7 neutral, 2 anger, 1 contempt (single vote removed)
    assert target.dtype == np.float32 and target.shape == (8,)
    np.testing.assert_allclose(target[BASIC8.index("neutral")], 7 / 9, rtol=1e-6)
    np.testing.assert_allclose(target[BASIC8.index("angry")], 2 / 9, rtol=1e-6)
    assert target[BASIC8.index("contempt")] == 0
    sums = np.array([r.target.sum() for r in prob.values()])
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
    ce = _by_name(FERPlus(ferplus_dir, "valid", label_mode="crossentropy"))
    np.testing.assert_array_equal(ce["fer0028644.png"].target, prob["fer0028644.png"].target)
    raw = FERPlus(ferplus_dir, "valid", label_mode="probability", drop_single_votes=False)
    np.testing.assert_allclose(_by_name(raw)["fer0028640.png"].target[BASIC8.index("contempt")], 0.1, rtol=1e-6)
    multi = _by_name(FERPlus(ferplus_dir, "valid", label_mode="multi_target"))
    hot = multi["fer0028651.png"].target  # surprise 3, fear 5 of 8 kept votes -> both >= 30%
    assert hot.tolist() == [0, 0, 1, 0, 0, 1, 0, 0]


def test_target_function_edge_cases():
    assert ferplus_target([0] * 8 + [10, 0]) == (None, "unknown/NF majority")
    assert ferplus_target([0] * 9 + [10], "probability")[1] == "unknown/NF majority"
    assert ferplus_target([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "probability")[1] == "no emotion votes"
    assert ferplus_target([0, 0, 0, 0, 10, 0, 0, 0, 0, 0])[0] == BASIC8.index("angry")


def test_pixels_equal_fer2013_folder_images(ferplus_dir, fer2013_dir):
    fer_val = {}
    for emotion in os.listdir(fer2013_dir / "val"):
        for name in os.listdir(fer2013_dir / "val" / emotion):
            if name.startswith("fer"):
                fer_val[name] = fer2013_dir / "val" / emotion / name
    dataset = FERPlus(ferplus_dir, "valid")
    shared = [r for r in dataset.records() if os.path.basename(r.path) in fer_val][:25]
    assert len(shared) == 25
    for record in shared:
        example = dataset.load_record(record)
        reference = np.asarray(Image.open(fer_val[os.path.basename(record.path)]))
        np.testing.assert_array_equal(example.image[..., 0], reference)


def test_load_arrays_probability(ferplus_dir):
    arrays = load_arrays(open_dataset("ferplus", ferplus_dir, "val", label_mode="probability"), limit=64, progress=False)
    assert arrays.images.shape == (64, 48, 48, 1)
    assert arrays.targets.shape == (64, 8) and arrays.targets.dtype == np.float32
    assert arrays.class_names == BASIC8
    assert arrays.meta[0]["votes"] and len(arrays.meta[0]["votes"]) == 10


def test_bad_label_rows(tmp_path):
    folder = tmp_path / "FER2013Valid"
    folder.mkdir()
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(folder / "fer0000001.png")
    (folder / "label.csv").write_text(
        'fer0000001.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n'
        'fer0000002.png,"(0, 0, 48, 48)",10,0,x,0,0,0,0,0,0,0\n'
        'fer0000003.png,"(0, 0, 48, 48)",10,0,0\n'
        'fer0000004.png,"(0, 0, 48, 48)",0,0,0,0,9,0,0,0,0,0\n'
    )
    dataset = FERPlus(tmp_path, "valid")
    examples = list(dataset)
    assert len(examples) == 1 and examples[0].target == BASIC8.index("neutral")
    assert dataset.skipped.counts["unreadable image"] == 1  # fer0000004.png is missing
    assert sum(n for reason, n in dataset.skipped.counts.items() if reason.startswith("bad label row")) == 2
    with pytest.raises(ValueError, match=r"label\.csv:2"):
        FERPlus(tmp_path, "valid", on_error="raise").records()
