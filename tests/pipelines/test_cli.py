"""``pipelines.cli``: a user error is one ``error:`` line and exit status 2, a bug keeps its
traceback, and progress bars write no escape codes when stderr is not a terminal."""

from __future__ import annotations

import pytest

from tests.cli_output import own_lines, run_cli


def test_a_missing_model_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "no_such_model.keras"
    done = run_cli("-m", "fer_keras.evaluate", f"--model_path={missing}", "--data_dir=../shared/datasets/fer2013")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert own_lines(done.stderr) == [f"error: No model file at {missing}"]


def test_a_missing_data_set_folder_is_one_line_naming_it(tmp_path):
    done = run_cli("-m", "pipelines.preprocess", "--dataset=fer2013", f"--data_dir={tmp_path / 'nowhere'}", f"--output_dir={tmp_path / 'cache'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = own_lines(done.stderr)
    assert line.startswith("error: ") and str(tmp_path / "nowhere") in line


def test_a_bad_flag_value_is_one_line():
    done = run_cli("-m", "fer_keras.predict", "--batch_size=many", "photo.jpg")
    assert done.returncode == 2
    assert own_lines(done.stderr) == ["error: flag --batch_size=many: invalid literal for int() with base 10: 'many'"]


def test_a_bug_keeps_its_traceback_and_a_value_error_does_not():
    program = "from pipelines import cli\ndef main(argv):\n    raise {}('what went wrong')\ncli.run(main)\n"
    bug = run_cli("-c", program.format("TypeError"))
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "TypeError: what went wrong" in bug.stderr
    user = run_cli("-c", program.format("ValueError"))
    assert user.returncode == 2 and own_lines(user.stderr) == ["error: what went wrong"]


def test_progress_bar_is_one_plain_line_on_stderr_when_it_is_not_a_terminal():
    program = (
        "from pipelines import cli\n"
        "with cli.progress_bar() as bar:\n"
        "    task = bar.add_task('photos', total=12)\n"
        "    for _ in range(12):\n"
        "        bar.advance(task)\n"
        "print('summary')\n"
    )
    done = run_cli("-c", program)
    assert done.stdout == "summary\n"
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    (line,) = own_lines(done.stderr)
    assert line.startswith("photos ") and " 12/12 " in line


def test_option_values_are_parsed_including_number_tuples():
    from absl import app

    from pipelines.cli import parse_options

    parsed = parse_options(["a=1", "b=0.5", "c=true", "d=x", "widths=8:16:32", "box=0.1:0.2", "path=a:b", "e=1:x"])
    assert parsed == {"a": 1, "b": 0.5, "c": True, "d": "x", "widths": (8, 16, 32), "box": (0.1, 0.2), "path": "a:b", "e": "1:x"}
    with pytest.raises(app.UsageError, match="--objective_options entries are key=value. Received: 'nope'"):
        parse_options(["nope"], "--objective_options")


def test_tuple_model_options_reach_the_builder_from_the_command_line(tmp_path):
    """``--model_options=widths=4:4:4`` builds the baseline with those widths (a comma would split the flag)."""
    import json

    out = tmp_path / "run"
    result = run_cli("-m", "fer_keras.train", "--model=baseline", "--model_options=widths=4:4:4", "--epochs=1", "--limit=64", "--batch_size=32", "--verbose=0", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "run.json").read_text())["model_options"] == {"widths": [4, 4, 4]}
