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


def start_server(base_path: str, threads: int) -> tuple[subprocess.Popen, int, str]:
    port_file = os.path.join(tempfile.mkdtemp(prefix="bench_grpc_"), "port")
    log = open(port_file + ".log", "w")
    command = [sys.executable, "-m", "serving.server", "--model_name=baseline", f"--model_base_path={base_path}", "--port=0",
               f"--port_file={port_file}", f"--grpc_max_threads={threads}", "--file_system_poll_wait_seconds=0"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while not os.path.exists(port_file):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not start; log: {port_file}.log\n" + pathlib.Path(port_file + ".log").read_text()[-3000:])
        time.sleep(0.2)
    return process, int(pathlib.Path(port_file).read_text().split()[0]), port_file + ".log"


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
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    workdir = tempfile.mkdtemp(prefix="bench_grpc_models_")
    if args.keras_model:
        base_path = os.path.dirname(export_keras(args.keras_model, workdir))
    else:
        base_path = os.path.abspath(args.model_dir)
        if os.path.basename(base_path).isdigit():  # a version folder: serve it through a link
            os.symlink(base_path, os.path.join(workdir, os.path.basename(base_path)))
            base_path = workdir
    data, image_name = face_png(args.image)
    process, port, log_path = start_server(base_path, threads=max(8, args.concurrency))
    try:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "baseline"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string, shape=[1]))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
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

            counter = iter(range(args.requests * 2))
            lock, errors = threading.Lock(), []
            channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(args.concurrency)]

            def worker(worker_stub):
                while True:
                    with lock:
                        if next(counter, None) is None:
                            return
                    try:
                        worker_stub.Predict(request, timeout=args.timeout)
                    except grpc.RpcError as error:  # counted, reported
                        errors.append(error.code().name)

            threads = [threading.Thread(target=worker, args=(prediction_service_pb2_grpc.PredictionServiceStub(c),)) for c in channels]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            for c in channels:
                c.close()
            if errors:
                raise RuntimeError(f"{len(errors)} failed requests under load: {sorted(set(errors))}")
            rates.append(args.requests * 2 / elapsed)
        channel.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(os.path.dirname(log_path), ignore_errors=True)

    def cell(values, fmt):
        return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}, {fmt.format(max(values))}]"

    print(f"\nModel `baseline` v{version} from {base_path}; image {image_name} ({len(data)} B PNG); "
          f"{os.cpu_count()} CPUs; local server `serving.server` (no batching); {args.repetitions} repetitions, median [min, max].\n")
    print("| metric | value |")
    print("|---|---|")
    print(f"| p50 latency, batch 1, sequential ({args.requests} req) | {cell(p50s, '{:.2f}')} ms |")
    print(f"| p99 latency, batch 1, sequential ({args.requests} req) | {cell(p99s, '{:.2f}')} ms |")
    print(f"| throughput, batch 1, {args.concurrency} concurrent clients ({args.requests * 2} req) | {cell(rates, '{:.0f}')} images/s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
