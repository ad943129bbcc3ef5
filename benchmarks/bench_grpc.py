"""gRPC serving latency and throughput against the local TF-Serving-compatible server.

    python benchmarks/bench_grpc.py --keras_model=../runs/baseline-fer2013/best.keras
    python benchmarks/bench_grpc.py --model_dir=serving/models/baseline        # already exported

Starts ``python -m serving.server`` as a subprocess on a free loopback port (so client and server
do not share a GIL), then measures ``PredictionService.Predict`` on ``serving_default`` with one
real face as PNG bytes:

* latency at batch 1: ``--warmup`` requests, then ``--requests`` sequential requests, p50/p99;
* throughput: ``--concurrency`` client threads each sending batch-1 requests for ``--requests``
  requests in total, images/s;

each ``--repetitions`` times; the table shows the median with [min, max] over repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export_keras(keras_model: str, export_root: str) -> str:
    from fer_keras.export.savedmodel import export_model
    from fer_keras.saving import load_model

    model = load_model(keras_model)
    return export_model(model, export_root, "baseline", version=1)


def face_png(image_path: str | None) -> tuple[bytes, str]:
    if image_path:
        return pathlib.Path(image_path).read_bytes(), image_path
    shared = pathlib.Path(os.environ.get("FER_KERAS_SHARED", ROOT.parent / "shared"))
    candidates = sorted((shared / "datasets" / "fer2013" / "val").glob("*/*.png"))[:1]
    if candidates:
        return candidates[0].read_bytes(), str(candidates[0])
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue(), "random 48x48 PNG"


@dataclasses.dataclass
class Server:
    """A server subprocess on a loopback port; ``stop()`` returns its log text."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        text = pathlib.Path(self.log_path).read_text()
        shutil.rmtree(os.path.dirname(self.log_path), ignore_errors=True)
        return text


def start_process(module_args: list, name: str) -> Server:
    """Start ``python <module_args> --port=0 --port_file=...`` (a gRPC server) and wait for its port."""
    folder = tempfile.mkdtemp(prefix=f"bench_{name}_")
    port_file = os.path.join(folder, "port")
    log_path = os.path.join(folder, "server.log")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, *module_args, "--port=0", f"--port_file={port_file}"], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while not os.path.exists(port_file):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} server did not start; log:\n" + pathlib.Path(log_path).read_text()[-3000:])
        time.sleep(0.2)
    return Server(name, process, int(pathlib.Path(port_file).read_text().split()[0]), log_path)


def start_server(base_path: str, threads: int, model_name: str = "baseline", flags=(), name: str = "local") -> Server:
    """``python -m serving.server`` serving ``base_path`` as ``model_name`` (extra ``flags``)."""
    return start_process(["-m", "serving.server", f"--model_name={model_name}", f"--model_base_path={base_path}",
                          f"--grpc_max_threads={threads}", "--file_system_poll_wait_seconds=0", *flags], name)


def predict_request(model_name: str, data: bytes):
    """A batch-1 ``serving_default`` PredictRequest with encoded image bytes."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string, shape=[1]))
    return request


def closed_loop(target: str, request, clients: int, total: int, timeout: float = 30.0) -> tuple[float, list]:
    """``clients`` threads (one channel each) send ``request`` back to back, ``total`` requests in all.

    Returns ``(requests/s, [latency ms of each request])``; raises if any request failed."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    counter = iter(range(total))
    lock, errors, latencies = threading.Lock(), [], []
    channels = [grpc.insecure_channel(target) for _ in range(clients)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(channel) for channel in channels]
    for stub in stubs:  # connect first: the handshake is not part of the measurement
        stub.Predict(request, timeout=timeout)

    def worker(stub):
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            started = time.perf_counter()
            try:
                stub.Predict(request, timeout=timeout)
            except grpc.RpcError as error:  # counted, reported
                errors.append(error.code().name)
            mine.append((time.perf_counter() - started) * 1000.0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(stub,)) for stub in stubs]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for channel in channels:
        channel.close()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests under load: {sorted(set(errors))}")
    return total / elapsed, latencies


def cell(values, fmt: str = "{:.0f}") -> str:
    """``median [min, max]`` of ``values``."""
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="model base path (numeric version folders) or one version folder")
    source.add_argument("--keras_model", help=".keras model to export first (e.g. ../runs/baseline-fer2013/best.keras)")
    parser.add_argument("--image", help="face image to send (default: a FER2013 val PNG)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    workdir = tempfile.mkdtemp(prefix="bench_grpc_models_")
    if args.keras_model:
        base_path = os.path.dirname(export_keras(args.keras_model, workdir))
    else:
        base_path = os.path.abspath(args.model_dir)
        if os.path.basename(base_path).isdigit():  # a version folder: serve it through a link
            os.symlink(base_path, os.path.join(workdir, os.path.basename(base_path)))
            base_path = workdir
    data, image_name = face_png(args.image)
    server = start_server(base_path, threads=max(8, args.concurrency))
    try:
        request = predict_request("baseline", data)
        channel = grpc.insecure_channel(server.target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=args.timeout)
        version = response.model_spec.version.value
        for _ in range(args.warmup):
            stub.Predict(request, timeout=args.timeout)

        p50s, p99s, rates = [], [], []
        for _ in range(args.repetitions):
            latencies = []
            for _ in range(args.requests):
                started = time.perf_counter()
                stub.Predict(request, timeout=args.timeout)
                latencies.append((time.perf_counter() - started) * 1000.0)
            p50s.append(float(np.percentile(latencies, 50)))
            p99s.append(float(np.percentile(latencies, 99)))
            rates.append(closed_loop(server.target, request, args.concurrency, args.requests * 2, args.timeout)[0])
        channel.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nModel `baseline` v{version} from {base_path}; image {image_name} ({len(data)} B PNG); "
          f"{os.cpu_count()} CPUs; local server `serving.server` (no batching); {args.repetitions} repetitions, median [min, max].\n")
    print("| metric | value |")
    print("|---|---|")
    print(f"| p50 latency, batch 1, sequential ({args.requests} req) | {cell(p50s, '{:.2f}')} ms |")
    print(f"| p99 latency, batch 1, sequential ({args.requests} req) | {cell(p99s, '{:.2f}')} ms |")
    print(f"| throughput, batch 1, {args.concurrency} concurrent clients ({args.requests * 2} req) | {cell(rates)} images/s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
