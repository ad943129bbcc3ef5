"""The local TF-Serving-compatible server: Predict, metadata, status, hot reload, error codes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.serving.conftest import CLASS_NAMES, install_version


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def _request(model="fer", signature=None, version=None, label=None, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(value if isinstance(value, type(request.inputs["x"])) else tf.make_tensor_proto(value))
    request.inputs.pop("x", None)
    return request


def _file_bytes(paths):
    return np.array([p.read_bytes() for p in paths], dtype=object)


def test_predict_real_images_matches_direct_call(stubs, face_files, tiny_models):
    predict, _ = stubs
    response = predict.Predict(_request(images=_file_bytes(face_files)), timeout=30)
    assert response.model_spec.name == "fer"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"probabilities", "class_ids", "labels"}
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    class_ids = tf.make_ndarray(response.outputs["class_ids"])
    labels = [label.decode() for label in tf.make_ndarray(response.outputs["labels"])]
    assert probabilities.shape == (len(face_files), len(CLASS_NAMES)) and probabilities.dtype == np.float32
    assert class_ids.dtype == np.int64

    direct = tf.saved_model.load(str(tiny_models["v1"])).signatures["serving_default"]
    expected = direct(images=tf.constant(_file_bytes(face_files).tolist()))
    np.testing.assert_allclose(probabilities, expected["probabilities"].numpy(), rtol=1e-5, atol=1e-6)
    assert class_ids.tolist() == expected["class_ids"].numpy().tolist()
    assert labels == [CLASS_NAMES[i] for i in class_ids]


def test_predict_images_signature_and_output_filter(stubs, face_files):
    predict, _ = stubs
    pixels = np.stack([tf.image.resize(tf.io.decode_image(p.read_bytes(), channels=1, expand_animations=False), [48, 48]).numpy()
                       for p in face_files[:2]]).astype(np.uint8)
    request = _request(signature="predict_images", images=pixels)
    request.output_filter.append("class_ids")
    response = predict.Predict(request, timeout=30)
    assert response.model_spec.signature_name == "predict_images"
    assert set(response.outputs) == {"class_ids"}
    assert tf.make_ndarray(response.outputs["class_ids"]).shape == (2,)


def test_version_policy_and_labels(stubs, face_files):
    predict, _ = stubs
    images = _file_bytes(face_files[:1])
    assert predict.Predict(_request("pinned", images=images), timeout=30).model_spec.version.value == 1
    assert predict.Predict(_request("pinned", label="stable", images=images), timeout=30).model_spec.version.value == 1
    with pytest.raises(grpc.RpcError) as error:  # on disk but outside the "specific {1}" policy
        predict.Predict(_request("pinned", version=2, images=images), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_metadata_lists_signatures(stubs):
    predict, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "fer"
    request.metadata_field.append("signature_def")
    response = predict.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    signatures = signature_map.signature_def
    assert {"serving_default", "predict_images", "metadata"} <= set(signatures)
    assert signatures["serving_default"].inputs["images"].dtype == tf.string.as_datatype_enum
    assert signatures["predict_images"].inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert set(signatures["serving_default"].outputs) == {"probabilities", "class_ids", "labels"}

    request.metadata_field[:] = ["nonsense"]
    with pytest.raises(grpc.RpcError) as error:
        predict.GetModelMetadata(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_status_available(stubs):
    _, model = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "fer"
    response = model.GetModelStatus(request, timeout=30)
    (status,) = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0


def _status(model_stub, name):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return {s.version: s.state for s in model_stub.GetModelStatus(request, timeout=30).model_version_status}


def test_new_version_is_served_without_restart(stubs, server, model_repo, tiny_models, face_files):
    predict, model = stubs
    images = _file_bytes(face_files[:2])
    before = tf.make_ndarray(predict.Predict(_request("reload", images=images), timeout=30).outputs["probabilities"])
    base = model_repo / "models" / "reload"
    (base / ".tmp-export-123").mkdir()  # an exporter's temp folder is ignored
    install_version(tiny_models["v2"], base, 2)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _status(model, "reload").get(2) != available:
        time.sleep(0.1)
    states = _status(model, "reload")
    assert states[2] == available
    assert states[1] == get_model_status_pb2.ModelVersionStatus.END  # latest{1}: the old one is unloaded
    response = predict.Predict(_request("reload", images=images), timeout=30)
    assert response.model_spec.version.value == 2
    after = tf.make_ndarray(response.outputs["probabilities"])
    assert not np.allclose(before, after)

    # A removed version is unloaded; the remaining one keeps serving.
    import shutil

    install_version(tiny_models["v1"], base, 3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _status(model, "reload").get(3) != available:
        time.sleep(0.1)
    shutil.rmtree(base / "3")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and predict.Predict(_request("reload", images=images), timeout=30).model_spec.version.value != 2:
        time.sleep(0.1)
    assert predict.Predict(_request("reload", images=images), timeout=30).model_spec.version.value == 2


BAD_REQUESTS = {
    "garbage_bytes": (lambda files: _request(images=np.array([b"definitely not an image"], dtype=object)), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong_dtype": (lambda files: _request(images=np.zeros([1, 48, 48, 1], np.float32)), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong_shape": (lambda files: _request(signature="predict_images", images=np.zeros([1, 32, 32, 1], np.uint8)),
                    grpc.StatusCode.INVALID_ARGUMENT),
    "scalar_string": (lambda files: _request(images=np.array(files[0].read_bytes(), dtype=object)), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong_input_name": (lambda files: _request(pictures=_file_bytes(files[:1])), grpc.StatusCode.INVALID_ARGUMENT),
    "no_inputs": (lambda files: _request(), grpc.StatusCode.INVALID_ARGUMENT),
    "empty_batch": (lambda files: _request(images=tf.make_tensor_proto([], dtype=tf.string, shape=[0])), grpc.StatusCode.INVALID_ARGUMENT),
    "oversized": (lambda files: _request(images=np.array([b"\x89PNG" + b"0" * (2 * 1024 * 1024)], dtype=object)),
                  grpc.StatusCode.RESOURCE_EXHAUSTED),
    "unknown_model": (lambda files: _request("nope", images=_file_bytes(files[:1])), grpc.StatusCode.NOT_FOUND),
    "unknown_version": (lambda files: _request(version=99, images=_file_bytes(files[:1])), grpc.StatusCode.NOT_FOUND),
    "unknown_label": (lambda files: _request("pinned", label="canary", images=_file_bytes(files[:1])), grpc.StatusCode.NOT_FOUND),
    "unknown_signature": (lambda files: _request(signature="nope", images=_file_bytes(files[:1])), grpc.StatusCode.FAILED_PRECONDITION),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_status_then_server_still_serves(stubs, face_files, case):
    predict, _ = stubs
    build, code = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        predict.Predict(build(face_files), timeout=30)
    assert error.value.code() == code, error.value.details()
    assert error.value.details()
    good = predict.Predict(_request(images=_file_bytes(face_files[:1])), timeout=30)
    assert tf.make_ndarray(good.outputs["probabilities"]).shape == (1, len(CLASS_NAMES))


def test_classify_is_unimplemented(stubs):
    from tensorflow_serving.apis import classification_pb2

    predict, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "fer"
    with pytest.raises(grpc.RpcError) as error:
        predict.Classify(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_rest_predict_status_and_errors(server, face_files):
    import base64

    base = f"http://127.0.0.1:{server.rest_api_port}/v1/models/fer"
    body = {"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in face_files[:2]]}
    request = urllib.request.Request(base + ":predict", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        predictions = json.loads(answer.read())["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {"probabilities", "class_ids", "labels"}
    assert predictions[0]["labels"] == CLASS_NAMES[predictions[0]["class_ids"]]
    with urllib.request.urlopen(base, timeout=30) as answer:
        status = json.loads(answer.read())["model_version_status"]
    assert status == [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    bad = urllib.request.Request(base + ":predict", json.dumps({"instances": [{"b64": "AAAA"}]}).encode())
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(bad, timeout=30)
    assert error.value.code == 400 and "error" in json.loads(error.value.read())
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://127.0.0.1:{server.rest_api_port}/v1/models/nope", timeout=30)
    assert error.value.code == 404


def test_cli_subprocess_serves_config_and_stops_cleanly(model_repo, tmp_path, face_files):
    """``python -m serving.server --model_config_file=...`` as users run it (free port via --port=0)."""
    import os
    import pathlib
    import signal
    import subprocess
    import sys

    port_file = tmp_path / "port"
    root = pathlib.Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "serving.server", f"--model_config_file={model_repo / 'models.config'}",
               f"--base_path_map=/models={model_repo / 'models'}", "--allow_version_labels_for_unavailable_models=true",
               "--port=0", "--rest_api_port=0", f"--port_file={port_file}"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_file.exists(), process.stdout.read().decode()[-2000:] if process.poll() is not None else "no port file"
        grpc_port, rest_port = (int(p) for p in port_file.read_text().split())
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(_request(images=_file_bytes(face_files[:1])), timeout=60)
            assert response.model_spec.version.value == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/pinned", timeout=30) as answer:
            assert json.loads(answer.read())["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output[-2000:]
    assert "Running gRPC ModelServer" in output


def test_handle_reload_config_request(model_repo):
    from tensorflow_serving.apis import model_management_pb2

    from serving import config as serving_config
    from serving.server import ModelServer

    first = serving_config.single_model_config("fer", str(model_repo / "models" / "fer"))
    with ModelServer(serving_config.model_entries(first), port=0, poll_seconds=0) as local:
        with grpc.insecure_channel(local.target) as channel:
            model = model_service_pb2_grpc.ModelServiceStub(channel)
            request = model_management_pb2.ReloadConfigRequest()
            request.config.CopyFrom(serving_config.single_model_config("renamed", str(model_repo / "models" / "fer")))
            assert model.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
            assert _status(model, "renamed") == {1: get_model_status_pb2.ModelVersionStatus.AVAILABLE}
            with pytest.raises(grpc.RpcError) as error:
                _status(model, "fer")
            assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_tensorflow_thread_flags_set_tensorflow_threading():
    """``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism`` (TF Serving's
    flags) reach TensorFlow; 0 leaves its defaults."""
    import subprocess
    import sys

    code = (
        "import tensorflow as tf; from serving.server import build_arg_parser, set_tensorflow_threads; "
        "set_tensorflow_threads(build_arg_parser().parse_args(['--tensorflow_intra_op_parallelism=1', '--tensorflow_inter_op_parallelism=2'])); "
        "print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads())"
    )
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["1", "2"]
