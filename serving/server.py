"""A local, TF-Serving-compatible model server for development and tests.

Speaks the ``tensorflow.serving`` gRPC API of ``tensorflow_model_server`` (``PredictionService``:
``Predict``, ``GetModelMetadata``; ``ModelService``: ``GetModelStatus``,
``HandleReloadConfigRequest``; ``Classify``/``Regress``/``MultiInference`` answer UNIMPLEMENTED)
and a subset of its REST API, on the same model layout (``<base_path>/<version>/saved_model.pb``)
and ``models.config`` format::

    python -m serving.server --model_config_file=serving/models.config --port=8500 --rest_api_port=8501
    python -m serving.server --model_name=baseline --model_base_path=/tmp/export/baseline

Base paths are polled (``--file_system_poll_wait_seconds``, default 1 s like TF Serving): a new
version folder is loaded and, once AVAILABLE, older versions outside the version policy are
unloaded; deleted versions are unloaded. Status codes follow TF Serving:

* configs TF Serving refuses are refused with its status and message (``serving.config``): a
  malformed file, a model listed twice, a missing/relative ``base_path``, a missing base path
  folder, and version labels on versions that are not AVAILABLE (at startup: any label) unless
  ``--allow_version_labels_for_unavailable_models`` is passed ("Failed to start server. Error:
  ..." on the command line; the error status of ``HandleReloadConfigRequest``);
* unknown model / version / version label: NOT_FOUND ("Servable not found for request: ...");
* unknown signature: FAILED_PRECONDITION ('Serving signature key "x" not found.'), as in
  TF Serving's ``predict_util.cc``;
* wrong/missing input names, wrong dtype, wrong shape, empty batch, undecodable image bytes:
  INVALID_ARGUMENT;
* request larger than ``--max_message_bytes``: RESOURCE_EXHAUSTED, produced by gRPC itself
  ("Received message larger than max"). TF Serving sets the limit to INT32_MAX by default
  (``builder.SetMaxMessageSize(kint32max)``) and returns the same gRPC status when a lower
  ``grpc.max_receive_message_length`` is set through ``--grpc_channel_arguments``; this server
  defaults to 4 MiB (gRPC's default) so oversized uploads fail fast in development.

``--enable_batching [--batching_parameters_file=serving/batching.config]`` merge concurrent
Predict requests (gRPC and REST) into batches with TF Serving's ``BatchingParameters``
(``serving.batching``); a full batching queue answers UNAVAILABLE.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import logging
import os
import signal
import sys
import threading

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import config as serving_config
from serving.batching import BatchingOptions, BatchScheduler, load_batching_options
from serving.rest import make_rest_handler
from serving.servables import (
    DEFAULT_LOAD_RETRY_INTERVAL_MICROS,
    DEFAULT_MAX_NUM_LOAD_RETRIES,
    ModelManager,
    ServingError,
    array_from_proto,
    run_signature,
)

LOG = logging.getLogger("serving.server")
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BATCHING_GRPC_THREADS = 256


def _requested_version(model_spec):
    version = model_spec.version.value if model_spec.HasField("version") else None
    return version, model_spec.version_label or None


# --------------------------------------------------------------------------------------------
# gRPC services


def _abort(context, error: ServingError):
    context.abort(error.code, error.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, run=run_signature):
        self.manager = manager
        self.run = run  # serving.servables.run_signature, or ModelServer.run_signature (batching)

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        try:
            version, label = _requested_version(request.model_spec)
            servable = self.manager.get(request.model_spec.name, version, label)
            inputs = {name: array_from_proto(name, proto) for name, proto in request.inputs.items()}
            signature_name, outputs = self.run(servable, request.model_spec.signature_name, inputs, list(request.output_filter))
        except ServingError as error:
            _abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.metadata_field:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
            version, label = _requested_version(request.model_spec)
            servable = self.manager.get(request.model_spec.name, version, label)
        except ServingError as error:
            _abort(context, error)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in servable.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: "ModelServer"):
        self.server = server

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            version, _ = _requested_version(request.model_spec)
            rows = self.server.manager.status(request.model_spec.name, version)
        except ServingError as error:
            _abort(context, error)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state, code, message in rows:
            status = response.model_version_status.add(version=version, state=state)
            status.status.error_code = code.value[0]
            status.status.error_message = message
        return response

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.server.reload_config(request.config)
        except serving_config.ConfigError as error:  # TF Serving's status code and message
            response.status.error_code = grpc.StatusCode[error.code].value[0]
            response.status.error_message = error.tf_message
        except ValueError as error:
            response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.status.error_message = str(error)
        return response


# --------------------------------------------------------------------------------------------
# REST (subset of TF Serving's /v1 API)



class ModelServer:
    """gRPC (+ optional REST) server with a polling ``ModelManager``.

    Args:
        entries: ``serving.config.ModelEntry`` list.
        port: gRPC port (0 picks a free one; see ``.port`` after ``start``).
        rest_api_port: REST port, None/omitted = no REST server (0 picks a free one).
        host: bind address (loopback by default; "0.0.0.0" to expose).
        poll_seconds: base path polling period (<= 0 disables polling).
        max_message_bytes: largest accepted request (gRPC RESOURCE_EXHAUSTED beyond).
        max_workers: gRPC handler threads.
        allow_version_labels_for_unavailable_models: TF Serving's flag of that name (reloads).
        root_dir: ``--model_config_list_root_dir`` (relative base paths of reloads are joined to it).
        path_map: ``serving.config.parse_path_map`` pairs applied to reloaded base paths.
        max_num_load_retries, load_retry_interval_micros: TF Serving's flags (``ModelManager``).
        batching: ``serving.batching.BatchingOptions`` to batch Predict requests (gRPC and REST)
            like ``--enable_batching``; None = each request runs on its own.
    """

    def __init__(self, entries, port: int = 8500, rest_api_port: int | None = None, host: str = "127.0.0.1",
                 poll_seconds: float = 1.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_workers: int = 8,
                 allow_version_labels_for_unavailable_models: bool = False, root_dir=None, path_map=(),
                 max_num_load_retries: int = DEFAULT_MAX_NUM_LOAD_RETRIES,
                 load_retry_interval_micros: int = DEFAULT_LOAD_RETRY_INTERVAL_MICROS,
                 batching: BatchingOptions | None = None):
        self.manager = ModelManager(entries, max_num_load_retries, load_retry_interval_micros)
        self.allow_version_labels_for_unavailable_models = allow_version_labels_for_unavailable_models
        self.root_dir = root_dir
        self.path_map = list(path_map)
        self.host = host
        self.port = port
        self.rest_api_port = rest_api_port
        self.poll_seconds = poll_seconds
        self.max_message_bytes = max_message_bytes
        self.max_workers = max_workers
        self.batching = batching
        self.scheduler = None
        self._grpc = None
        self._http = None
        self._stop = threading.Event()
        self._threads = []

    @classmethod
    def from_config_file(cls, path, path_map=(), root_dir=None, allow_version_labels_for_unavailable_models: bool = False,
                         **kwargs):
        """A server for ``--model_config_file=path``; ``serving.config.ConfigError`` if TF Serving would refuse it."""
        entries = serving_config.load_model_server_config_file(path, path_map, root_dir, allow_version_labels_for_unavailable_models)
        return cls(entries, allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
                   root_dir=root_dir, path_map=path_map, **kwargs)

    def reload_config(self, model_server_config):
        """Apply a new ``ModelServerConfig``; ``ConfigError`` (nothing changed) if TF Serving would refuse it."""
        entries = serving_config.load_model_server_config(
            model_server_config, None, None, self.path_map, self.root_dir,
            available=self.manager.available_versions(),
            allow_version_labels_for_unavailable_models=self.allow_version_labels_for_unavailable_models,
            current_labels=self.manager.version_labels(),
        )
        self.manager.set_entries(entries)
        self.manager.poll()

    def run_signature(self, servable, signature_name: str, inputs: dict, output_filter=()) -> tuple[str, dict]:
        """Predict for gRPC and REST: ``serving.servables.run_signature``, through the batch scheduler if batching."""
        if self.scheduler is not None:
            return self.scheduler.run_signature(servable, signature_name, inputs, output_filter)
        return run_signature(servable, signature_name, inputs, output_filter)

    def start(self) -> "ModelServer":
        """Load the initial versions (like TF Serving, before opening ports), then serve."""
        self.manager.poll()
        if self.batching is not None:
            self.scheduler = BatchScheduler(self.batching)
        options = [
            ("grpc.max_receive_message_length", int(self.max_message_bytes)),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.manager, self.run_signature), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), self._grpc)
        bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"could not bind gRPC port {self.host}:{self.port}")
        self.port = bound
        self._grpc.start()
        LOG.info("Running gRPC ModelServer at %s:%d ...", self.host, self.port)
        if self.rest_api_port is not None:
            self._http = http.server.ThreadingHTTPServer((self.host, self.rest_api_port), make_rest_handler(self))
            self._http.daemon_threads = True
            self.rest_api_port = self._http.server_address[1]
            thread = threading.Thread(target=self._http.serve_forever, name="rest", daemon=True)
            thread.start()
            self._threads.append(thread)
            LOG.info("Exporting HTTP/REST API at %s:%d ...", self.host, self.rest_api_port)
        if self.poll_seconds and self.poll_seconds > 0:
            thread = threading.Thread(target=self._poll_loop, name="fs-poll", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.manager.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever happens
                LOG.exception("polling the model base paths failed")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = 0.5):
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        if self.scheduler is not None:
            self.scheduler.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def wait(self):
        self._grpc.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    parser.add_argument("--rest_api_port", type=int, default=None, help="REST port (omit for no REST API)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to expose)")
    parser.add_argument("--model_config_file", help="ModelServerConfig text proto (serving/models.config)")
    parser.add_argument("--model_name", help="single model name (instead of --model_config_file)")
    parser.add_argument("--model_base_path", help="single model base path (folder of numeric versions)")
    parser.add_argument("--allow_version_labels_for_unavailable_models", type=_flag_bool, nargs="?", const=True, default=False,
                        help="accept version labels on versions that are not loaded (TF Serving's flag; needed for any "
                             "label in the startup config)")
    parser.add_argument("--model_config_list_root_dir", default=None, help="absolute folder relative base_paths are joined to")
    parser.add_argument("--base_path_map", action="append", default=[], metavar="FROM=TO",
                        help="rewrite base_path prefixes of the config, e.g. /models=/srv/models (repeatable)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0, help="version polling period; <=0 disables")
    parser.add_argument("--max_num_load_retries", type=_non_negative_int, default=DEFAULT_MAX_NUM_LOAD_RETRIES,
                        help="retries of a failed version load before giving up on it (0 = one attempt)")
    parser.add_argument("--load_retry_interval_micros", type=int, default=DEFAULT_LOAD_RETRY_INTERVAL_MICROS,
                        help="wait between load retries (default 1 minute; negative = no wait)")
    parser.add_argument("--max_message_bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, help="largest gRPC request accepted")
    parser.add_argument("--grpc_max_threads", type=int, default=None,
                        help="gRPC handler threads = concurrent requests (default 8; with batching "
                             f"2 x max_batch_size, at most {MAX_BATCHING_GRPC_THREADS})")
    parser.add_argument("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False,
                        help="batch concurrent Predict requests (TF Serving's flag; see serving/batching.py)")
    parser.add_argument("--batching_parameters_file", default="",
                        help="BatchingParameters text proto (serving/batching.config); needs --enable_batching; "
                             "without it, TF Serving's defaults")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=_non_negative_int, default=0,
                        help="threads of one TensorFlow op (TF Serving's flag; 0 = TensorFlow's choice, all cores)")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=_non_negative_int, default=0,
                        help="ops run in parallel (TF Serving's flag; 0 = TensorFlow's choice)")
    parser.add_argument("--port_file", help="write the bound gRPC port (and REST port) here once serving")
    return parser


def set_tensorflow_threads(args) -> None:
    """``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism`` (0: TensorFlow's
    default); must run before TensorFlow executes anything."""
    import tensorflow as tf

    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)


def _flag_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def batching_options(args) -> BatchingOptions | None:
    """``--enable_batching`` / ``--batching_parameters_file`` as TF Serving's server.cc reads them."""
    if not args.enable_batching:
        if args.batching_parameters_file:
            raise serving_config.ConfigError("INVALID_ARGUMENT", "server_options.batching_parameters_file is set without setting "
                                             "server_options.enable_batching to true.", args.batching_parameters_file)
        return None
    if not args.batching_parameters_file:
        return BatchingOptions()
    return load_batching_options(args.batching_parameters_file)


def grpc_threads(args, batching: BatchingOptions | None) -> int:
    """gRPC handler threads: a request waiting for its batch holds one, so batching needs many
    (TF Serving recommends about 2 x max_batch_size concurrent clients to fill batches)."""
    if args.grpc_max_threads is not None:
        return args.grpc_max_threads
    if batching is None:
        return 8
    return max(8, min(2 * batching.max_batch_size, MAX_BATCHING_GRPC_THREADS))


def build_server(args) -> ModelServer:
    """The server the parsed flags describe; ``serving.config.ConfigError`` if TF Serving would refuse its config."""
    path_map = serving_config.parse_path_map(args.base_path_map)
    batching = batching_options(args)
    common = dict(port=args.port, rest_api_port=args.rest_api_port, host=args.host, poll_seconds=args.file_system_poll_wait_seconds,
                  max_message_bytes=args.max_message_bytes, max_workers=grpc_threads(args, batching), batching=batching,
                  max_num_load_retries=args.max_num_load_retries, load_retry_interval_micros=args.load_retry_interval_micros,
                  allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models)
    if args.model_config_file:
        if args.model_name or args.model_base_path:
            raise SystemExit("use either --model_config_file or --model_name/--model_base_path")
        return ModelServer.from_config_file(args.model_config_file, path_map, args.model_config_list_root_dir, **common)
    if args.model_name and args.model_base_path:
        config = serving_config.single_model_config(args.model_name, args.model_base_path)
        entries = serving_config.load_model_server_config(config, None, os.getcwd(), path_map, args.model_config_list_root_dir)
        return ModelServer(entries, root_dir=args.model_config_list_root_dir, path_map=path_map, **common)
    raise SystemExit("need --model_config_file, or --model_name and --model_base_path")


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_tensorflow_threads(args)
    try:
        server = build_server(args)
    except serving_config.ConfigError as error:
        # tensorflow_model_server's main.cc prints "Failed to start server. Error: <status>".
        print(f"Failed to start server. Error: {error.code}: {error.tf_message}", flush=True)
        print(f"  in {error}", file=sys.stderr, flush=True)
        return 1
    server.start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as handle:
            handle.write(f"{server.port} {server.rest_api_port or ''}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
