"""Server-side batching (``serving.batching``): TF Serving's BatchingParameters, merged and padded
batches, each request's own rows back, the queue bound, and bad requests failing alone."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import pathlib
import threading
import time
import types
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import config as serving_config
from serving.batching import (
    QUEUE_FULL,
    BatchingOptions,
    BatchScheduler,
    load_batching_options,
)
from serving.servables import Servable, ServingError, load_servable
from serving.server import ModelServer, build_arg_parser, build_server

SERVING = pathlib.Path(__file__).resolve().parents[2] / "serving"


class RecordingSignature:
    """Wraps a signature: records the batch size of every call; calls wait at ``gate`` when it is cleared."""

    def __init__(self, fn):
        self.fn = fn
        self.structured_input_signature = fn.structured_input_signature
        self.structured_outputs = fn.structured_outputs
        self.sizes = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, **tensors):
        first = next(iter(tensors.values()))
        self.sizes.append(int(first.shape[0]) if first.shape.rank else None)
        self.entered.set()
        assert self.gate.wait(30)
        return self.fn(**tensors)


@pytest.fixture(scope="module")
def loaded(tiny_models):
    return load_servable("fer", 1, str(tiny_models["v1"]))


@pytest.fixture
def servable(loaded):
    """The tiny model with recording signatures (a fresh record per test)."""
    signatures = {name: RecordingSignature(fn) for name, fn in loaded.loaded.signatures.items()}
    return Servable("fer", 1, loaded.path, types.SimpleNamespace(signatures=signatures, original=loaded.loaded), loaded.signature_defs)


@pytest.fixture
def make_scheduler():
    schedulers = []

    def make(**options):
        scheduler = BatchScheduler(BatchingOptions(**options))
        schedulers.append(scheduler)
        return scheduler

    yield make
    for scheduler in schedulers:
        scheduler.stop()


def _pixels(seed: int, rows: int) -> dict:
    return {"images": np.random.default_rng(seed).integers(0, 256, (rows, 48, 48, 1), dtype=np.uint8)}


def _concurrently(calls):
    """Run the callables at once; their results or exceptions, in order."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.exception() or future.result() for future in futures]


# --------------------------------------------------------------------------------------------
# batching.config


def _write(tmp_path, text) -> pathlib.Path:
    path = tmp_path / "batching.config"
    path.write_text(text)
    return path


def test_shipped_batching_config_is_read_with_tf_serving_parameters():
    options = load_batching_options(SERVING / "batching.config")
    assert options.max_batch_size >= 1 and options.num_batch_threads >= 1 and options.max_enqueued_batches >= 1
    assert options.batch_timeout_micros >= 0
    assert not options.allowed_batch_sizes or options.allowed_batch_sizes[-1] == options.max_batch_size
    padded = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    assert [padded.padded_size(n) for n in (1, 2, 3, 5, 8)] == [2, 2, 4, 8, 8]


def test_defaults_are_tf_serving_defaults(tmp_path):
    options = load_batching_options(_write(tmp_path, "num_batch_threads { value: 3 }"))
    assert (options.max_batch_size, options.batch_timeout_micros, options.max_enqueued_batches) == (1000, 0, 10)
    assert options.num_batch_threads == 3 and options.allowed_batch_sizes == ()
    assert options.padded_size(7) == 7


@pytest.mark.parametrize(
    "text, field",
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8", "allowed_batch_sizes"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4", "allowed_batch_sizes"),
        ("allowed_batch_sizes: 2 allowed_batch_sizes: 4", "allowed_batch_sizes"),  # max_batch_size defaults to 1000
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros"),
        ("num_batch_threads { value: 0 }", "num_batch_threads"),
        ("max_enqueued_batches { value: 0 }", "max_enqueued_batches"),
        ("max_batch_sizes { value: 8 }", None),  # misspelt field: TF Serving's "Invalid protobuf file"
    ],
)
def test_invalid_batching_config_is_refused_naming_file_and_field(tmp_path, text, field):
    path = _write(tmp_path, text)
    with pytest.raises(serving_config.ConfigError) as raised:
        load_batching_options(path)
    assert raised.value.code == "INVALID_ARGUMENT" and str(path) in str(raised.value)
    assert field is None or (raised.value.field == field and field in str(raised.value))


def test_last_allowed_size_message_is_tf_servings(tmp_path):
    with pytest.raises(serving_config.ConfigError, match="Last entry in allowed_batch_sizes must match max_batch_size; "
                       "last entry was 4; expected 1000"):
        load_batching_options(_write(tmp_path, "allowed_batch_sizes: 2 allowed_batch_sizes: 4"))


def test_server_flags_follow_tf_serving(tmp_path):
    path = _write(tmp_path, "max_batch_size { value: 4 } allowed_batch_sizes: 2 allowed_batch_sizes: 4")
    common = ["--model_name=fer", f"--model_base_path={tmp_path}"]
    with pytest.raises(serving_config.ConfigError, match="batching_parameters_file is set without setting "
                       "server_options.enable_batching to true"):
        build_server(build_arg_parser().parse_args(common + [f"--batching_parameters_file={path}"]))
    server = build_server(build_arg_parser().parse_args(common + ["--enable_batching", f"--batching_parameters_file={path}"]))
    assert server.batching == BatchingOptions(max_batch_size=4, allowed_batch_sizes=(2, 4))
    assert server.max_workers == 8  # 2 x max_batch_size, at least 8
    server = build_server(build_arg_parser().parse_args(common + ["--enable_batching=true"]))
    assert server.batching == BatchingOptions()
    assert build_server(build_arg_parser().parse_args(common)).batching is None


# --------------------------------------------------------------------------------------------
# Scheduler


def test_concurrent_requests_are_merged_padded_and_each_gets_its_own_rows(servable, loaded, make_scheduler):
    scheduler = make_scheduler(max_batch_size=8, batch_timeout_micros=500_000, num_batch_threads=1, allowed_batch_sizes=(2, 4, 8))
    requests = [_pixels(seed, rows) for seed, rows in enumerate([1, 2, 1, 1])]  # 5 rows -> padded to 8
    results = _concurrently([lambda r=r: scheduler.run_signature(servable, "predict_images", r) for r in requests])
    assert servable.loaded.signatures["predict_images"].sizes == [8]
    assert scheduler.stats["padding"] == 3 and scheduler.stats["tasks"] == 4
    direct = loaded.loaded.signatures["predict_images"]
    for request, (signature_name, outputs) in zip(requests, results):
        expected = direct(images=tf.constant(request["images"]))
        assert signature_name == "predict_images" and set(outputs) == {"probabilities", "class_ids", "labels"}
        np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), rtol=1e-5, atol=1e-7)
        assert outputs["class_ids"].tolist() == expected["class_ids"].numpy().tolist()
        assert outputs["labels"].tolist() == expected["labels"].numpy().tolist()


def test_full_batch_runs_without_waiting_for_the_timeout(servable, make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=60_000_000, num_batch_threads=1)
    started = time.monotonic()
    _concurrently([lambda seed=seed: scheduler.run_signature(servable, "predict_images", _pixels(seed, 1)) for seed in range(4)])
    assert servable.loaded.signatures["predict_images"].sizes == [4]
    assert time.monotonic() - started < 30  # not the 60 s timeout (a behaviour bound, not a speed figure)


def test_request_larger_than_max_batch_size_is_split_and_rejoined(servable, loaded, make_scheduler):
    scheduler = make_scheduler(max_batch_size=8, num_batch_threads=1, allowed_batch_sizes=(4, 8))
    request = _pixels(7, 19)
    _, outputs = scheduler.run_signature(servable, "predict_images", request, ["probabilities"])
    assert sorted(servable.loaded.signatures["predict_images"].sizes) == [4, 8, 8]  # 8 + 8 + 3 padded to 4
    assert set(outputs) == {"probabilities"} and outputs["probabilities"].shape == (19, 7)
    expected = loaded.loaded.signatures["predict_images"](images=tf.constant(request["images"]))
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), rtol=1e-5, atol=1e-7)


def test_full_queue_fails_fast_with_unavailable(servable, make_scheduler):
    scheduler = make_scheduler(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    signature = servable.loaded.signatures["predict_images"]
    signature.gate.clear()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(scheduler.run_signature, servable, "predict_images", _pixels(0, 1))
        assert signature.entered.wait(30)  # the only batch thread is busy with it
        queued = pool.submit(scheduler.run_signature, servable, "predict_images", _pixels(1, 2))  # fills the one batch
        deadline = time.monotonic() + 30
        while scheduler.num_enqueued_tasks() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ServingError) as refused:
            scheduler.run_signature(servable, "predict_images", _pixels(2, 1))
        signature.gate.set()
        assert running.result(30)[1]["probabilities"].shape == (1, 7)
        assert queued.result(30)[1]["probabilities"].shape == (2, 7)
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and refused.value.message == QUEUE_FULL
    assert signature.sizes == [1, 2] and scheduler.stats["refused"] == 1


def test_wrong_shape_fails_alone_before_queueing(servable, make_scheduler):
    scheduler = make_scheduler(max_batch_size=2, batch_timeout_micros=60_000_000, num_batch_threads=1)
    good = [lambda seed=seed: scheduler.run_signature(servable, "predict_images", _pixels(seed, 1)) for seed in range(2)]
    wrong = {"images": np.zeros((1, 40, 40, 1), np.uint8)}
    results = _concurrently([good[0], lambda: scheduler.run_signature(servable, "predict_images", wrong), good[1]])
    assert isinstance(results[1], ServingError) and results[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert "shape" in results[1].message
    assert [r[1]["probabilities"].shape for r in (results[0], results[2])] == [(1, 7), (1, 7)]
    assert servable.loaded.signatures["predict_images"].sizes == [2]


def test_bad_image_in_a_merged_batch_fails_alone(servable, loaded, face_files, make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=60_000_000, num_batch_threads=1)
    images = [np.array([path.read_bytes()], dtype=object) for path in face_files[:3]]
    requests = images[:2] + [np.array([b"not an image"], dtype=object)] + images[2:]
    results = _concurrently([lambda r=r: scheduler.run_signature(servable, "", {"images": r}) for r in requests])
    assert isinstance(results[2], ServingError) and results[2].code == grpc.StatusCode.INVALID_ARGUMENT
    direct = loaded.loaded.signatures["serving_default"]
    for request, result in zip(images, results[:2] + results[3:]):
        expected = direct(images=tf.constant(request.tolist()))["probabilities"].numpy()
        np.testing.assert_allclose(result[1]["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert servable.loaded.signatures["serving_default"].sizes == [4, 1, 1, 1, 1]  # merged, then each alone
    assert scheduler.stats["retried"] == 4


def test_unbatchable_signature_runs_directly(servable, make_scheduler):
    scheduler = make_scheduler(max_batch_size=4)
    _, outputs = scheduler.run_signature(servable, "metadata", {"unused": np.array(0, np.int32)})
    assert outputs["class_names"].shape == (7,) and scheduler.stats["batches"] == 0


def test_stop_fails_queued_requests_with_unavailable(servable, make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=60_000_000, num_batch_threads=1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(scheduler.run_signature, servable, "predict_images", _pixels(0, 1))
        deadline = time.monotonic() + 30
        while scheduler.num_enqueued_tasks() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        scheduler.stop()
        with pytest.raises(ServingError) as stopped:
            waiting.result(30)
    assert stopped.value.code == grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------------------------
# Through the server: gRPC and REST


@pytest.fixture(scope="module")
def batching_server(model_repo):
    instance = ModelServer.from_config_file(
        model_repo / "models.config",
        serving_config.parse_path_map([f"/models={model_repo / 'models'}"]),
        port=0,
        rest_api_port=0,
        poll_seconds=0,
        allow_version_labels_for_unavailable_models=True,
        max_workers=16,
        batching=BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1, allowed_batch_sizes=(4, 8)),
    )
    instance.start()
    yield instance
    instance.stop()


def test_grpc_and_rest_predict_go_through_the_scheduler(batching_server, face_files, tiny_models):
    channel = grpc.insecure_channel(batching_server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    images = [path.read_bytes() for path in face_files]

    def grpc_predict(data):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "fer"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string, shape=[1]))
        return tf.make_ndarray(stub.Predict(request, timeout=30).outputs["probabilities"])

    def rest_predict(data):
        body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
        url = f"http://127.0.0.1:{batching_server.rest_api_port}/v1/models/fer:predict"
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as reply:
            return np.array([row["probabilities"] for row in json.loads(reply.read())["predictions"]], np.float32)

    calls = [lambda d=d: grpc_predict(d) for d in images] + [lambda: rest_predict(images[0])]
    results = _concurrently(calls)
    channel.close()
    direct = tf.saved_model.load(str(tiny_models["v1"])).signatures["serving_default"]
    for data, result in zip(images + images[:1], results):
        expected = direct(images=tf.constant([data]))["probabilities"].numpy()
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    stats = batching_server.scheduler.stats
    assert stats["tasks"] == len(calls) and stats["batches"] < len(calls)  # merged
