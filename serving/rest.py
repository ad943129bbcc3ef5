"""The subset of TF Serving's REST API the local server speaks: model status
(``GET /v1/models/<name>[/versions/<v>|/labels/<l>]``), metadata (``.../metadata``) and predict
(``POST ...:predict``; bodies parsed by ``serving.json_tensor``).

Every request gets an answer. Errors are TF Serving's ``{"error": "<message>"}`` with the HTTP
status TF Serving maps the gRPC code to (``http_server.cc``: INVALID_ARGUMENT and
FAILED_PRECONDITION 400, NOT_FOUND 404, ...). Requests that are malformed as HTTP are answered
too, with the same JSON body, and their connection is closed when the rest of the stream cannot
be trusted: a ``Content-Length`` that is not one non-negative integer (400), a body larger than
``--max_message_bytes`` (413), a body shorter than its ``Content-Length`` (400, or 408 after
``REQUEST_TIMEOUT_SECONDS`` without a byte), a chunked body (411: send a ``Content-Length``), a
method other than GET/POST (400 "Malformed request", as TF Serving), a bad request line or
headers (400, 414, 431 from ``http.server``).
"""

from __future__ import annotations

import http
import http.server
import json
import logging
import re
import socket
import time
import urllib.parse
from typing import TYPE_CHECKING

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from serving import json_tensor
from serving.servables import ServingError, State

if TYPE_CHECKING:
    from serving.server import ModelServer


LOG = logging.getLogger("serving.server")
REQUEST_TIMEOUT_SECONDS = 30.0
LINGER_SECONDS = 2.0
# A body over the size limit, or the rest of a request answered with an error, is read and
# dropped up to this size, so that the client, still sending, reads the answer instead of a
# connection reset; beyond it the connection is just closed.
_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
_HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_MODEL = r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
_PREDICT_PATH = re.compile(_MODEL + r":(?P<method>predict|classify|regress)$", re.IGNORECASE)
_GET_PATH = re.compile(_MODEL + r"(?P<metadata>/metadata)?$", re.IGNORECASE)
_JSON_PROTO = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class HttpError(Exception):
    """A request that is malformed as HTTP: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _model_path(pattern, path: str):
    """``(name, version, label, match)`` of a /v1/models path, or None (TF Serving's ``ParseModelInfo``)."""
    match = pattern.match(path)
    if not match:
        return None
    label = urllib.parse.unquote(match["label"]) if match["label"] else None
    version = int(match["version"]) if match["version"] else None
    return urllib.parse.unquote(match["name"]), version, label, match


def metadata_payload(servable, name: str) -> dict:
    """GetModelMetadataResponse as TF Serving's REST API writes it (``http_rest_api_util.cc``
    ``ToJsonString``: proto field names, so ``signature_def``/``tensor_shape``/``method_name``)."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
    model_spec = model_pb2.ModelSpec(name=name)
    model_spec.version.value = servable.version
    return {
        "model_spec": json_format.MessageToDict(model_spec, **_JSON_PROTO),
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, **_JSON_PROTO)},
    }


def status_payload(rows) -> dict:
    """GetModelStatusResponse as TF Serving's REST API writes it."""
    return {
        "model_version_status": [
            {"version": str(v), "state": State.Name(state), "status": {"error_code": code.name, "error_message": message}}
            for v, state, code, message in rows
        ]
    }


def make_rest_handler(server: "ModelServer"):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Answer requests without a valid version (http.server's default is HTTP/0.9, whose
        # replies have no status line) with a status line too.
        default_request_version = "HTTP/1.0"
        timeout = REQUEST_TIMEOUT_SECONDS

        def log_message(self, fmt, *args):  # quiet; route to logging
            LOG.debug("REST %s", fmt % args)

        def handle(self):
            try:
                super().handle()
            except ConnectionError as error:  # the client went away mid-request or mid-answer
                LOG.debug("REST client %s went away: %s", self.client_address, error)

        def finish(self):
            super().finish()
            if self.close_connection:
                self._linger()

        def _linger(self):
            """Send FIN, then read and drop what the client is still sending before the socket is
            closed: closing with unread data resets the connection, and the client may lose the
            answer (a "lingering close", as web servers do after an error)."""
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            try:
                self.connection.shutdown(socket.SHUT_WR)
                while time.monotonic() < deadline and drained < _DRAIN_LIMIT_BYTES:
                    self.connection.settimeout(max(deadline - time.monotonic(), 0.01))
                    chunk = self.connection.recv(1 << 16)
                    if not chunk:
                        break
                    drained += len(chunk)
            except OSError:  # timeout, reset: nothing more to save
                pass

        def _reply(self, status: int, payload: dict):
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(self, code, message=None, explain=None):
            """``http.server``'s own errors (bad request line or headers, unsupported method) as JSON."""
            if code == http.HTTPStatus.NOT_IMPLEMENTED:  # a method without do_<METHOD>
                code, message = 400, f"Malformed request: {self.command} {self.path}"
            self.close_connection = True
            self._reply(code, {"error": message or http.HTTPStatus(code).phrase})

        def _answer(self, respond):
            """Run ``respond() -> payload`` and reply; every failure becomes a JSON error."""
            try:
                self._reply(200, respond())
            except ServingError as error:
                self._reply(_HTTP_STATUS.get(error.code, 500), {"error": error.message})
            except HttpError as error:
                self.close_connection = True
                self._reply(error.status, {"error": error.message})
            except ConnectionError:
                raise
            except Exception as error:  # noqa: BLE001 - a bug must not leave the client without an answer
                LOG.exception("REST %s %s failed", self.command, self.path)
                self._reply(500, {"error": f"Internal error: {type(error).__name__}: {error}"})

        def _malformed(self) -> ServingError:
            return ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {self.command} {self.path}")

        def _path(self) -> str:
            path = self.path.split("?", 1)[0]
            if not path.lower().startswith("/v1/"):
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Not found: {self.command} {self.path} (the API is under /v1/models)")
            return path

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise HttpError(411, "Chunked request bodies are not supported: send the body with a Content-Length")
            lengths = {value.strip() for value in self.headers.get_all("Content-Length", [])}
            if not lengths:
                return b""
            text = lengths.pop()
            if lengths or not re.fullmatch(r"[0-9]{1,19}", text):
                raise HttpError(400, f"Invalid Content-Length: {self.headers.get('Content-Length')!r} (expected one non-negative integer)")
            length = int(text)
            try:
                if length > server.max_message_bytes:
                    remaining = length if length <= _DRAIN_LIMIT_BYTES else 0
                    while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 20))):
                        remaining -= len(chunk)
                    raise HttpError(413, f"Request body of {length} bytes is larger than max ({server.max_message_bytes})")
                body = self.rfile.read(length)
            except TimeoutError:
                raise HttpError(408, f"Request body not received within {self.timeout:g} s") from None
            if len(body) < length:
                raise HttpError(400, f"Request body ended after {len(body)} of its {length} bytes (Content-Length)")
            return body

        def do_GET(self):  # noqa: N802
            def respond():
                self._read_body()  # a GET may have one: read it to keep the connection in step
                path = self._path()
                if re.fullmatch(r"/v1/models/?", path, re.IGNORECASE):
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in request.")
                parsed = _model_path(_GET_PATH, path)
                if parsed is None:
                    raise self._malformed()
                name, version, label, match = parsed
                if match["metadata"]:
                    return metadata_payload(server.manager.get(name, version, label), name)
                if label is not None:
                    version = server.manager.get(name, None, label).version
                return status_payload(server.manager.status(name, version))

            self._answer(respond)

        def do_POST(self):  # noqa: N802
            def respond():
                body = self._read_body()
                parsed = _model_path(_PREDICT_PATH, self._path())
                if parsed is None:
                    raise self._malformed()
                name, version, label, match = parsed
                if match["method"].lower() != "predict":
                    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{match['method']} is not implemented by the local server: use predict")
                request = json_tensor.parse_body(body)
                servable = server.manager.get(name, version, label)
                signature_name, fn = servable.signature(request.get("signature_name", ""))
                inputs, row_format = json_tensor.predict_inputs(request, fn.structured_input_signature[1])
                _, outputs = server.run_signature(servable, signature_name, inputs)
                return json_tensor.predict_response(outputs, row_format)

            self._answer(respond)

    return Handler
