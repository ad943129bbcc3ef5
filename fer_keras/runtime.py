"""How a training process uses the CPU: threads and precision, set before TensorFlow runs an op.

TensorFlow runs a step's ops on ``inter_op`` threads at once and splits each op over
``intra_op`` threads. Which is faster depends on the graph (``benchmarks/RESULTS.md``,
"Threads"): on this project's 2-core CPU, a chain of convolutions (VGG, ResNet, LBAN)
trains fastest with each op split over both cores, while MrCAR, whose face, eye and mouth
regions are independent branches of small convolutions, trains 1.37x faster with one thread
per op and the branches side by side (327 vs 238 images/s, batch 32, bf16). A model declares
which it is (``ModelEntry.parallel_branches``); ``--threads`` says how many cores to use.
"""

from __future__ import annotations

import dataclasses
import os


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


def configure(threads: int | None, mixed_precision: bool, parallel_branches: bool = False) -> ThreadPlan:
    """Apply the thread plan and, if asked, the ``mixed_bfloat16`` policy; call before any op runs."""
    import keras
    import tensorflow as tf

    plan = thread_plan(threads, parallel_branches)
    tf.config.threading.set_intra_op_parallelism_threads(plan.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(plan.inter_op)
    if mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    return plan
