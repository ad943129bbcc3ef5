"""A local, TF-Serving-compatible model server for development and tests.

Speaks the ``tensorflow.serving`` gRPC API of ``tensorflow_model_server`` (``PredictionService``:
``Predict``, ``GetModelMetadata``; ``ModelService``: ``GetModelStatus``,
``HandleReloadConfigRequest``; ``Classify``/``Regress``/``MultiInference`` answer UNIMPLEMENTED)
and a subset of its REST API, on the same model layout (``<base_path>/<version>/saved_model.pb``)
and ``models.config`` format::

    python -m serving.server --model_config_file=serving/models.config --port=8500 --rest_api_port=8501
    python -m serving.server --model_name=baseline --model_base_path=/tmp/export/baseline

Base paths are polled (``--file_system_poll_wait_seconds``, default 1 s like TF Serving): a new
version folder is loaded and, once AVAILABLE, older versions outside the version policy are
unloaded; deleted versions are unloaded. Status codes follow TF Serving:

* unknown model / version / version label: NOT_FOUND ("Servable not found for request: ...");
* unknown signature: FAILED_PRECONDITION ('Serving signature key "x" not found.'), as in
  TF Serving's ``predict_util.cc``;
* wrong/missing input names, wrong dtype, wrong shape, empty batch, undecodable image bytes:
  INVALID_ARGUMENT;
* request larger than ``--max_message_bytes``: RESOURCE_EXHAUSTED, produced by gRPC itself
  ("Received message larger than max"). TF Serving sets the limit to INT32_MAX by default
  (``builder.SetMaxMessageSize(kint32max)``) and returns the same gRPC status when a lower
  ``grpc.max_receive_message_length`` is set through ``--grpc_channel_arguments``; this server
  defaults to 4 MiB (gRPC's default) so oversized uploads fail fast in development.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import dataclasses
import http.server
import json
import logging
import os
import re
import signal
import threading

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import config as serving_config

LOG = logging.getLogger("serving.server")
DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
State = get_model_status_pb2.ModelVersionStatus.State
_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


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
class _ModelState:
    entry: serving_config.ModelEntry
    servables: dict = dataclasses.field(default_factory=dict)  # version -> Servable
    states: dict = dataclasses.field(default_factory=dict)  # version -> (State, grpc code, message)
    failures: dict = dataclasses.field(default_factory=dict)  # version -> load attempts
    warned: bool = False


class ModelManager:
    """Keeps the served versions of each model in sync with its base path."""

    def __init__(self, entries, max_load_attempts: int = 3):
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._models: dict[str, _ModelState] = {}
        self.max_load_attempts = max_load_attempts
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

    def poll(self):
        """One pass: load wanted versions not loaded yet, then unload the unwanted ones."""
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
        for version in sorted(wanted, reverse=True):
            if version in state.servables or state.failures.get(version, 0) >= self.max_load_attempts:
                continue
            path = os.path.join(entry.base_path, str(version))
            with self._lock:
                state.states[version] = (State.LOADING, grpc.StatusCode.OK, "")
            try:
                servable = load_servable(entry.name, version, path)
            except Exception as error:  # noqa: BLE001 - any load failure is reported through the status
                attempts = state.failures.get(version, 0) + 1
                state.failures[version] = attempts
                LOG.error("Loading servable %s version %d failed (attempt %d): %s", entry.name, version, attempts, error)
                with self._lock:
                    state.states[version] = (State.END, grpc.StatusCode.UNKNOWN, f"Loading failed: {error}")
                continue
            with self._lock:
                state.servables[version] = servable
                state.states[version] = (State.AVAILABLE, grpc.StatusCode.OK, "")
            LOG.info("Successfully loaded servable version {name: %s version: %d}", entry.name, version)
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
            for version in list(state.failures):
                if version not in available:
                    del state.failures[version]

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


def _check_inputs(signature_name: str, fn, inputs: dict) -> dict:
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
        dtype = tf.as_dtype(value.dtype) if value.dtype.kind not in "OSU" else tf.string
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
        tensors[name] = tf.constant(value, dtype=spec.dtype)
    return tensors


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
    tensors = _check_inputs(signature_name, fn, inputs)
    try:
        outputs = fn(**tensors)
    except tf.errors.OpError as error:
        code = _CODE_BY_VALUE.get(error.error_code, grpc.StatusCode.UNKNOWN)
        raise ServingError(code, _clean_tf_message(error.message)) from None
    except (TypeError, ValueError) as error:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
    if output_filter:
        unknown = [name for name in output_filter if name not in outputs]
        if unknown:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"output tensor alias not found in signature: {unknown[0]}")
        outputs = {name: outputs[name] for name in output_filter}
    return signature_name, {name: value.numpy() for name, value in outputs.items()}


def _requested_version(model_spec):
    version = model_spec.version.value if model_spec.HasField("version") else None
    return version, model_spec.version_label or None


# --------------------------------------------------------------------------------------------
# gRPC services


def _abort(context, error: ServingError):
    context.abort(error.code, error.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        try:
            version, label = _requested_version(request.model_spec)
            servable = self.manager.get(request.model_spec.name, version, label)
            inputs = {}
            for name, proto in request.inputs.items():
                try:
                    inputs[name] = tf.make_ndarray(proto)
                except Exception as error:  # noqa: BLE001 - malformed TensorProto
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {name}: {error}") from None
            signature_name, outputs = run_signature(servable, request.model_spec.signature_name, inputs, list(request.output_filter))
        except ServingError as error:
            _abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.metadata_field:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
            version, label = _requested_version(request.model_spec)
            servable = self.manager.get(request.model_spec.name, version, label)
        except ServingError as error:
            _abort(context, error)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in servable.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: "ModelServer"):
        self.server = server

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            version, _ = _requested_version(request.model_spec)
            rows = self.server.manager.status(request.model_spec.name, version)
        except ServingError as error:
            _abort(context, error)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state, code, message in rows:
            status = response.model_version_status.add(version=version, state=state)
            status.status.error_code = code.value[0]
            status.status.error_message = message
        return response

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.server.reload_config(request.config)
        except ValueError as error:
            response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.status.error_message = str(error)
        return response


# --------------------------------------------------------------------------------------------
# REST (subset of TF Serving's /v1 API)

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
}
_REST_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?(?P<rest>/metadata|:predict)?$")


def _from_json(value):
    """A JSON value with ``{"b64": ...}`` leaves -> nested lists with bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _to_json(value):
    if isinstance(value, np.ndarray):
        return [_to_json(item) for item in value] if value.ndim else _to_json(value.item())
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rest_inputs(body: dict, fn) -> dict:
    _, specs = fn.structured_input_signature
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a list")
        if instances and all(isinstance(i, dict) and not set(i) == {"b64"} for i in instances):
            columns = {name: [_from_json(i.get(name)) for i in instances] for name in {k for i in instances for k in i}}
        elif len(specs) == 1:
            columns = {next(iter(specs)): [_from_json(i) for i in instances]}
        else:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "instances must be objects keyed by input name for multi-input signatures")
    elif "inputs" in body:
        raw = body["inputs"]
        columns = {k: _from_json(v) for k, v in raw.items()} if isinstance(raw, dict) else {next(iter(specs)): _from_json(raw)}
    else:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
    arrays = {}
    for name, values in columns.items():
        spec = specs.get(name)
        if spec is not None and spec.dtype == tf.string:
            arrays[name] = np.array(values, dtype=object)
        elif spec is not None:
            try:
                arrays[name] = np.asarray(values, dtype=spec.dtype.as_numpy_dtype)
            except (TypeError, ValueError) as error:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': {error}") from None
        else:
            arrays[name] = np.asarray(values)
    return arrays


def _make_rest_handler(server: "ModelServer"):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; route to logging
            LOG.debug("REST %s", fmt % args)

        def _reply(self, status: int, payload: dict):
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, error: ServingError):
            self._reply(_HTTP_STATUS.get(error.code, 500), {"error": error.message})

        def _route(self):
            match = _REST_PATH.match(self.path.split("?", 1)[0])
            if not match:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.command} {self.path}")
            version = int(match["version"]) if match["version"] else None
            return match["name"], version, match["label"], match["rest"]

        def do_GET(self):  # noqa: N802
            try:
                name, version, label, rest = self._route()
                if rest == ":predict":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "predict needs POST")
                if rest == "/metadata":
                    servable = server.manager.get(name, version, label)
                    signature_map = get_model_metadata_pb2.SignatureDefMap()
                    for key, signature_def in servable.signature_defs.items():
                        signature_map.signature_def[key].CopyFrom(signature_def)
                    payload = {
                        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                        "metadata": {"signature_def": json_format.MessageToDict(signature_map)},
                    }
                else:
                    rows = server.manager.status(name, version)
                    payload = {
                        "model_version_status": [
                            {
                                "version": str(v),
                                "state": State.Name(state),
                                "status": {"error_code": code.name, "error_message": message},
                            }
                            for v, state, code, message in rows
                        ]
                    }
                self._reply(200, payload)
            except ServingError as error:
                self._error(error)

        def do_POST(self):  # noqa: N802
            try:
                name, version, label, rest = self._route()
                if rest != ":predict":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported POST {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length > server.max_message_bytes:
                    self.rfile.read(length)
                    raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Request body of {length} bytes is larger than max ({server.max_message_bytes})")
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as error:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {error}") from None
                servable = server.manager.get(name, version, label)
                signature_name, fn = servable.signature(body.get("signature_name", ""))
                _, outputs = run_signature(servable, signature_name, _rest_inputs(body, fn))
                if "instances" in body:
                    count = len(next(iter(outputs.values()))) if outputs else 0
                    if len(outputs) == 1:
                        predictions = _to_json(next(iter(outputs.values())))
                    else:
                        predictions = [{k: _to_json(v[i]) for k, v in outputs.items()} for i in range(count)]
                    self._reply(200, {"predictions": predictions})
                else:
                    self._reply(200, {"outputs": {k: _to_json(v) for k, v in outputs.items()}})
            except ServingError as error:
                self._error(error)

    return Handler


# --------------------------------------------------------------------------------------------
# Server


class ModelServer:
    """gRPC (+ optional REST) server with a polling ``ModelManager``.

    Args:
        entries: ``serving.config.ModelEntry`` list.
        port: gRPC port (0 picks a free one; see ``.port`` after ``start``).
        rest_api_port: REST port, None/omitted = no REST server (0 picks a free one).
        host: bind address (loopback by default; "0.0.0.0" to expose).
        poll_seconds: base path polling period (<= 0 disables polling).
        max_message_bytes: largest accepted request (gRPC RESOURCE_EXHAUSTED beyond).
        max_workers: gRPC handler threads.
    """

    def __init__(self, entries, port: int = 8500, rest_api_port: int | None = None, host: str = "127.0.0.1",
                 poll_seconds: float = 1.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_workers: int = 8):
        self.manager = ModelManager(entries)
        self.host = host
        self.port = port
        self.rest_api_port = rest_api_port
        self.poll_seconds = poll_seconds
        self.max_message_bytes = max_message_bytes
        self.max_workers = max_workers
        self._grpc = None
        self._http = None
        self._stop = threading.Event()
        self._threads = []

    @classmethod
    def from_config_file(cls, path, path_map=(), **kwargs):
        config = serving_config.read_model_server_config(path)
        entries = serving_config.model_entries(config, os.path.dirname(os.path.abspath(path)), path_map)
        return cls(entries, **kwargs)

    def reload_config(self, model_server_config):
        self.manager.set_entries(serving_config.model_entries(model_server_config))
        self.manager.poll()

    def start(self) -> "ModelServer":
        """Load the initial versions (like TF Serving, before opening ports), then serve."""
        self.manager.poll()
        options = [
            ("grpc.max_receive_message_length", int(self.max_message_bytes)),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.manager), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), self._grpc)
        bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"could not bind gRPC port {self.host}:{self.port}")
        self.port = bound
        self._grpc.start()
        LOG.info("Running gRPC ModelServer at %s:%d ...", self.host, self.port)
        if self.rest_api_port is not None:
            self._http = http.server.ThreadingHTTPServer((self.host, self.rest_api_port), _make_rest_handler(self))
            self._http.daemon_threads = True
            self.rest_api_port = self._http.server_address[1]
            thread = threading.Thread(target=self._http.serve_forever, name="rest", daemon=True)
            thread.start()
            self._threads.append(thread)
            LOG.info("Exporting HTTP/REST API at %s:%d ...", self.host, self.rest_api_port)
        if self.poll_seconds and self.poll_seconds > 0:
            thread = threading.Thread(target=self._poll_loop, name="fs-poll", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.manager.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever happens
                LOG.exception("polling the model base paths failed")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = 0.5):
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        for thread in self._threads:
            thread.join(timeout=5)

    def wait(self):
        self._grpc.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    parser.add_argument("--rest_api_port", type=int, default=None, help="REST port (omit for no REST API)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to expose)")
    parser.add_argument("--model_config_file", help="ModelServerConfig text proto (serving/models.config)")
    parser.add_argument("--model_name", help="single model name (instead of --model_config_file)")
    parser.add_argument("--model_base_path", help="single model base path (folder of numeric versions)")
    parser.add_argument("--base_path_map", action="append", default=[], metavar="FROM=TO",
                        help="rewrite base_path prefixes of the config, e.g. /models=/srv/models (repeatable)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0, help="version polling period; <=0 disables")
    parser.add_argument("--max_message_bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, help="largest gRPC request accepted")
    parser.add_argument("--grpc_max_threads", type=int, default=8)
    parser.add_argument("--port_file", help="write the bound gRPC port (and REST port) here once serving")
    return parser


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common = dict(port=args.port, rest_api_port=args.rest_api_port, host=args.host, poll_seconds=args.file_system_poll_wait_seconds,
                  max_message_bytes=args.max_message_bytes, max_workers=args.grpc_max_threads)
    path_map = serving_config.parse_path_map(args.base_path_map)
    if args.model_config_file:
        if args.model_name or args.model_base_path:
            raise SystemExit("use either --model_config_file or --model_name/--model_base_path")
        server = ModelServer.from_config_file(args.model_config_file, path_map, **common)
    elif args.model_name and args.model_base_path:
        config = serving_config.single_model_config(args.model_name, args.model_base_path)
        server = ModelServer(serving_config.model_entries(config, os.getcwd(), path_map), **common)
    else:
        raise SystemExit("need --model_config_file, or --model_name and --model_base_path")
    server.start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as handle:
            handle.write(f"{server.port} {server.rest_api_port or ''}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
