"""What every command-line tool shares: user errors in one line, progress bars on stderr.

It lives in ``pipelines``, the lowest package with a CLI, so ``python -m pipelines.preprocess``
and the ``fer_keras`` CLIs (train, evaluate, predict, calibrate, export, weights) use the
same one: ``pipelines`` never imports ``fer_keras``.

**Errors.** ``run(main)`` is ``absl.app.run(main)``, except that bad input ends the program
with one line ``error: <message>`` on stderr and exit status 2, instead of a traceback or
absl's page of usage text. Bad input is what :data:`USER_ERRORS` lists: a flag that does
not parse, ``app.UsageError``, ``ValueError`` (bad values, unknown model or data set names,
undecodable images: ``ImageDecodeError`` is one) and the ``OSError``\\ s of a bad path. Any
other exception is a bug and keeps its traceback.

**Progress.** ``progress_bar()`` is a ``rich.progress.Progress`` writing to stderr, so stdout
holds results only. On a terminal it is a live, coloured bar; when stderr is a file or a
pipe it writes no escape codes, only one plain line with the final count when the bar stops.
Whatever is printed after its ``with`` block starts on a line of its own.
"""

from __future__ import annotations

import functools
import sys

from absl import app, flags
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

USER_ERRORS = (app.UsageError, flags.Error, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
USER_ERROR_STATUS = 2


def fail(error) -> None:
    """Print ``error: <error>`` on stderr and exit with status 2."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(USER_ERROR_STATUS)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(error)


def run(main) -> None:
    """``absl.app.run(main)`` with every :data:`USER_ERRORS` exception as one ``error:`` line, status 2."""

    @functools.wraps(main)
    def checked(argv):
        try:
            return main(argv)
        except USER_ERRORS as error:
            fail(error)

    app.run(checked, flags_parser=_parse_flags)


def _parse_value(text: str):
    """An option value: int, float, true/false, a tuple of numbers written ``8:16:32``, else the string."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    if ":" in text:
        parts = [_parse_value(part) for part in text.split(":")]
        if all(isinstance(part, (int, float)) and not isinstance(part, bool) for part in parts):
            return tuple(parts)
    return text


def parse_options(items: list[str], flag: str = "--model_options") -> dict:
    """``["a=1", "b=x", "c=true", "widths=8:16:32"]`` -> ``{"a": 1, "b": "x", "c": True,
    "widths": (8, 16, 32)}``: the key=value lists of the CLIs' option flags (ints, floats,
    true/false and colon-separated number tuples parsed; commas separate the entries); a
    malformed entry is a usage error naming ``flag``."""
    options = {}
    for item in items:
        if "=" not in item:
            raise app.UsageError(f"{flag} entries are key=value. Received: {item!r}")
        key, value = item.split("=", 1)
        options[key.strip()] = _parse_value(value)
    return options


def progress_bar(enabled: bool = True) -> Progress:
    """A progress display on stderr (use as a context manager, ``add_task(name, total=n)``,
    ``advance``/``update``); nothing at all when ``enabled`` is false."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
