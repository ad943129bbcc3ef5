"""The subset of TF Serving's REST API the local server speaks (``/v1/models/<name>[:predict]``)."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import re
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
)

from serving.servables import ServingError, State, run_signature

if TYPE_CHECKING:
    from serving.server import ModelServer


LOG = logging.getLogger("serving.server")

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


def make_rest_handler(server: "ModelServer"):
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
