"""Running a CLI in a subprocess as a user's shell would, and reading its own stderr lines."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# TensorFlow's C++ start-up log (absl's "I0000 ..." lines) reaches stderr whatever
# TF_CPP_MIN_LOG_LEVEL says; it is TensorFlow's, not the CLI's, and is left out.
TF_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog|To enable the following instructions)")


def cli_env() -> dict:
    """The environment with the repository importable and no colour forced on."""
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return env


def run_cli(*argv: str, cwd=ROOT, **kwargs) -> subprocess.CompletedProcess:
    """``python *argv`` with stdout and stderr captured (pipes: not a terminal) unless given."""
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=cli_env(), text=True, timeout=600, **kwargs)


def own_lines(stderr: str) -> list[str]:
    """stderr's non-empty lines without TensorFlow's C++ start-up log."""
    return [line for line in stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
