"""``python -m fer_keras.compare_runs``: runs' history columns side by side (table and PNG), clear errors."""

from __future__ import annotations

import csv

import pytest

from fer_keras.compare_runs import markdown_table, parse_runs, read_metric
from fer_keras.training.loop import HISTORY_FIELDS
from tests.cli_output import run_cli


def _history(run_dir, accuracies):
    run_dir.mkdir()
    with open(run_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for epoch, accuracy in enumerate(accuracies, 1):
            writer.writerow({key: 0.0 for key in HISTORY_FIELDS} | {"epoch": epoch, "val_accuracy": accuracy, "val_loss": 1.0 / epoch})
    return run_dir


def test_table_has_a_row_per_epoch_blanks_for_shorter_runs_and_each_best(tmp_path):
    a = _history(tmp_path / "a", [0.5, 0.7, 0.6])
    b = _history(tmp_path / "b", [0.55, 0.65])
    curves = {"votes": read_metric(str(a), "val_accuracy"), "majority": read_metric(str(b), "val_accuracy")}
    assert curves == {"votes": [0.5, 0.7, 0.6], "majority": [0.55, 0.65]}
    lines = markdown_table(curves, "val_accuracy").splitlines()
    assert lines[0] == "| epoch | votes | majority |"
    assert lines[2:5] == ["| 1 | 0.5000 | 0.5500 |", "| 2 | 0.7000 | 0.6500 |", "| 3 | 0.6000 |  |"]
    assert lines[5] == "| best | **0.7000** (epoch 2) | **0.6500** (epoch 2) |"
    # Losses: the best is the lowest.
    assert markdown_table({"a": read_metric(str(a), "val_loss")}, "val_loss").splitlines()[-1] == "| best | **0.3333** (epoch 3) |"


def test_bad_runs_are_errors_naming_the_entry_or_file(tmp_path):
    with pytest.raises(ValueError, match="'votes': expected label=run_dir"):
        parse_runs(["votes"])
    with pytest.raises(ValueError, match="label 'a' given twice"):
        parse_runs(["a=x", "a=y"])
    with pytest.raises(FileNotFoundError, match="history.csv: no such file"):
        read_metric(str(tmp_path), "val_accuracy")


def test_cli_writes_png_and_table(tmp_path):
    a, b = _history(tmp_path / "a", [0.5, 0.7]), _history(tmp_path / "b", [0.4, 0.6])
    out = tmp_path / "cmp" / "votes_vs_majority.png"
    result = run_cli("-m", "fer_keras.compare_runs", f"--runs=votes={a},majority={b}", f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cmp" / "votes_vs_majority.md").read_text().startswith("| epoch | votes | majority |")
    assert "| best | **0.7000** (epoch 1)" not in result.stdout and "| best | **0.7000** (epoch 2)" in result.stdout
    bad = run_cli("-m", "fer_keras.compare_runs", f"--runs=votes={tmp_path}", f"--output={out}")
    assert bad.returncode != 0 and "history.csv: no such file" in bad.stderr
