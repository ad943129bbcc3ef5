"""Shared measuring helpers of the benchmarks (see ../shared/docs/MEASURING.md)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def repeated(measure: Callable[[], float], repeats: int) -> tuple[float, float, float]:
    """Run ``measure`` once to warm up (tracing, autotuning, allocations), then ``repeats``
    times; return the median, min and max of what it returned."""
    measure()
    values = [measure() for _ in range(repeats)]
    return statistics.median(values), min(values), max(values)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """Median, min and max seconds of ``fn()`` after a warm-up call."""

    def seconds():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return repeated(seconds, repeats)
