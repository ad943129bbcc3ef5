"""classification_report against hand-computed values."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fer_keras.metrics import classification_report, confusion_matrix, format_report

NAMES = ("a", "b", "c")
# true: a a a a b b b c c c ; pred: a a b c b b a c c a
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 0]
# Confusion [true][pred]:
#   a: [2, 1, 1]   support 4
#   b: [1, 2, 0]   support 3
#   c: [1, 0, 2]   support 3
# predicted counts: a 4, b 3, c 3; correct 6 of 10.


def test_three_class_hand_computed():
    report = classification_report(Y_TRUE, Y_PRED, NAMES)
    assert report["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [1, 0, 2]]
    assert report["num_examples"] == 10
    assert report["accuracy"] == pytest.approx(0.6)
    recall = {"a": 2 / 4, "b": 2 / 3, "c": 2 / 3}
    precision = {"a": 2 / 4, "b": 2 / 3, "c": 2 / 3}
    for name in NAMES:
        row = report["per_class"][name]
        assert row["sensitivity"] == pytest.approx(recall[name])
        assert row["precision"] == pytest.approx(precision[name])
        p, r = precision[name], recall[name]
        assert row["f1"] == pytest.approx(2 * p * r / (p + r))
    assert report["per_class"]["a"]["support"] == 4
    assert report["per_class"]["b"]["predicted"] == 3
    # Ave = (1/2 + 2/3 + 2/3) / 3 = 11/18
    assert report["mean_class_accuracy"] == pytest.approx(11 / 18)
    assert report["macro_f1"] == pytest.approx(11 / 18)
    assert report["confusion_matrix_normalized"][0] == pytest.approx([0.5, 0.25, 0.25])
    assert report["confusion_matrix_normalized"][1] == pytest.approx([1 / 3, 2 / 3, 0.0])


def test_asymmetric_precision_recall():
    # true: a a b b ; pred: a a a b -> a: P=2/3 R=1, b: P=1 R=1/2
    report = classification_report([0, 0, 1, 1], [0, 0, 0, 1], ("a", "b"))
    a, b = report["per_class"]["a"], report["per_class"]["b"]
    assert (a["precision"], a["sensitivity"]) == pytest.approx((2 / 3, 1.0))
    assert (b["precision"], b["sensitivity"]) == pytest.approx((1.0, 0.5))
    assert a["f1"] == pytest.approx(0.8)  # 2*(2/3)*1/(5/3)
    assert b["f1"] == pytest.approx(2 / 3)  # 2*1*0.5/1.5
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["mean_class_accuracy"] == pytest.approx(0.75)


def test_zero_support_and_never_predicted_classes_give_zero_without_warnings():
    # Class c never occurs in y_true; class b is never predicted.
    y_true = [0, 0, 1, 1]
    y_pred = [0, 2, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report(y_true, y_pred, NAMES)
    c, b = report["per_class"]["c"], report["per_class"]["b"]
    assert c["support"] == 0 and c["sensitivity"] == 0.0 and c["precision"] == 0.0 and c["f1"] == 0.0
    assert c["predicted"] == 1
    assert b["precision"] == 0.0 and b["sensitivity"] == 0.0 and b["f1"] == 0.0
    assert report["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0]
    # a: R = 1/2, P = 1/3; Ave over present classes a, b = (1/2 + 0) / 2.
    assert report["mean_class_accuracy"] == pytest.approx(0.25)
    assert report["accuracy"] == pytest.approx(0.25)
    flat = json.dumps(report)
    assert "NaN" not in flat


def test_probability_input_matches_ids():
    probs = np.eye(3)[Y_PRED] * 0.6 + 0.1  # argmax = Y_PRED
    from_probs = classification_report(np.array(Y_TRUE), probs.astype(np.float32), NAMES)
    from_ids = classification_report(Y_TRUE, Y_PRED, NAMES)
    assert from_probs == from_ids
    json.dumps(from_probs)  # plain types only
    assert type(from_probs["accuracy"]) is float
    assert type(from_probs["confusion_matrix"][0][0]) is int


def test_distribution_targets_use_argmax():
    y_true = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    report = classification_report(y_true, [0, 1], NAMES)
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_confusion_matrix_helper():
    assert confusion_matrix([1, 1], [1, 0], 2).tolist() == [[0, 0], [1, 1]]


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        ([0, 1], [0]),  # length mismatch
        ([0, 3], [0, 1]),  # id out of range
        ([0, 1], np.ones((2, 4))),  # wrong number of columns
        ([0, 1], [0.5, 1.0]),  # non-integer 1-D floats
        ([], []),  # no examples
    ],
)
def test_invalid_inputs(y_true, y_pred):
    with pytest.raises(ValueError):
        classification_report(y_true, y_pred, NAMES)


def test_format_report_mentions_every_class():
    text = format_report(classification_report(Y_TRUE, Y_PRED, NAMES))
    assert all(name in text for name in NAMES)
    assert "0.6000" in text and "0.6111" in text
