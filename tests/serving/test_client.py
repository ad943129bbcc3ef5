"""serving.client: results, readable errors, retries on UNAVAILABLE only, deadlines, CLI, REST."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import client as client_module
from serving import config as serving_config
from serving.client import FerClient, FerServingError, predict_rest
from serving.server import ModelServer
from tests.serving.conftest import CLASS_NAMES, free_port


@pytest.fixture(scope="module")
def fer_client(server):
    with FerClient(server.target, timeout=30.0, retries=2) as instance:
        yield instance


def test_predict_paths_and_bytes_match_direct_call(fer_client, face_files, tiny_models):
    rows = fer_client.predict(face_files, model="fer")
    assert len(rows) == len(face_files)
    direct = tf.saved_model.load(str(tiny_models["v1"])).signatures["serving_default"]
    expected = direct(images=tf.constant([p.read_bytes() for p in face_files]))
    for row, probs, class_id in zip(rows, expected["probabilities"].numpy(), expected["class_ids"].numpy()):
        assert set(row) == {"label", "class_id", "probabilities"}
        np.testing.assert_allclose(row["probabilities"], probs, rtol=1e-5, atol=1e-6)
        assert row["class_id"] == class_id and row["label"] == CLASS_NAMES[class_id]
    single = fer_client.predict([face_files[0].read_bytes()], model="fer", version=1)[0]
    assert single["class_id"] == rows[0]["class_id"]
    np.testing.assert_allclose(single["probabilities"], rows[0]["probabilities"], rtol=1e-4, atol=1e-6)


def test_predict_images_signature_with_array(fer_client):
    rows = fer_client.predict(np.full([3, 48, 48, 1], 128, np.uint8), model="fer", signature="predict_images")
    assert len(rows) == 3 and rows[0]["label"] in CLASS_NAMES


def test_metadata_and_status(fer_client):
    metadata = fer_client.metadata("fer")
    assert metadata["model"] == "fer" and metadata["version"] == 1
    assert {"serving_default", "predict_images"} <= set(metadata["signatures"])
    assert metadata["signatures"]["serving_default"]["inputs"]["images"] == {"dtype": "string", "shape": [-1]}
    assert metadata["signatures"]["predict_images"]["outputs"]["probabilities"]["dtype"] == "float32"
    assert fer_client.status("fer") == [{"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]


@pytest.mark.parametrize(
    "kwargs, code, message",
    [
        ({"images": [b"not an image"], "model": "fer"}, "INVALID_ARGUMENT", "Unknown image file format"),
        ({"images": [b"x"], "model": "missing"}, "NOT_FOUND", "Servable not found for request: Latest(missing)"),
        ({"images": [b"x"], "model": "fer", "version": 42}, "NOT_FOUND", "Servable not found for request: Specific(fer, 42)"),
        ({"images": [b"x"], "model": "fer", "signature": "nope"}, "FAILED_PRECONDITION", 'Serving signature key "nope" not found.'),
    ],
)
def test_errors_are_readable_and_not_retried(server, kwargs, code, message):
    with FerClient(server.target, timeout=30.0, retries=3) as fer_client:
        with pytest.raises(FerServingError) as error:
            fer_client.predict(**kwargs)
    assert error.value.code_name == code and error.value.attempts == 1
    assert str(error.value).startswith(f"{code}: ") and message in error.value.message
    assert "Detected at node" not in error.value.message


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def test_retries_unavailable_from_a_flaky_stub(server, face_files):
    with FerClient(server.target, timeout=30.0, retries=3, backoff=0.01) as fer_client:
        real, calls = fer_client.prediction_stub.Predict, []

        def flaky(request, timeout=None):
            calls.append(timeout)
            if len(calls) <= 2:
                raise _FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
            return real(request, timeout=timeout)

        fer_client.prediction_stub = type("Stub", (), {"Predict": staticmethod(flaky)})()
        rows = fer_client.predict(face_files[:1], model="fer")
    assert len(rows) == 1 and len(calls) == 3 and calls == [30.0] * 3


def test_retries_until_the_server_comes_up(model_repo, face_files):
    port = free_port()
    entries = serving_config.model_entries(
        serving_config.read_model_server_config(model_repo / "models.config"),
        model_repo,
        serving_config.parse_path_map([f"/models={model_repo / 'models'}"]),
    )
    late = ModelServer(entries[:1], port=port, poll_seconds=0)
    timer = threading.Timer(1.0, late.start)
    timer.start()
    try:
        with FerClient(f"127.0.0.1:{port}", timeout=10.0, retries=8, backoff=0.2, max_backoff=1.0) as fer_client:
            started = time.monotonic()
            rows = fer_client.predict(face_files[:1], model="fer")
            assert rows[0]["label"] in CLASS_NAMES
            assert time.monotonic() - started >= 0.5  # it did wait for the server
    finally:
        timer.join()
        late.stop()


def test_unavailable_after_retries_is_readable():
    with FerClient(f"127.0.0.1:{free_port()}", timeout=2.0, retries=2, backoff=0.05) as fer_client:
        with pytest.raises(FerServingError) as error:
            fer_client.status("fer")
    assert error.value.code_name == "UNAVAILABLE" and error.value.attempts == 3
    assert "unavailable after 3 attempt(s)" in str(error.value)


class _SlowService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # noqa: N802
        time.sleep(2.0)
        raise RuntimeError("too late")


def test_deadline_exceeded_is_surfaced_and_not_retried():
    slow = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_SlowService(), slow)
    port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    try:
        with FerClient(f"127.0.0.1:{port}", timeout=0.3, retries=3) as fer_client:
            started = time.monotonic()
            with pytest.raises(FerServingError) as error:
                fer_client.predict([b"x"], model="fer")
            elapsed = time.monotonic() - started
    finally:
        slow.stop(0)
    assert error.value.code_name == "DEADLINE_EXCEEDED" and error.value.attempts == 1
    assert "within 0.3 s" in str(error.value)
    assert elapsed < 1.5


def test_cli_json_table_and_error(server, face_files, capsys):
    paths = [str(p) for p in face_files[:2]]
    assert client_module.main(["--server", server.target, "--model", "fer", "--json", *paths]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["image"] for row in rows] == paths and rows[0]["label"] in CLASS_NAMES
    assert client_module.main(["--server", server.target, "--model", "fer", *paths]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["image", "label"] and len(table) == 3
    assert client_module.main(["--server", server.target, "--model", "nope", *paths]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert client_module.main(["--server", server.target, "--model", "fer", "--status"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "AVAILABLE"


def test_predict_rest_matches_grpc(server, fer_client, face_files):
    url = f"http://127.0.0.1:{server.rest_api_port}"
    rest_rows = predict_rest(url, face_files, model="fer")
    grpc_rows = fer_client.predict(face_files, model="fer")
    assert [r["class_id"] for r in rest_rows] == [r["class_id"] for r in grpc_rows]
    np.testing.assert_allclose([r["probabilities"] for r in rest_rows], [r["probabilities"] for r in grpc_rows], rtol=1e-5)
    with pytest.raises(FerServingError) as error:
        predict_rest(url, [b"garbage"], model="fer")
    assert error.value.code_name == "HTTP_400"


# --------------------------------------------------------------------------------------------
# End to end: train the registered baseline briefly, export_model, serve, classify over gRPC.

E2E_VAL = 20


@pytest.fixture(scope="module")
def e2e_export(tiny_baseline, fer_val_subset, tmp_path_factory):
    from fer_keras.export.savedmodel import export_model

    model, spec = tiny_baseline
    val = fer_val_subset
    root = tmp_path_factory.mktemp("e2e_exports")
    version_dir = export_model(model, str(root), "baseline")
    return model, spec, val, root, version_dir


def test_end_to_end_export_serve_classify(e2e_export):
    from fer_keras.inference import predict_scores
    from tests.serving.conftest import png_bytes

    model, spec, val, root, version_dir = e2e_export
    assert version_dir.endswith("/baseline/1")
    config = serving_config.single_model_config("baseline", str(root / "baseline"))
    with ModelServer(serving_config.model_entries(config), port=0, poll_seconds=0.5) as served:
        with FerClient(served.target, timeout=60.0) as fer_client:
            assert fer_client.status("baseline")[0] == {"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
            metadata = fer_client.metadata("baseline")
            assert {"serving_default", "predict_images", "metadata"} <= set(metadata["signatures"])
            rows = fer_client.predict([png_bytes(image) for image in val.images[:E2E_VAL]], model="baseline")
            outputs, version = fer_client.predict_raw({"unused": np.int32(0)}, "baseline", signature="metadata")
    assert version == 1
    assert [name.decode() for name in outputs["class_names"]] == list(val.class_names)
    expected = predict_scores(model, val.images[:E2E_VAL], batch_size=256, use_ten_crop=False)
    assert len(rows) == E2E_VAL
    assert [row["class_id"] for row in rows] == expected.argmax(axis=1).tolist()
    assert [row["label"] for row in rows] == [val.class_names[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose([row["probabilities"] for row in rows], expected, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Bad files among good ones (issue 11): each named, the good ones still classified.


@pytest.fixture
def bad_jpeg(face_files, tmp_path):
    """A real face JPEG cut in half, as an interrupted download leaves it."""
    jpeg = next(p for p in face_files if p.suffix.lower() in {".jpg", ".jpeg"})
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    return bad


def _assert_same_rows(rows, expected):
    assert [row["class_id"] for row in rows] == [row["class_id"] for row in expected]
    np.testing.assert_allclose([row["probabilities"] for row in rows], [row["probabilities"] for row in expected], rtol=1e-5, atol=1e-6)


def test_cli_names_each_bad_file_and_classifies_the_good_ones(server, fer_client, face_files, bad_jpeg, tmp_path, capsys):
    good = [str(face_files[0]), str(face_files[1])]
    missing = tmp_path / "missing.png"
    argv = ["--model", "fer", good[0], str(bad_jpeg), good[1], str(missing)]
    expected = fer_client.predict(good, model="fer")

    assert client_module.main(["--server", server.target, "--json", *argv]) == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [row.pop("image") for row in rows] == good
    _assert_same_rows(rows, expected)
    errors = captured.err.splitlines()
    assert len(errors) == 2 and "Traceback" not in captured.err
    assert errors[0].startswith(f"error: {bad_jpeg}: INVALID_ARGUMENT: ") and "JPEG" in errors[0]
    assert errors[1] == f"error: {missing}: CLIENT_ERROR: cannot read file: No such file or directory"

    assert client_module.main(["--rest", f"http://127.0.0.1:{server.rest_api_port}", *argv]) == 1
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert [line.split()[0] for line in table[1:]] == [p.name for p in face_files[:2]]
    errors = captured.err.splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"error: {bad_jpeg}: HTTP_400: ") and errors[1].startswith(f"error: {missing}: ")

    assert client_module.main(["--server", server.target, "--model", "fer", str(bad_jpeg)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: {bad_jpeg}: INVALID_ARGUMENT: ")


def test_predict_errors_return_puts_a_named_error_in_place_of_each_bad_image(fer_client, face_files, bad_jpeg):
    expected = fer_client.predict(face_files[:3], model="fer")
    results = fer_client.predict([face_files[0], b"not an image", face_files[1], bad_jpeg, face_files[2]], model="fer", errors="return")
    assert [type(result).__name__ for result in results] == ["dict", "FerServingError", "dict", "FerServingError", "dict"]
    assert results[1].image == "images[1]" and str(results[1]).startswith("images[1]: INVALID_ARGUMENT: ")
    assert results[3].image == str(bad_jpeg) and results[3].code_name == "INVALID_ARGUMENT"
    _assert_same_rows([results[0], results[2], results[4]], expected)
    with pytest.raises(FerServingError) as error:  # an error about the whole call is still raised
        fer_client.predict([face_files[0], bad_jpeg], model="nope", errors="return")
    assert error.value.code_name == "NOT_FOUND" and error.value.image is None
