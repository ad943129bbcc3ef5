"""Fuzzing the request parsers of the local server (Hypothesis, a few hundred generated requests
per API, derandomized): every REST request gets an HTTP answer (200 or a 4xx with a JSON error),
every gRPC Predict a status TF Serving would give a client error, and the server still serves."""

from __future__ import annotations

import base64
import json
import math
import string

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.servables import MAX_EXPANDED_ELEMENTS, ServingError, array_from_proto
from tests.serving.test_rest_malformed import assert_json_error, assert_serves, raw_http

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.RESOURCE_EXHAUSTED}
PIXELS = np.full([1, 48, 48, 1], 128, np.uint8)

# --------------------------------------------------------------------------------------------
# REST: request line, headers and body generated; each on its own connection.

b64_values = st.binary(max_size=32).map(lambda data: {"b64": base64.b64encode(data).decode()})
json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12) | b64_values
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["images", "unused", "b64", "x"]), children, max_size=3),
    max_leaves=24,
)
signature_names = st.sampled_from(["", "serving_default", "predict_images", "metadata", "nope"])
VALID_BODIES = [{"signature_name": "predict_images", "instances": PIXELS.tolist()}, {"signature_name": "metadata", "inputs": {"unused": 0}}]
PREDICT_PATHS = ["/v1/models/fer:predict", "/v1/models/fer/versions/1:predict", "/v1/models/pinned/labels/stable:predict",
                 "/v1/models/nope:predict", "/v1/models/fer/versions/7:predict"]
GET_PATHS = ["/v1/models/fer", "/v1/models/fer/metadata", "/v1/models/pinned/labels/stable", "/v1/models/nope/metadata", "/v1/models"]


def sometimes(draw, one_in: int) -> bool:
    return draw(st.integers(0, one_in - 1)) == one_in // 2  # not a boundary: Hypothesis favours those


@st.composite
def predict_bodies(draw) -> bytes:
    """Mostly predict-shaped JSON objects, some other JSON values, valid bodies and raw bytes."""
    kind = draw(st.integers(0, 9))
    if kind < 6:
        body = {}
        if not sometimes(draw, 3):
            body["signature_name"] = draw(signature_names | json_scalars)
        for key in draw(st.lists(st.sampled_from(["instances", "inputs", "x"]), min_size=1, max_size=2, unique=True)):
            body[key] = draw(json_values)
        return json.dumps(body).encode()
    if kind < 8:
        return json.dumps(draw(json_values)).encode()
    if kind < 9:
        return json.dumps(draw(st.sampled_from(VALID_BODIES))).encode()
    return draw(st.binary(max_size=64))


@st.composite
def raw_requests(draw) -> tuple[str, bytes]:
    """``(method, request bytes)``: mostly POST predict with a right Content-Length, the rest
    GETs, other methods and paths, bad lengths and versions, odd headers."""
    kind = draw(st.integers(0, 9))
    if kind < 7:
        method, path = "POST", draw(st.sampled_from(PREDICT_PATHS))
    elif kind < 8:
        method, path = "GET", draw(st.sampled_from(GET_PATHS))
    else:
        method = draw(st.sampled_from(["HEAD", "PUT", "DELETE", "POST", "GET"]) | st.text(string.ascii_letters, min_size=1, max_size=8))
        path = draw(st.sampled_from(PREDICT_PATHS + GET_PATHS) | st.text(string.ascii_letters + string.digits + "/:%.?=-_", min_size=1, max_size=40))
    body = draw(predict_bodies()) if method == "POST" or sometimes(draw, 4) else b""
    headers = ["Host: fuzz", "Content-Type: application/json"]
    if not sometimes(draw, 8):
        headers.append(f"Content-Length: {len(body)}")
    elif not sometimes(draw, 3):
        headers.append(f"Content-Length: {draw(st.sampled_from(['abc', '-5', '', '1e3', '99999999']) | st.integers(0, 2 * len(body) + 2).map(str))}")
    if sometimes(draw, 10):
        headers.append(draw(st.sampled_from(["Transfer-Encoding: chunked", "Expect: 100-continue", "Content-Length: 7", "X: \x01"])))
    version = "HTTP/1.1" if not sometimes(draw, 10) else draw(st.sampled_from(["HTTP/1.0", "HTTP/1.x", "HTTP/2"]))
    head = f"{method} {path} {version}\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    return method, head.encode("latin-1") + body


def test_fuzzed_rest_requests_all_get_answers(server, face_files):
    @FUZZ
    @given(raw_requests())
    def check(request):
        method, data = request
        status, _, answer = raw_http(server.rest_api_port, data, method=method)
        if status == 200:
            json.loads(answer)
        elif method != "HEAD":
            assert_json_error(status, answer)
        else:
            assert 400 <= status < 500

    check()
    assert_serves(server.rest_api_port, "fer", face_files[0].read_bytes())


# --------------------------------------------------------------------------------------------
# gRPC: PredictRequests with generated model specs and TensorProtos (dtype, shape, values).

DTYPES = [types_pb2.DT_INVALID, types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT32, types_pb2.DT_UINT8,
          types_pb2.DT_INT64, types_pb2.DT_STRING, types_pb2.DT_BOOL, types_pb2.DT_HALF, types_pb2.DT_COMPLEX64,
          types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT, 9999]
VALUES = {
    "float_val": st.lists(st.floats(width=32), max_size=8),
    "double_val": st.lists(st.floats(), max_size=8),
    "int_val": st.lists(st.integers(-2**31, 2**31 - 1), max_size=8),
    "int64_val": st.lists(st.integers(-2**63, 2**63 - 1), max_size=8),
    "bool_val": st.lists(st.booleans(), max_size=8),
    "string_val": st.lists(st.binary(max_size=16), max_size=8),
    "half_val": st.lists(st.integers(0, 2**16 - 1), max_size=8),
    "tensor_content": st.binary(max_size=64),
}
sizes = st.integers(0, 8) | st.sampled_from([48, -1, 2**40, 2**62])


@st.composite
def tensor_protos(draw) -> tensor_pb2.TensorProto:
    if sometimes(draw, 6):  # a well-formed tensor now and then
        return tf.make_tensor_proto(draw(st.sampled_from([PIXELS, np.int32(0), np.array([b"\x89PNG\r\n\x1a\nnot really"], object)])))
    proto = tensor_pb2.TensorProto(dtype=draw(st.sampled_from(DTYPES)))
    for size in draw(st.lists(sizes, max_size=4)):
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = sometimes(draw, 10)
    field = draw(st.sampled_from(sorted(VALUES)))
    values = draw(VALUES[field])
    if field == "tensor_content":
        proto.tensor_content = values
    else:
        getattr(proto, field).extend(values)
    return proto


SIGNATURE_INPUTS = {"": "images", "serving_default": "images", "predict_images": "images", "metadata": "unused", "nope": "images"}


@st.composite
def predict_requests(draw) -> predict_pb2.PredictRequest:
    """Mostly requests for the "fer" model with the signature's own input name, so that the
    tensors reach the input checks; the rest with other models, versions, labels and names."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fer" if not sometimes(draw, 5) else draw(st.sampled_from(["pinned", "nope", ""]) | st.text(max_size=8))
    if sometimes(draw, 5):
        request.model_spec.version.value = draw(st.sampled_from([1, 2, 99, -1, 2**63 - 1]))
    elif sometimes(draw, 5):
        request.model_spec.version_label = draw(st.sampled_from(["stable", "canary", ""]))
    request.model_spec.signature_name = draw(st.sampled_from(sorted(SIGNATURE_INPUTS)))
    names = [SIGNATURE_INPUTS[request.model_spec.signature_name]]
    if sometimes(draw, 5):
        names = draw(st.lists(st.sampled_from(["images", "unused", "x"]), max_size=3, unique=True))
    for name in names:
        request.inputs[name].CopyFrom(draw(tensor_protos()))
    if sometimes(draw, 4):
        request.output_filter.extend(draw(st.lists(st.sampled_from(["probabilities", "labels", "class_names", "nope"]), max_size=2)))
    return request


@pytest.fixture(scope="module")
def predict_stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def fills_too_many_elements(request) -> bool:
    """A request for "fer" whose one tensor has a valid shape of more than MAX_EXPANDED_ELEMENTS
    elements and fewer values (TensorFlow would repeat the last one to fill it)."""
    if request.model_spec.name != "fer" or request.model_spec.WhichOneof("version_choice") or len(request.inputs) != 1:
        return False
    proto = next(iter(request.inputs.values()))
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or proto.tensor_content or any(size < 0 for size in dims):
        return False
    values = sum(len(getattr(proto, field)) for field in VALUES if field != "tensor_content")
    return values < math.prod(dims) and math.prod(dims) > MAX_EXPANDED_ELEMENTS


def test_fuzzed_grpc_predict_requests_all_get_client_statuses(predict_stub, face_files):
    @FUZZ
    @given(predict_requests())
    def check(request):
        try:
            predict_stub.Predict(request, timeout=30)
        except grpc.RpcError as error:
            assert error.code() in CLIENT_ERRORS, (error.code(), error.details())
            if fills_too_many_elements(request):
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
        else:
            assert not fills_too_many_elements(request)

    check()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fer"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array([face_files[0].read_bytes()], object)))
    assert tf.make_ndarray(predict_stub.Predict(request, timeout=30).outputs["probabilities"]).shape == (1, 7)


@pytest.mark.parametrize("dims, code", [
    ([-1], grpc.StatusCode.INVALID_ARGUMENT),
    ([1] * 255, grpc.StatusCode.INVALID_ARGUMENT),
    ([2**32, 2**32], grpc.StatusCode.RESOURCE_EXHAUSTED),  # would wrap to 0 in int64
    ([MAX_EXPANDED_ELEMENTS + 1], grpc.StatusCode.RESOURCE_EXHAUSTED),
])
def test_tensor_protos_that_would_allocate_too_much_or_nothing_sensible_are_refused(dims, code):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"one value, repeated by TensorFlow"])
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    with pytest.raises(ServingError) as error:
        array_from_proto("images", proto)
    assert error.value.code == code and "images" in error.value.message


def test_tensor_proto_filled_from_one_value_within_the_limit_still_works():
    proto = tf.make_tensor_proto(7, dtype=tf.uint8, shape=[2, 48, 48, 1])  # one int_val, TF repeats it
    assert len(proto.int_val) == 1
    np.testing.assert_array_equal(array_from_proto("images", proto), np.full([2, 48, 48, 1], 7, np.uint8))
