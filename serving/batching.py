"""Server-side batching of Predict requests, with TF Serving's ``BatchingParameters``.

``--enable_batching --batching_parameters_file=serving/batching.config`` make the local server
(``serving.server``) queue concurrent Predict requests (gRPC and REST) for the same servable,
signature and input shapes/dtypes, merge them along dimension 0 and run them as one call, as
TF Serving's ``BatchingSession`` over a ``SharedBatchScheduler`` does:

* ``max_batch_size``: the largest merged batch (TF Serving's default 1000);
* ``batch_timeout_micros``: how long the oldest request of a batch that is not full waits for more
  before the batch is run anyway (default 0: run what is there as soon as a thread is free);
* ``num_batch_threads``: the threads that run batches (default: the number of CPUs), shared by all
  models; while they are all busy, requests keep filling the open batch;
* ``max_enqueued_batches``: the queue bound per servable and signature, in batches (default 10);
  a request that would need one more batch fails at once with UNAVAILABLE ("The batch scheduling
  queue to which this task was submitted is full"), as in TF Serving;
* ``allowed_batch_sizes``: a merged batch is padded up to the next allowed size with copies of
  its first row (as TF Serving pads) and the padding rows are dropped from the outputs.

Differences from TF Serving, on purpose:

* a request larger than ``max_batch_size`` is split into chunks of at most ``max_batch_size``
  rows that are queued (and may be merged) separately, and its outputs are concatenated back
  (TF Serving's ``enable_large_batch_splitting``; without it TF Serving refuses such a request
  with INVALID_ARGUMENT "Task size N is larger than maximum input batch size M"). The whole
  request is admitted or refused (UNAVAILABLE) at once;
* each request is validated (inputs, dtypes, shapes, output filter) before it is queued, and when
  a merged batch fails, its requests are run again one by one, so a bad request (e.g. bytes that
  are not an image) fails alone with its own status while the others of its batch succeed;
* a signature with an input that has no batch dimension (a scalar, or a fixed dimension 0) is run
  unbatched; ``pad_variable_length_inputs`` and ``thread_pool_name`` are accepted and not used:
  requests whose inputs differ in a non-batch dimension are simply batched apart.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import os
import threading
import time

import grpc
import numpy as np

from serving import config as serving_config
from serving.servables import Servable, ServingError, check_inputs, check_output_filter, run_signature

LOG = logging.getLogger("serving.server")
# TF Serving's defaults for fields left out (SharedBatchScheduler / BasicBatchScheduler options).
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10
DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"  # server.cc's name without a parameters file
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """The ``BatchingParameters`` the scheduler honours, with TF Serving's defaults filled in."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple = ()
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME

    @classmethod
    def from_parameters(cls, params, path=None) -> BatchingOptions:
        """From a ``BatchingParameters`` message; ``ConfigError`` naming ``path`` and the field."""
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
            if params.HasField(name):
                values[name] = int(getattr(params, name).value)
        if params.HasField("thread_pool_name") and params.thread_pool_name.value:
            values["thread_pool_name"] = params.thread_pool_name.value
        values["allowed_batch_sizes"] = tuple(int(size) for size in params.allowed_batch_sizes)
        options = cls(**values)
        options.validate(path)
        return options

    def validate(self, path=None):
        """Refuse what TF Serving refuses (``ConfigError`` with the file, the field and its message)."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) <= 0:
                raise serving_config.ConfigError("INVALID_ARGUMENT", f"{name} must be positive, got {getattr(self, name)}", path, name)
        if self.batch_timeout_micros < 0:
            raise serving_config.ConfigError("INVALID_ARGUMENT", f"batch_timeout_micros must be non-negative, got "
                                             f"{self.batch_timeout_micros}", path, "batch_timeout_micros")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes[0] <= 0 or any(b <= a for a, b in itertools.pairwise(sizes))):
            raise serving_config.ConfigError("INVALID_ARGUMENT", "allowed_batch_sizes entries must be monotonically increasing "
                                             f"(and positive), got {sizes}", path, "allowed_batch_sizes")
        if sizes and sizes[-1] != self.max_batch_size:
            # batching_session.cc's message; max_batch_size defaults to 1000 when left out.
            raise serving_config.ConfigError("INVALID_ARGUMENT", "Last entry in allowed_batch_sizes must match max_batch_size; "
                                             f"last entry was {sizes[-1]}; expected {self.max_batch_size}", path,
                                             "allowed_batch_sizes")

    def padded_size(self, size: int) -> int:
        """The smallest allowed batch size >= ``size`` (``size`` itself without allowed sizes)."""
        return next((allowed for allowed in self.allowed_batch_sizes if allowed >= size), size)


def load_batching_options(path) -> BatchingOptions:
    """Read ``--batching_parameters_file``: TF Serving's ``BatchingParameters`` text proto."""
    params = serving_config.parse_batching_parameters(serving_config.read_text(path), path)
    return BatchingOptions.from_parameters(params, path)


# --------------------------------------------------------------------------------------------
# Scheduler


@dataclasses.dataclass(eq=False)
class _Task:
    """Rows of one request (or one chunk of a large request) waiting in a queue."""

    servable: Servable
    signature_name: str
    inputs: dict  # name -> np.ndarray, all with ``size`` rows
    size: int
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


@dataclasses.dataclass(eq=False)
class _Batch:
    tasks: list
    size: int
    started: float  # time.monotonic() of its first task


class BatchScheduler:
    """Merges concurrent Predict requests into batches run on ``num_batch_threads`` threads.

    ``run_signature(servable, signature_name, inputs, output_filter)`` has the contract of
    ``serving.servables.run_signature`` (numpy inputs in, ``(signature_name, {output: array})``
    out, ``ServingError`` with TF Serving's status code on failure) and blocks until the request's
    rows have been run. One queue per servable, signature and input shapes/dtypes (TF Serving has
    one per servable and signature); the threads take the queues' ready batches in turn.

    Args:
        options: a ``BatchingOptions``.
    """

    def __init__(self, options: BatchingOptions):
        self.options = options
        self._cond = threading.Condition()
        self._queues: dict = {}  # key -> deque of _Batch, in round-robin order (served key moves last)
        self._closed = False
        self.stats = collections.Counter()  # "batches", "rows", "padding", "tasks", "refused", "retried"
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}_{index}", daemon=True)
            for index in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # -- request side --------------------------------------------------------------------------

    def run_signature(self, servable: Servable, signature_name: str, inputs: dict, output_filter=()) -> tuple[str, dict]:
        """Queue ``inputs`` (numpy, by input name), wait for its batch; outputs of its own rows."""
        signature_name, fn = servable.signature(signature_name)
        check_inputs(signature_name, fn, inputs)  # a bad request fails here, alone
        if output_filter:
            check_output_filter(fn.structured_outputs, output_filter)
        if not _batchable(fn):
            return run_signature(servable, signature_name, inputs, output_filter)
        sizes = {len(value) for value in inputs.values()}
        if len(sizes) != 1:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Batching: all inputs of a request must have the same size in "
                               f"dimension 0, got {sorted(sizes)}")
        size = sizes.pop()
        step = self.options.max_batch_size
        tasks = [
            _Task(servable, signature_name, {name: value[start:start + step] for name, value in inputs.items()}, min(step, size - start))
            for start in range(0, size, step)
        ]
        self._enqueue(_queue_key(servable, signature_name, inputs), tasks)
        parts = [task.future.result() for task in tasks]
        names = output_filter or list(parts[0])
        if len(parts) == 1:
            return signature_name, {name: parts[0][name] for name in names}
        return signature_name, {name: np.concatenate([part[name] for part in parts]) for name in names}

    def _enqueue(self, key, tasks):
        """Add all ``tasks`` to the open batch / new batches of ``key``'s queue, or refuse them all."""
        limit = self.options.max_batch_size
        with self._cond:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; batching is stopped")
            batches = self._queues.get(key) or collections.deque()
            count, open_size = len(batches), batches[-1].size if batches else limit
            for task in tasks:
                count, open_size = (count, open_size + task.size) if open_size + task.size <= limit else (count + 1, task.size)
            if count > self.options.max_enqueued_batches:
                self.stats["refused"] += len(tasks)
                raise ServingError(grpc.StatusCode.UNAVAILABLE, QUEUE_FULL)
            now = time.monotonic()
            for task in tasks:
                if batches and batches[-1].size + task.size <= limit:
                    batches[-1].tasks.append(task)
                    batches[-1].size += task.size
                else:
                    batches.append(_Batch([task], task.size, now))
            self._queues[key] = batches
            self._cond.notify(len(tasks))

    def num_enqueued_tasks(self) -> int:
        """Tasks queued and not yet taken by a batch thread (TF Serving's ``NumEnqueuedTasks``)."""
        with self._cond:
            return sum(len(batch.tasks) for batches in self._queues.values() for batch in batches)

    # -- batch threads -------------------------------------------------------------------------

    def _next_batch(self):
        """The next batch to run (queues in turn), waiting for one to be full or timed out; None once stopped."""
        timeout = self.options.batch_timeout_micros / 1e6
        with self._cond:
            while not self._closed:
                now, wait = time.monotonic(), None
                for key, batches in self._queues.items():
                    head = batches[0]
                    if len(batches) > 1 or head.size >= self.options.max_batch_size or now >= head.started + timeout:
                        batches.popleft()
                        del self._queues[key]
                        if batches:
                            self._queues[key] = batches  # re-inserted last: round robin between queues
                        if self._queues:
                            self._cond.notify()  # another idle thread may take what is left
                        return head
                    remaining = head.started + timeout - now
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)
            return None

    def _work(self):
        while (batch := self._next_batch()) is not None:
            try:
                self._run_batch(batch.tasks)
            except Exception as error:  # noqa: BLE001 - no request may be left waiting
                LOG.exception("batch of %d rows failed", batch.size)
                for task in batch.tasks:
                    if not task.future.done():
                        task.future.set_exception(ServingError(grpc.StatusCode.INTERNAL, f"batching: {error}"))

    def _run_batch(self, tasks):
        """Run ``tasks`` merged; if that fails, each alone, so each gets its own result or error."""
        try:
            outputs = self._run_merged(tasks)
        except ServingError as error:
            if len(tasks) == 1:
                tasks[0].future.set_exception(error)
                return
            with self._cond:
                self.stats["retried"] += len(tasks)
            for task in tasks:
                try:
                    task.future.set_result(run_signature(task.servable, task.signature_name, task.inputs)[1])
                except ServingError as task_error:
                    task.future.set_exception(task_error)
            return
        for task, result in zip(tasks, outputs):
            task.future.set_result(result)

    def _run_merged(self, tasks) -> list:
        """One signature call on the tasks' rows (padded to an allowed size); per-task outputs."""
        size = sum(task.size for task in tasks)
        padded = self.options.padded_size(size)
        merged = {}
        for name, first in tasks[0].inputs.items():
            parts = [task.inputs[name] for task in tasks]
            if padded > size:  # TF Serving pads with the first row of the first task
                parts.append(np.repeat(first[:1], padded - size, axis=0))
            merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        _, outputs = run_signature(tasks[0].servable, tasks[0].signature_name, merged)
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != padded:
                raise ServingError(grpc.StatusCode.INTERNAL, f"Batched output tensor '{name}' of shape {list(value.shape)} is not "
                                   f"split along dimension 0 into the {padded} rows of its batch")
        with self._cond:
            self.stats.update(batches=1, rows=size, padding=padded - size, tasks=len(tasks))
        results, start = [], 0
        for task in tasks:
            results.append({name: value[start:start + task.size] for name, value in outputs.items()})
            start += task.size
        return results

    def stop(self):
        """Refuse new requests, fail the queued ones with UNAVAILABLE, and end the threads."""
        with self._cond:
            self._closed = True
            pending = [task for batches in self._queues.values() for batch in batches for task in batch.tasks]
            self._queues.clear()
            self._cond.notify_all()
        for task in pending:
            task.future.set_exception(ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; batching is stopped"))
        for thread in self._threads:
            thread.join(timeout=30)
        if self.stats["batches"]:
            LOG.info("Batching: %(batches)d batches, %(tasks)d tasks, %(rows)d rows (+%(padding)d padding rows), "
                     "%(refused)d refused, %(retried)d re-run alone", self.stats)


def _batchable(fn) -> bool:
    """Whether every input of the signature has a free batch dimension 0."""
    _, specs = fn.structured_input_signature
    return all(spec.shape.rank and spec.shape[0] is None for spec in specs.values())


def _queue_key(servable: Servable, signature_name: str, inputs: dict) -> tuple:
    """Requests with the same key can be merged: same servable, signature, dtypes and row shapes."""
    rows = tuple(sorted((name, value.dtype.str, value.shape[1:]) for name, value in inputs.items()))
    return id(servable), signature_name, rows
