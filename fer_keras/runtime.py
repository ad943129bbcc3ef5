"""How a training process uses the CPU: threads and precision, set before TensorFlow runs an op.

TensorFlow runs a step's ops on ``inter_op`` threads at once and splits each op over
``intra_op`` threads. Which is faster depends on the graph (``benchmarks/RESULTS.md``,
"Threads"): on this project's 2-core CPU, a chain of convolutions (VGG, ResNet, LBAN)
trains fastest with each op split over both cores, while MrCAR, whose face, eye and mouth
regions are independent branches of small convolutions, trains 1.37x faster with one thread
per op and the branches side by side (327 vs 238 images/s, batch 32, bf16). A model declares
which it is (``ModelEntry.parallel_branches``); ``--threads`` says how many cores to use.

Precision: ``mixed_bfloat16`` is fast only where the CPU computes in bfloat16 natively
(x86 AVX512_BF16 or AMX-BF16, Arm BF16): MrCAR trains 1.3x faster than float32 there. On an
AVX2-only AMD EPYC a bfloat16 convolution runs at the float32 rate (138 vs 128 GFLOP/s,
``benchmarks/bench_conv.py``) but the whole MrCAR training step ~6.6x *slower* than float32
(batch 32: 8 vs 53 images/s, ``benchmarks/RESULTS.md``), so ``configure`` refuses it with an
error saying why rather than let a run crawl.
"""

from __future__ import annotations

import dataclasses
import os
import platform


THREADS_HELP = "CPU cores to use (default: all). Branchy models (MrCAR) run ops side by side, one thread each; others split each op over the cores."


@dataclasses.dataclass(frozen=True)
class ThreadPlan:
    """Thread-pool sizes for one process.

    Args:
        intra_op: int. Threads one op (a convolution) is split over.
        inter_op: int. Ops run at the same time.
    """

    intra_op: int
    inter_op: int

    def describe(self) -> str:
        style = "branches side by side, one thread per op" if self.intra_op == 1 and self.inter_op > 1 else "each op split over the cores"
        return f"{self.inter_op} ops at once x {self.intra_op} thread(s) per op ({style})"


def thread_plan(threads: int | None, parallel_branches: bool) -> ThreadPlan:
    """The plan for ``threads`` cores (None: all of this machine's).

    Raises:
        ValueError: if ``threads`` is not a positive number.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1 (cores to use). Received: {threads}")
    cores = threads or os.cpu_count() or 1
    return ThreadPlan(intra_op=1 if parallel_branches else cores, inter_op=cores)


# CPU feature flags (as Linux names them in /proc/cpuinfo) that mean bfloat16 arithmetic in hardware.
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def _cpuinfo_values(keys: tuple[str, ...], cpuinfo: str) -> list[str] | None:
    """The values of ``cpuinfo``'s ``key : value`` lines whose key is one of ``keys`` (one per
    core), or None where there is no such file (macOS, Windows)."""
    try:
        with open(cpuinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    return [value.strip() for key, _, value in (line.partition(":") for line in lines) if key.strip() in keys]


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags (the ``flags`` lines on x86, ``Features`` on Arm), or None
    where the system does not say."""
    flags = frozenset(flag for value in _cpuinfo_values(("flags", "Features"), cpuinfo) or () for flag in value.split())
    return flags or None


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (x86 ``model name``), else ``platform.processor()``, else ``"unknown"``:
    what the benchmarks print beside their figures."""
    values = _cpuinfo_values(("model name",), cpuinfo)
    return (values[0] if values else "") or platform.processor() or "unknown"


def check_bfloat16(flags: frozenset[str] | None) -> None:
    """Raise ``ValueError`` if ``flags`` (``cpu_flags()``) show a CPU without bfloat16 arithmetic;
    unknown flags (None) pass."""
    if flags is not None and not flags & NATIVE_BFLOAT16_FLAGS:
        raise ValueError(
            f"--mixed_precision: this CPU ({platform.machine()}) has no bfloat16 arithmetic (none of "
            f"{', '.join(sorted(NATIVE_BFLOAT16_FLAGS))} in /proc/cpuinfo): training in mixed bfloat16 would run "
            "~6.6x slower than float32 (MrCAR: 8 vs 53 images/s on an AVX2 CPU). Train in float32: drop --mixed_precision."
        )


def configure(threads: int | None, mixed_precision: bool, parallel_branches: bool = False, cpu_features: frozenset[str] | None = None) -> ThreadPlan:
    """Apply the thread plan and, if asked, the ``mixed_bfloat16`` policy; call before any op runs.

    Raises:
        ValueError: ``mixed_precision`` on a CPU without bfloat16 arithmetic (``check_bfloat16``
            of ``cpu_features``, by default this machine's ``cpu_flags()``).
    """
    import keras
    import tensorflow as tf

    if mixed_precision:
        check_bfloat16(cpu_flags() if cpu_features is None else cpu_features)
    plan = thread_plan(threads, parallel_branches)
    tf.config.threading.set_intra_op_parallelism_threads(plan.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(plan.inter_op)
    if mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    return plan
