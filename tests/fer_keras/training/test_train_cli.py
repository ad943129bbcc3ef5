"""The training CLI end to end: demo run, real FER2013 learning, SIGKILL + resume, errors."""

import csv
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time


ROOT = pathlib.Path(__file__).resolve().parents[3]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def _train(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "fer_keras.train", "--verbose=0", *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_demo_run_trains_evaluates_and_saves(tmp_path):
    run = tmp_path / "demo"
    proc = _train("--epochs=2", f"--output_dir={run}", "--verbose=1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DEMO data set" in proc.stdout
    # Progress: on stderr, plain (no escape codes) when it is not a terminal; results on stdout.
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert "Epoch 2/2" in proc.stdout and "accuracy" in proc.stderr and "loss" not in proc.stdout.split("Epoch 1/2")[1].split("val_loss")[0]
    for name in ("best.keras", "final.keras", "history.csv", "history.png", "report.json", "confusion_counts.png", "confusion_normalized.png", "run.json"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert report["num_examples"] == 350 and len(report["confusion_matrix"]) == 7
    assert [int(r["epoch"]) for r in _history(run)] == [1, 2]


def test_real_fer2013_subset_loss_falls_and_accuracy_beats_chance(fer2013_dir, tmp_path):
    run = tmp_path / "fer"
    proc = _train("--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=4000", "--epochs=4", "--learning_rate=0.003", "--batch_size=64", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = _history(run)
    losses = [float(r["loss"]) for r in history]
    assert losses[-1] < losses[0] - 0.05, losses
    report = json.loads((run / "report.json").read_text())
    assert report["num_examples"] == 3589
    from fer_keras.saving import read_spec

    assert read_spec(str(run / "best.keras")).input_spec.framing == "fer2013_box"  # photos framed like FER2013
    # Chance is 1/7 = 0.143; always answering "happy" (the majority) scores 0.249 on val.
    assert report["accuracy"] > 0.27, report["accuracy"]
    assert report["mean_class_accuracy"] > 0.18, report["mean_class_accuracy"]


def _latest_checkpoint_number(directory):
    """Number N of the checkpoint ``ckpt-N`` the manager's state file names (0 if none yet)."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(directory))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_sigkill_then_resume_continues_from_the_checkpoint(fer2013_dir, tmp_path):
    run = tmp_path / "resume"
    args = ["--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=1280", "--epochs=3", "--batch_size=32", "--checkpoint_every=8", f"--output_dir={run}"]
    proc = subprocess.Popen([sys.executable, "-m", "fer_keras.train", "--verbose=0", *args], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    # Kill once the second checkpoint is committed (mid-run: 40 steps per epoch, one every 8).
    # Its files appear before the manager's state file names it, so poll the state file.
    while time.time() < deadline and _latest_checkpoint_number(run / "checkpoints") < 2:
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restarted = _train(*args, "--resume")
    assert restarted.returncode == 0, restarted.stderr[-4000:]
    line = [l for l in restarted.stdout.splitlines() if l.startswith("Resumed from")]
    assert line, restarted.stdout
    epoch, step = (int(x) for x in re.search(r"at epoch (\d+), step (\d+)", line[0]).groups())
    assert epoch * 40 + step >= 16  # not started over
    assert [int(r["epoch"]) for r in _history(run)] == [1, 2, 3]
    assert (run / "best.keras").is_file()


def test_existing_run_without_resume_and_unknown_model_are_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    proc = _train(f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "--resume" in proc.stderr
    proc = _train("--model=nope", f"--output_dir={tmp_path / 'x'}")
    assert proc.returncode != 0 and "Known models: baseline" in proc.stderr
    proc = _train("--dataset=fer2013", f"--output_dir={tmp_path / 'y'}")
    assert proc.returncode != 0 and "needs --data_dir" in proc.stderr
    proc = _train("--model_options=width=3", f"--output_dir={tmp_path / 'z'}")
    assert proc.returncode != 0 and "Unknown model option(s) ['width']" in proc.stderr and "widths" in proc.stderr
    proc = _train("--model=mrcar", "--objective_options=margin=0.2", f"--output_dir={tmp_path / 'w'}")
    assert proc.returncode != 0 and "Unknown objective option(s) ['margin']" in proc.stderr and "label_smoothing" in proc.stderr


def test_ferplus_soft_labels_and_jaffe_like_sets_train_from_the_cli(ferplus_dir, tmp_path):
    """FER+ with the vote distribution as target (validation on the majority vote), and a
    model saved by it carries the 8 FER+ classes."""
    run = tmp_path / "ferplus"
    proc = _train("--dataset=ferplus", f"--data_dir={ferplus_dir}", "--label_mode=crossentropy", "--limit=640", "--epochs=1", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "(distribution targets)" in proc.stdout
    from fer_keras.saving import read_spec

    spec = read_spec(str(run / "best.keras"))
    assert spec.class_names == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt") and spec.dataset == "ferplus"
    assert json.loads((run / "run.json").read_text())["label_mode"] == "crossentropy"


def test_teacher_by_name_is_trained_first_then_used_and_bad_teachers_are_refused(tmp_path):
    """ResFace Sec. 3.3 from the CLI: ``--teacher=baseline`` trains the label distribution
    generator with hard labels into ``teacher/``, then the student learns from its softmax."""
    run = tmp_path / "student"
    proc = _train("--model=resface", "--teacher=baseline", "--epochs=1", "--limit=256", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"Teacher: training baseline with hard labels into {run / 'teacher'}" in proc.stdout
    assert (run / "teacher" / "best.keras").is_file() and (run / "best.keras").is_file()
    assert json.loads((run / "run.json").read_text())["teacher"] == str(run / "teacher" / "best.keras")
    assert [int(r["epoch"]) for r in _history(run / "teacher")] == [1]

    refused = _train("--model=baseline", f"--teacher={run / 'teacher' / 'best.keras'}", "--epochs=1", f"--output_dir={tmp_path / 'b'}")
    assert refused.returncode != 0 and "takes no teacher" in refused.stderr
    missing = _train("--model=resface", f"--teacher={tmp_path / 'nope.keras'}", "--epochs=1", f"--output_dir={tmp_path / 'c'}")
    assert missing.returncode != 0 and "no such file" in missing.stderr


def test_init_weights_fine_tunes_a_shipped_model_and_resets_its_calibration(fer2013_dir, tmp_path):
    """--init_weights=<shipped name>: training starts from the trained network (its first epoch
    scores like it, far above the ~30% of a first epoch from scratch), the run records it, and
    the shipped temperature does not travel into the new model; bad starts are refused clearly."""
    from fer_keras import weights
    from fer_keras.saving import read_spec

    assert read_spec(weights.weights_path("baseline-fer2013")).temperature != 1.0
    run = tmp_path / "tuned"
    proc = _train("--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=256", "--epochs=1", "--learning_rate=0.0001", "--batch_size=64",
                  "--init_weights=baseline-fer2013", f"--output_dir={run}", "--noten_crop")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"Fine-tuning from {weights.weights_path('baseline-fer2013')}" in proc.stdout
    assert float(_history(run)[0]["val_accuracy"]) > 0.55
    assert json.loads((run / "run.json").read_text())["init_weights"] == weights.weights_path("baseline-fer2013")
    spec = read_spec(str(run / "best.keras"))
    assert spec.temperature == 1.0 and spec.temperature_weights == () and spec.dataset == "fer2013"

    wrong_model = _train("--model=mrcar", "--dataset=fer2013", f"--data_dir={fer2013_dir}", "--limit=64", "--init_weights=baseline-fer2013", f"--output_dir={tmp_path / 'x'}")
    assert wrong_model.returncode == 2 and "is a baseline; --model is mrcar" in wrong_model.stderr
    missing = _train("--init_weights=no-such-model", f"--output_dir={tmp_path / 'y'}")
    assert missing.returncode == 2 and "init_weights no-such-model: no such .keras file, nor a shipped model" in missing.stderr
