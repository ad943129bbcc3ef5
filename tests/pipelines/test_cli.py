"""``pipelines.cli``: a user error is one ``error:`` line and exit status 2, a bug keeps its
traceback, and progress bars write no escape codes when stderr is not a terminal."""

from __future__ import annotations

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
