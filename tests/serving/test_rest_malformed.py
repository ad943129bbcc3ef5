"""Every malformed REST request gets a 4xx with TF Serving's ``{"error": ...}`` body and the
server keeps serving; metadata is in TF Serving's snake_case; the shipped models refuse images
that are too small or of a format they do not decode, saying what they accept."""

from __future__ import annotations

import base64
import http.client
import io
import json
import pathlib
import re
import socket

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from fer_keras.export.savedmodel import MIN_IMAGE_SIDE
from serving.server import ModelServer

SERVING = pathlib.Path(__file__).resolve().parents[2] / "serving"


def raw_http(port: int, data: bytes, method: str = "POST") -> tuple[int, dict, bytes]:
    """Send ``data`` as is on a new connection, then end the sending side; ``(status, headers, body)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def post(port: int, path: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_json_error(status: int, body: bytes, expected_status=None) -> str:
    assert 400 <= status < 500 if expected_status is None else status == expected_status, (status, body)
    payload = json.loads(body)
    assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"], payload
    return payload["error"]


def png_face(path, size=None) -> bytes:
    image = Image.open(path).convert("L")
    if size:
        image = image.resize(size[::-1])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def assert_serves(port: int, model: str, image: bytes):
    body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()
    status, answer = post(port, f"/v1/models/{model}:predict", body)
    assert status == 200, answer
    assert len(json.loads(answer)["predictions"]) == 1


# --------------------------------------------------------------------------------------------
# The cases of the issue, then more, against the tiny "fer" model of tests/serving/conftest.py

PREDICT = "/v1/models/fer:predict"
ISSUE_BODIES = ['[1,2]', '"x"', '{"instances": [1.5]}', '{"instances": [null]}']


@pytest.mark.parametrize("body", ISSUE_BODIES)
def test_issue_bodies_get_400_json_then_server_serves(server, face_files, body):
    status, answer = post(server.rest_api_port, PREDICT, body.encode(), {"Content-Type": "application/json"})
    assert_json_error(status, answer, 400)
    assert_serves(server.rest_api_port, "fer", face_files[0].read_bytes())


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_issue_bad_content_length_gets_400_json_then_server_serves(server, face_files, length):
    request = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
    status, headers, answer = raw_http(server.rest_api_port, request)
    assert "Content-Length" in assert_json_error(status, answer, 400)
    assert headers.get("Connection") == "close"  # the rest of that stream cannot be trusted
    assert_serves(server.rest_api_port, "fer", face_files[0].read_bytes())


B64_GARBAGE = {"b64": "!!not base64!!"}
MALFORMED_BODIES = {
    "empty body": (b"", "The document is empty"),
    "not json": (b"{instances: 1}", "JSON Parse error"),
    "invalid utf-8": (b'{"instances": ["\xff\xfe"]}', "JSON Parse error"),
    "nested too deep": (b"[" * 100_000 + b"]" * 100_000, "JSON Parse error"),
    "integer of 5000 digits": (b'{"instances": [' + b"9" * 5000 + b"]}", "JSON Parse error"),
    "null body": (b"null", "Is not object"),
    "number body": (b"3", "Is not object"),
    "no inputs": (b'{"signature_name": ""}', "Missing 'inputs' or 'instances' key"),
    "both keys": (b'{"instances": ["a"], "inputs": ["a"]}', "only one of 'inputs' or 'instances'"),
    "instances not a list": (b'{"instances": {"images": "a"}}', "'instances' to be an list/array"),
    "empty instances": (b'{"instances": []}', "No values in 'instances' array"),
    "signature_name not a string": (b'{"signature_name": ["x"], "instances": ["a"]}', "'signature_name' key must be a string"),
    "unknown signature": (b'{"signature_name": "nope", "instances": ["a"]}', 'Serving signature key "nope" not found.'),
    "bool for string": (b'{"instances": [true]}', "Type: True is not of expected type: string"),
    "object for string": (b'{"instances": [{"b64": "AAAA", "x": 1}]}', "keys must be equal to: images"),
    "bad base64": (json.dumps({"instances": [B64_GARBAGE]}).encode(), "Unable to base64 decode"),
    "b64 not a string": (b'{"instances": [{"b64": 5}]}', "keys must be equal to: images"),
    "mixed objects and values": (b'{"instances": [{"images": "a"}, "b"]}', "Expecting object but got list at item 1"),
    "ragged instances": (b'{"signature_name": "predict_images", "instances": [[[[1]]], [[[1, 2]]]]}', "unexpected size"),
    "value next to list": (b'{"signature_name": "predict_images", "instances": [[[[1]]], 7]}', "found at incorrect level"),
    "float for uint8": (b'{"signature_name": "predict_images", "inputs": [[[[1.5]]]]}', "is not of expected type: uint8"),
    "300 for uint8": (b'{"signature_name": "predict_images", "inputs": [[[[300]]]]}', "is not of expected type: uint8"),
    "string for uint8": (b'{"signature_name": "predict_images", "inputs": [[[["1"]]]]}', "is not of expected type: uint8"),
    "wrong shape": (b'{"signature_name": "predict_images", "inputs": [[[[1]]]]}', "has shape [1, 1, 1, 1], expected"),
    "scalar for a batch": (b'{"inputs": "abc"}', "has shape [], expected"),
    "empty batch": (b'{"inputs": []}', "Empty batch"),
    "missing named input": (b'{"inputs": {"pictures": ["a"]}}', "Missing named input: images"),
    "unknown instance key": (b'{"instances": [{"pictures": "a"}]}', "keys must be equal to: images"),
    "list too deep for rank": (b'{"signature_name": "metadata", "inputs": [[[0]]]}', "has shape [1, 1, 1], expected"),
    "not an image": (json.dumps({"instances": [{"b64": base64.b64encode(b"text").decode()}]}).encode(), "image"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
def test_malformed_bodies_get_400_json(server, case):
    body, message = MALFORMED_BODIES[case]
    status, answer = post(server.rest_api_port, PREDICT, body)
    assert message in assert_json_error(status, answer, 400)


def _request(line: str, body: bytes = b"", headers: str = "") -> bytes:
    return f"{line}\r\nHost: x\r\n{headers}\r\n".encode() + body


MALFORMED_HTTP = {
    "body shorter than Content-Length": (_request(f"POST {PREDICT} HTTP/1.1", b'{"ins', "Content-Length: 100\r\n"), 400),
    "two Content-Lengths": (_request(f"POST {PREDICT} HTTP/1.1", b"{}", "Content-Length: 2\r\nContent-Length: 3\r\n"), 400),
    "Content-Length with a sign": (_request(f"POST {PREDICT} HTTP/1.1", b"{}", "Content-Length: +2\r\n"), 400),
    "Content-Length of 40 digits": (_request(f"POST {PREDICT} HTTP/1.1", b"{}", f"Content-Length: {'9' * 40}\r\n"), 400),
    "body over the size limit": (_request(f"POST {PREDICT} HTTP/1.1", b"x" * 1_100_000, "Content-Length: 1100000\r\n"), 413),
    "chunked body": (_request(f"POST {PREDICT} HTTP/1.1", b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n"), 411),
    "PUT": (_request(f"PUT {PREDICT} HTTP/1.1", b"{}", "Content-Length: 2\r\n"), 400),
    "DELETE": (_request("DELETE /v1/models/fer HTTP/1.1"), 400),
    "bad request line": (b"this is not http\r\n\r\n", 400),
    "bad HTTP version": (_request(f"POST {PREDICT} HTTP/one"), 400),
    "GET predict": (_request(f"GET {PREDICT} HTTP/1.1"), 400),
    "POST status": (_request("POST /v1/models/fer HTTP/1.1", b"{}", "Content-Length: 2\r\n"), 400),
    "POST metadata": (_request("POST /v1/models/fer/metadata HTTP/1.1"), 400),
    "no model name": (_request("GET /v1/models HTTP/1.1"), 400),
    "path outside /v1": (_request("GET /index.html HTTP/1.1"), 404),
    "unknown model": (_request("GET /v1/models/nope/metadata HTTP/1.1"), 404),
    "unknown version": (_request("POST /v1/models/fer/versions/99999999999999999999:predict HTTP/1.1", b"{}", "Content-Length: 2\r\n"), 404),
    "unknown label": (_request("GET /v1/models/pinned/labels/canary HTTP/1.1"), 404),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_HTTP))
def test_malformed_http_gets_json_error_then_server_serves(server, face_files, case):
    request, expected = MALFORMED_HTTP[case]
    status, _, answer = raw_http(server.rest_api_port, request)
    assert_json_error(status, answer, expected)
    assert_serves(server.rest_api_port, "fer", face_files[0].read_bytes())


def test_keep_alive_connection_stays_in_step_after_errors(server, face_files):
    """A 400 for a bad body keeps the connection; the next request on it is answered normally."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    try:
        for body in [b"[1,2]", b'{"instances": [null]}']:
            connection.request("POST", PREDICT, body)
            response = connection.getresponse()
            assert_json_error(response.status, response.read(), 400)
        image = base64.b64encode(face_files[0].read_bytes()).decode()
        connection.request("POST", PREDICT, json.dumps({"instances": [{"b64": image}]}).encode())
        response = connection.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 1
    finally:
        connection.close()


def test_metadata_is_snake_case_like_tf_serving(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    connection.request("GET", "/v1/models/fer/metadata")
    response = connection.getresponse()
    assert response.status == 200
    payload = json.loads(response.read())
    connection.close()

    def keys(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from keys(item)
        elif isinstance(value, list):
            for item in value:
                yield from keys(item)

    camel = sorted({key for key in keys(payload) if re.search(r"[a-z][A-Z]", key)})
    assert not camel, camel
    assert payload["model_spec"] == {"name": "fer", "signature_name": "", "version": "1"}
    signatures = payload["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["images"]["dtype"] == "DT_STRING"
    assert default["inputs"]["images"]["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert set(default["outputs"]) == {"probabilities", "class_ids", "labels"}

    # The same SignatureDefMap as gRPC GetModelMetadata, printed with proto field names.
    with grpc.insecure_channel(server.target) as channel:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "fer"
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert payload["metadata"]["signature_def"] == json_format.MessageToDict(
        signature_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


# --------------------------------------------------------------------------------------------
# The shipped models (serving/models, served with serving/models.config)


@pytest.fixture(scope="module")
def shipped_server():
    with ModelServer.from_config_file(SERVING / "models.config", port=0, rest_api_port=0, poll_seconds=0) as instance:
        yield instance


@pytest.fixture(scope="module")
def shipped_predict(shipped_server):
    with grpc.insecure_channel(shipped_server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


SHIPPED = ["baseline", "mrcar", "vgg4", "vgg4_wide", "resface_ferplus"]


def _grpc_predict(stub, model: str, images: list):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array(images, dtype=object)))
    return stub.Predict(request, timeout=60)


def _encoded(face: pathlib.Path, size, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(face).convert("RGB").resize(size[::-1]).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_models_refuse_images_below_the_minimum_size(shipped_server, shipped_predict, faces_dir, model):
    face = faces_dir / "angry_man.png"
    port = shipped_server.rest_api_port
    for size in [(1, 1), (MIN_IMAGE_SIDE - 1, 64), (64, MIN_IMAGE_SIDE - 1)]:
        body = json.dumps({"instances": [{"b64": base64.b64encode(png_face(face, size)).decode()}]}).encode()
        status, answer = post(port, f"/v1/models/{model}:predict", body)
        message = assert_json_error(status, answer, 400)
        assert f"at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} px" in message and f"{size[0]}x{size[1]} px" in message
        with pytest.raises(grpc.RpcError) as error:
            _grpc_predict(shipped_predict, model, [png_face(face, size)])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"{size[0]}x{size[1]} px" in error.value.details()
    assert_serves(port, model, png_face(face, (MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)))


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_models_name_the_accepted_formats(shipped_server, shipped_predict, faces_dir, model):
    face = faces_dir / "angry_man.png"
    port = shipped_server.rest_api_port
    for image_format in ["PNG", "JPEG", "GIF", "BMP", "WEBP"]:
        assert_serves(port, model, _encoded(face, (64, 64), image_format))
    for rejected in [_encoded(face, (64, 64), "TIFF"), b"plain text, not an image"]:
        body = json.dumps({"instances": [{"b64": base64.b64encode(rejected).decode()}]}).encode()
        status, answer = post(port, f"/v1/models/{model}:predict", body)
        assert "JPEG, PNG, GIF, BMP or WebP" in assert_json_error(status, answer, 400)
        with pytest.raises(grpc.RpcError) as error:
            _grpc_predict(shipped_predict, model, [rejected])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "JPEG, PNG, GIF, BMP or WebP" in error.value.details()
