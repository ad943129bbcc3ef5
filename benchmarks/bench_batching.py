"""Server-side batching: the local server with ``--enable_batching`` against a naive server.

    python benchmarks/bench_batching.py                                   # baseline at 8 and 32 clients, MrCAR at 8
    python benchmarks/bench_batching.py --runs=baseline:8 --pairs=3       # quicker

Three gRPC servers run side by side as subprocesses (so clients and servers do not share a GIL),
each serving the same shipped SavedModel (``serving/models/<model>``):

* ``naive``: a minimal ``PredictionService`` in this file that runs one request at a time (a
  one-thread gRPC server: parse, call ``serving_default``, reply). Our server with batching off is
  *not* that: it runs up to ``--grpc_max_threads`` requests at once, so it is measured too;
* ``off``: ``python -m serving.server`` without batching (what the issue measured at 0.94x naive);
* ``on``: ``python -m serving.server --enable_batching --batching_parameters_file=serving/batching.config``.

For each ``--runs`` entry (model:clients), ``clients`` threads send batch-1 ``serving_default``
requests (one real FER2013 face as PNG bytes) back to back, ``--requests`` in all; req/s, p50/p99
latency and the server process's CPU time per request (``/proc``) are measured per server. The CPU
is shared (training runs), so the servers are measured in alternating order, ``--pairs`` times, and
the tables report the median [min, max] of the absolute values and of the per-round ratios
on/naive and off/naive. Last, the CPU cost per image of ``serving_default`` by batch size is
measured in this process: the most batching can save for that model on this CPU.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from fer_keras.runtime import cpu_model
from bench_grpc import (
    ROOT,
    cell,
    closed_loop,
    face_png,
    predict_request,
    start_process,
    start_server,
)

SERVERS = ("naive", "off", "on")
STATS = re.compile(r"Batching: (\d+) batches, (\d+) tasks, (\d+) rows \(\+(\d+) padding rows\)")


def serve_naive(model_dir: str, port_file: str):
    """The reference: a minimal PredictionService that runs one request at a time, until SIGTERM."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    version = max(int(name) for name in os.listdir(model_dir) if name.isdigit())
    signature = tf.saved_model.load(os.path.join(model_dir, str(version))).signatures["serving_default"]

    class NaivePredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC method name
            inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = version
            for name, value in signature(**inputs).items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(NaivePredictionService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file + ".tmp", "w") as handle:
        handle.write(f"{port}\n")
    os.replace(port_file + ".tmp", port_file)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0.5).wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def model_cost(model: str, data: bytes, sizes=(1, 4, 8, 16, 32), seconds: float = 2.0) -> dict:
    """CPU ms per image of ``serving_default`` at each batch size, in this process (no gRPC): how much
    batching can save for this model on this CPU."""
    import tensorflow as tf

    model_dir = ROOT / "serving" / "models" / model
    version = max(int(name) for name in os.listdir(model_dir) if name.isdigit())
    signature = tf.saved_model.load(str(model_dir / str(version))).signatures["serving_default"]
    costs = {}
    for size in sizes:
        images = tf.constant([data] * size)
        signature(images=images)  # warm-up
        calls, cpu_before, started = 0, time.process_time(), time.monotonic()
        while time.monotonic() - started < seconds or calls < 3:
            signature(images=images)
            calls += 1
        costs[size] = (time.process_time() - cpu_before) / calls / size * 1000.0
    return costs


def start_servers(model: str, threads: int, batching_file: str, intra_op_threads: int = 0) -> dict:
    model_dir = str(ROOT / "serving" / "models" / model)
    on_flags = ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    if intra_op_threads:
        on_flags.append(f"--tensorflow_intra_op_parallelism={intra_op_threads}")
    return {
        "naive": start_process([str(pathlib.Path(__file__).resolve()), "--serve_naive", f"--model_dir={model_dir}"], "naive"),
        "off": start_server(model_dir, threads, model, name="off"),
        "on": start_server(model_dir, threads, model, on_flags, "on"),
    }


def measure(args, data: bytes) -> tuple[dict, dict]:
    """``{(model, clients, server): [(req/s, p50, p99, server CPU ms/req) per round]}`` and the batching stats per model."""
    runs = collections.defaultdict(list)
    for entry in args.runs.split(","):
        model, clients = entry.split(":")
        runs[model].append(int(clients))
    results, batch_stats = collections.defaultdict(list), {}
    for model, client_counts in runs.items():
        servers = start_servers(model, max(8, *client_counts), args.batching_parameters_file, args.intra_op_threads)
        request = predict_request(model, data)
        try:
            for clients in client_counts:  # warm up every server at every concurrency
                for server in servers.values():
                    closed_loop(server.target, request, clients, args.warmup)
            for round_index in range(args.pairs):
                order = SERVERS if round_index % 2 == 0 else SERVERS[::-1]
                for clients in client_counts:
                    for name in order:
                        cpu_before = cpu_seconds(servers[name].process.pid)
                        rate, latencies = closed_loop(servers[name].target, request, clients, args.requests)
                        cpu = (cpu_seconds(servers[name].process.pid) - cpu_before) / args.requests * 1000.0
                        row = (rate, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)), cpu)
                        results[model, clients, name].append(row)
                        print(f"round {round_index + 1}/{args.pairs} {model} {clients} clients {name}: {row[0]:.0f} req/s, "
                              f"p50 {row[1]:.1f} ms, p99 {row[2]:.1f} ms, server CPU {row[3]:.2f} ms/req", file=sys.stderr, flush=True)
        finally:
            logs = {name: server.stop() for name, server in servers.items()}
        match = STATS.search(logs["on"])
        batch_stats[model] = tuple(int(value) for value in match.groups()) if match else None
    return results, batch_stats


def report(args, results: dict, batch_stats: dict, costs: dict, data: bytes, image_name: str, load: tuple):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    import tensorflow as tf

    print(f"\n{datetime.date.today()}, commit {commit}, {os.cpu_count()} CPUs ({cpu_model()}), TF {tf.__version__}; CPU shared with "
          f"training runs (load average {load[0]:.1f} at start, {load[1]:.1f} at end). {args.pairs} rounds, servers in "
          f"alternating order; batch-1 `serving_default` requests ({image_name}, {len(data)} B PNG), {args.requests} per "
          f"measurement after {args.warmup} warm-up requests; batching from `{args.batching_parameters_file}`.\n")
    print("| model | clients | server | req/s | p50 ms | p99 ms | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|")
    for (model, clients, name), rows in results.items():
        rates, p50s, p99s, cpus = zip(*rows)
        print(f"| {model} | {clients} | {name} | {cell(rates)} | {cell(p50s, '{:.1f}')} | {cell(p99s, '{:.1f}')} | "
              f"{cell(cpus, '{:.2f}')} |")
    print("\nRatios per round (same round, median [min, max]):\n")
    print("| model | clients | on/naive req/s | on/naive p99 | naive/on server CPU per req | off/naive req/s |")
    print("|---|---|---|---|---|---|")
    for model, clients in dict.fromkeys((model, clients) for model, clients, _ in results):
        naive, off, on = (results[model, clients, name] for name in SERVERS)
        rate_on = [b[0] / a[0] for a, b in zip(naive, on)]
        p99_on = [b[2] / a[2] for a, b in zip(naive, on)]
        cpu_on = [a[3] / b[3] for a, b in zip(naive, on)]
        rate_off = [b[0] / a[0] for a, b in zip(naive, off)]
        print(f"| {model} | {clients} | {cell(rate_on, '{:.2f}x')} | {cell(p99_on, '{:.2f}x')} | {cell(cpu_on, '{:.2f}x')} | "
              f"{cell(rate_off, '{:.2f}x')} |")
    sizes = next(iter(costs.values()))
    print("\nCPU ms per image of `serving_default` by batch size, in one process without gRPC (after the load tests):\n")
    print("| model | " + " | ".join(f"batch {size}" for size in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for model, cost in costs.items():
        print(f"| {model} | " + " | ".join(f"{value:.2f}" for value in cost.values()) + " |")
    for model, stats in batch_stats.items():
        if stats:
            batches, tasks, rows, padding = stats
            print(f"\n`on` server, {model}, whole run (warm-up and all client counts): {batches} batches, mean "
                  f"{rows / batches:.1f} rows (+{padding / batches:.1f} padding rows) from {tasks} requests.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="baseline:8,baseline:32,mrcar:8", help="model:clients entries (models in serving/models)")
    parser.add_argument("--pairs", type=int, default=7, help="rounds of alternating measurements")
    parser.add_argument("--requests", type=int, default=600, help="requests per measurement")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per server and concurrency")
    parser.add_argument("--batching_parameters_file", default="serving/batching.config")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="--tensorflow_intra_op_parallelism of the batching server (0: TensorFlow's default)")
    parser.add_argument("--image", help="face image to send (default: a FER2013 val PNG)")
    parser.add_argument("--serve_naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model_dir", help=argparse.SUPPRESS)
    parser.add_argument("--port", help=argparse.SUPPRESS)
    parser.add_argument("--port_file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_naive:
        serve_naive(args.model_dir, args.port_file)
        return 0
    data, image_name = face_png(args.image)
    load_start = os.getloadavg()[0]
    results, batch_stats = measure(args, data)
    load_end = os.getloadavg()[0]
    costs = {model: model_cost(model, data) for model in batch_stats}
    report(args, results, batch_stats, costs, data, image_name, (load_start, load_end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
