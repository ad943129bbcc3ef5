"""Loaded model versions of the local server: version discovery per policy, loading,
signature calls with TF Serving's input checks and status codes (see ``serving.server``)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
)

from serving import config as serving_config


LOG = logging.getLogger("serving.server")
DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_NUM_LOAD_RETRIES = 5  # TF Serving's --max_num_load_retries
DEFAULT_LOAD_RETRY_INTERVAL_MICROS = 60 * 1000 * 1000  # TF Serving's --load_retry_interval_micros
State = get_model_status_pb2.ModelVersionStatus.State
_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}
MAX_DIMS = 254  # TensorShape's kMaxDims
MAX_EXPANDED_ELEMENTS = 1 << 24  # see array_from_proto


class ServingError(Exception):
    """An error with the gRPC status code TF Serving would answer with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Loaded models


@dataclasses.dataclass
class Servable:
    """One loaded version of a model."""

    name: str
    version: int
    path: str
    loaded: object
    signature_defs: dict  # name -> tensorflow.core.protobuf.meta_graph_pb2.SignatureDef

    def signature(self, name: str):
        name = name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name not in self.loaded.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        return name, self.loaded.signatures[name]


def read_signature_defs(export_dir: str) -> dict:
    """``SignatureDef``s of the ``serve`` MetaGraphDef in ``saved_model.pb``."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags or len(saved_model.meta_graphs) == 1:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{export_dir} has no MetaGraphDef tagged 'serve'")


def load_servable(name: str, version: int, path: str) -> Servable:
    loaded = tf.saved_model.load(path, tags=["serve"])
    return Servable(name, version, path, loaded, read_signature_defs(path))


@dataclasses.dataclass
class _FailedLoad:
    """Failed load attempts of one version and when the next one is due."""

    attempts: int
    retry_at: float  # time.monotonic() of the next attempt
    code: grpc.StatusCode
    message: str


@dataclasses.dataclass
class _ModelState:
    entry: serving_config.ModelEntry
    servables: dict = dataclasses.field(default_factory=dict)  # version -> Servable
    states: dict = dataclasses.field(default_factory=dict)  # version -> (State, grpc code, message)
    failures: dict = dataclasses.field(default_factory=dict)  # version -> _FailedLoad
    warned: bool = False


def _load_error_status(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status a failed ``tf.saved_model.load`` reports in GetModelStatus (its first line)."""
    if isinstance(error, tf.errors.OpError):
        code, message = _CODE_BY_VALUE.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message
    elif isinstance(error, FileNotFoundError):
        code, message = grpc.StatusCode.NOT_FOUND, str(error)
    else:
        code, message = grpc.StatusCode.UNKNOWN, str(error)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return code, lines[0] if lines else type(error).__name__


class ModelManager:
    """Keeps the served versions of each model in sync with its base path.

    Failed loads are retried like TF Serving's ``LoaderHarness``: one attempt plus up to
    ``max_num_load_retries`` retries, ``load_retry_interval_micros`` apart, during which the version
    stays LOADING (an older version keeps serving). A version out of retries is END with the
    load error in GetModelStatus and, as in TF Serving, is not tried again while it stays on disk
    and wanted by the version policy; once it leaves (folder removed, policy changed) and comes
    back it starts over. Retries are due on the next ``poll`` after the interval, so nothing
    blocks the other models meanwhile.

    Args:
        entries: ``serving.config.ModelEntry`` list.
        max_num_load_retries: retries after the first failed load (0 = a single attempt).
        load_retry_interval_micros: wait between attempts (negative = no wait).
    """

    def __init__(self, entries, max_num_load_retries: int = DEFAULT_MAX_NUM_LOAD_RETRIES,
                 load_retry_interval_micros: int = DEFAULT_LOAD_RETRY_INTERVAL_MICROS):
        if max_num_load_retries < 0:
            raise ValueError(f"max_num_load_retries must be >= 0. Received: max_num_load_retries={max_num_load_retries}")
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._models: dict[str, _ModelState] = {}
        self.max_num_load_retries = int(max_num_load_retries)
        self.load_retry_interval_micros = int(load_retry_interval_micros)
        self.set_entries(entries)

    def set_entries(self, entries):
        with self._lock:
            models = {}
            for entry in entries:
                state = self._models.get(entry.name)
                if state is None or state.entry.base_path != entry.base_path:
                    state = _ModelState(entry)
                else:
                    state.entry = entry
                models[entry.name] = state
            self._models = models

    def model_names(self):
        with self._lock:
            return list(self._models)

    def available_versions(self) -> dict:
        """``{model: {versions AVAILABLE now}}`` (what TF Serving checks version labels against)."""
        with self._lock:
            return {name: set(state.servables) for name, state in self._models.items()}

    def version_labels(self) -> dict:
        """``{model: {label: version}}`` of the current config."""
        with self._lock:
            return {name: dict(state.entry.version_labels) for name, state in self._models.items()}

    def poll(self):
        """One pass: load wanted versions not loaded yet (or retry due ones), then unload the unwanted ones."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for state in models:
                self._sync(state)

    def _sync(self, state: _ModelState):
        entry = state.entry
        available = serving_config.list_versions(entry.base_path)
        wanted = serving_config.select_versions(available, entry.policy)
        if not available and not state.warned:
            LOG.warning("No versions of servable %s found under base path %s", entry.name, entry.base_path)
        state.warned = not available
        self._forget_failures(state, wanted)
        now = time.monotonic()
        for version in sorted(wanted, reverse=True):
            failure = state.failures.get(version)
            if version in state.servables or (failure and (failure.attempts > self.max_num_load_retries or now < failure.retry_at)):
                continue
            self._load(state, version)
        keep = set(wanted)
        if not keep & set(state.servables):
            # Availability preserving, like TF Serving: until a wanted version is AVAILABLE keep
            # serving the newest loaded version that is still on disk.
            keep |= set(sorted(v for v in state.servables if v in available)[-1:])
        with self._lock:
            for version in list(state.servables):
                if version not in keep:
                    del state.servables[version]
                    state.states[version] = (State.END, grpc.StatusCode.OK, "")
                    LOG.info("Unloaded servable version {name: %s version: %d}", entry.name, version)

    def _forget_failures(self, state: _ModelState, wanted):
        """Drop the failures of versions no longer wanted, so they start over if they come back;
        pending retries are cancelled (END with the last error, as TF Serving's cancelled retries)."""
        for version in [v for v in state.failures if v not in wanted]:
            failure = state.failures.pop(version)
            if failure.attempts <= self.max_num_load_retries:
                with self._lock:
                    state.states[version] = (State.END, failure.code, failure.message)

    def _load(self, state: _ModelState, version: int):
        name = state.entry.name
        failure = state.failures.get(version)
        if failure is None:
            with self._lock:
                state.states[version] = (State.LOADING, grpc.StatusCode.OK, "")
        else:
            LOG.info("Retrying load on servable version {name: %s version: %d} retry: %d", name, version, failure.attempts)
        try:
            servable = load_servable(name, version, os.path.join(state.entry.base_path, str(version)))
        except Exception as error:  # noqa: BLE001 - any load failure is reported through the status
            self._record_failure(state, version, error)
            return
        with self._lock:
            state.failures.pop(version, None)
            state.servables[version] = servable
            state.states[version] = (State.AVAILABLE, grpc.StatusCode.OK, "")
        LOG.info("Successfully loaded servable version {name: %s version: %d}", name, version)

    def _record_failure(self, state: _ModelState, version: int, error: Exception):
        name = state.entry.name
        previous = state.failures.get(version)
        attempts = (previous.attempts if previous else 0) + 1
        code, message = _load_error_status(error)
        retry_at = time.monotonic() + max(0, self.load_retry_interval_micros) / 1e6
        state.failures[version] = _FailedLoad(attempts, retry_at, code, message)
        total = self.max_num_load_retries + 1
        if attempts < total:
            LOG.error("Loading servable {name: %s version: %d} failed (attempt %d of %d, next in %g s): %s",
                      name, version, attempts, total, max(0, self.load_retry_interval_micros) / 1e6, error)
            return  # stays LOADING between attempts, as in TF Serving
        LOG.error("Loading servable {name: %s version: %d} failed %d times, giving up until the version folder is "
                  "added again: %s", name, version, attempts, error)
        with self._lock:
            state.states[version] = (State.END, code, message)

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        with self._lock:
            state = self._models.get(name)
            if state is None:
                if version is not None:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            if label:
                if label not in state.entry.version_labels:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Unrecognized servable version label: {label}")
                version = state.entry.version_labels[label]
            if version is not None:
                servable = state.servables.get(int(version))
                if servable is None:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
                return servable
            if not state.servables:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return state.servables[max(state.servables)]

    def status(self, name: str, version: int | None = None) -> list:
        """``[(version, State, code, message)]`` newest first."""
        with self._lock:
            state = self._models.get(name)
            if state is None:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
            rows = [(v, *s) for v, s in state.states.items()]
        if version is not None:
            rows = [row for row in rows if row[0] == int(version)]
            if not rows:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
        if not rows:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        return sorted(rows, key=lambda row: -row[0])


# --------------------------------------------------------------------------------------------
# Prediction core (shared by gRPC and REST)


def array_from_proto(name: str, proto) -> np.ndarray:
    """A request's ``TensorProto`` as numpy (``tf.make_ndarray``); INVALID_ARGUMENT if it is malformed.

    The shape is checked before anything is allocated: an unknown rank, a negative size or more
    than ``MAX_DIMS`` dimensions is refused, and a tensor that carries fewer values than its shape
    holds (TensorFlow repeats the last one) may fill at most ``MAX_EXPANDED_ELEMENTS`` elements
    (RESOURCE_EXHAUSTED beyond), so a few bytes cannot make the server allocate gigabytes.
    """
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or len(dims) > MAX_DIMS or any(size < 0 for size in dims):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {name}: invalid shape {dims} "
                                                             f"(unknown_rank={proto.tensor_shape.unknown_rank})")
    elements = math.prod(dims)
    carried = sum(len(values) for field, values in proto.ListFields() if field.is_repeated)
    if not proto.tensor_content and carried < elements and elements > MAX_EXPANDED_ELEMENTS:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"tensor parsing error: {name}: shape {dims} ({elements} elements) "
                                                               f"would be filled from {carried} values; at most {MAX_EXPANDED_ELEMENTS} elements")
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001 - TypeError, ValueError, MemoryError of a malformed proto
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {name}: {error}") from None


def check_inputs(signature_name: str, fn, inputs: dict) -> dict:
    """Validate named numpy inputs against the signature; INVALID_ARGUMENT like TF Serving."""
    _, specs = fn.structured_input_signature
    sent, wanted = set(inputs), set(specs)
    if sent != wanted:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{', '.join(sorted(sent))}}}) != "
            f"len({{{', '.join(sorted(wanted))}}}). Sent extra: {{{', '.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{', '.join(sorted(wanted - sent))}}}.",
        )
    tensors = {}
    for index, name in enumerate(sorted(specs)):
        spec, value = specs[name], inputs[name]
        try:
            dtype = tf.as_dtype(value.dtype) if value.dtype.kind not in "OSU" else tf.string
        except TypeError:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Input '{name}': unsupported dtype {value.dtype}") from None
        if dtype != spec.dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expects arg[{index}] ('{name}' of signature '{signature_name}') to be {spec.dtype.name} but {dtype.name} is provided",
            )
        if not spec.shape.is_compatible_with(value.shape):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input '{name}' of signature '{signature_name}' has shape {list(value.shape)}, expected {spec.shape}",
            )
        if spec.shape.rank and value.shape[0] == 0:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Empty batch: input '{name}' has 0 elements in dimension 0")
        try:
            tensors[name] = tf.constant(value, dtype=spec.dtype)
        except (TypeError, ValueError) as error:  # e.g. an object array holding something else than bytes
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Input '{name}': {error}") from None
    return tensors


def check_output_filter(outputs, output_filter) -> None:
    """INVALID_ARGUMENT, as TF Serving, for an ``output_filter`` name the signature does not output."""
    unknown = [name for name in output_filter if name not in outputs]
    if unknown:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"output tensor alias not found in signature: {unknown[0]}")


def _clean_tf_message(message: str) -> str:
    """The op's own message without the eager "Graph execution error / Detected at node" frame."""
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [
        line for line in lines
        if line and not line.startswith(("Graph execution error", "Detected at node", "<stack traces", "[[", "File \"", "Op:"))
    ]
    return " ".join(kept) or str(message).strip()


def run_signature(servable: Servable, signature_name: str, inputs: dict, output_filter=()) -> tuple[str, dict]:
    """Call a signature on numpy inputs; returns ``(signature_name, {output: np.ndarray})``."""
    signature_name, fn = servable.signature(signature_name)
    tensors = check_inputs(signature_name, fn, inputs)
    try:
        outputs = fn(**tensors)
    except tf.errors.OpError as error:
        code = _CODE_BY_VALUE.get(error.error_code, grpc.StatusCode.UNKNOWN)
        raise ServingError(code, _clean_tf_message(error.message)) from None
    except (TypeError, ValueError) as error:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
    if output_filter:
        check_output_filter(outputs, output_filter)
        outputs = {name: outputs[name] for name in output_filter}
    return signature_name, {name: value.numpy() for name, value in outputs.items()}
