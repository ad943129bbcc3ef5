"""Client of a TF Serving (or ``serving.server``) deployment of fer_keras models.

Library::

    from serving.client import FerClient
    with FerClient("localhost:8500", timeout=10.0, retries=3) as client:
        for row in client.predict(["face.png"], model="baseline"):
            print(row["label"], row["class_id"], row["probabilities"])
        client.metadata("baseline"); client.status("baseline")

CLI::

    python -m serving.client --server=localhost:8500 --model=baseline face1.png face2.jpg [--json]
    python -m serving.client --rest=http://localhost:8501 --model=baseline face.png
    python -m serving.client --server=localhost:8500 --model=baseline --status | --metadata

Errors are raised as ``FerServingError`` carrying the gRPC status code name and the server's
message. Only UNAVAILABLE (server not up yet, restarting, overloaded queue) is retried, with
exponential backoff; every attempt has its own deadline (``timeout`` seconds). With
``predict(..., errors="return")`` an image the server rejects (or a file that cannot be read) gets
its own ``FerServingError`` naming it, in place of its row, and the other images are still
classified; the CLI prints one line per such file on stderr and exits with 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np

DEFAULT_SIGNATURE = "serving_default"
_IMAGE_ERRORS = {"INVALID_ARGUMENT", "HTTP_400"}  # answers about the request's content, i.e. its images
_LAZY = {}


def _apis():
    """The tensorflow-serving-api modules and ``tf.make_tensor_proto``/``make_ndarray`` (imported lazily)."""
    if not _LAZY:
        import tensorflow as tf
        from tensorflow_serving.apis import (
            get_model_metadata_pb2,
            get_model_status_pb2,
            model_service_pb2_grpc,
            predict_pb2,
            prediction_service_pb2_grpc,
        )

        _LAZY.update(
            tf=tf,
            get_model_metadata_pb2=get_model_metadata_pb2,
            get_model_status_pb2=get_model_status_pb2,
            model_service_pb2_grpc=model_service_pb2_grpc,
            predict_pb2=predict_pb2,
            prediction_service_pb2_grpc=prediction_service_pb2_grpc,
        )
    return _LAZY


class FerServingError(RuntimeError):
    """A failed serving call. ``code``: ``grpc.StatusCode`` (None for transport-less REST errors);
    ``code_name``: e.g. "INVALID_ARGUMENT"; ``message``: the server's message; ``image``: the file
    (or "images[i]") the error is about, None when it is about the whole call."""

    def __init__(self, code, message: str, code_name: str | None = None, attempts: int = 1, image: str | None = None):
        self.code = code
        self.code_name = code_name or (code.name if code is not None else "UNKNOWN")
        self.message = message
        self.attempts = attempts
        self.image = image
        super().__init__((f"{image}: " if image is not None else "") + f"{self.code_name}: {message}")


def _image_name(item, index: int) -> str:
    return f"images[{index}]" if isinstance(item, (bytes, bytearray, memoryview, np.ndarray)) else os.fspath(item)


def _read_image(item) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    path = os.fspath(item)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise FerServingError(None, f"cannot read file: {error.strerror}", code_name="CLIENT_ERROR", image=path) from None


def _classify_each(classify, items: list) -> list:
    """``[(index, row or FerServingError)]`` for ``items`` = ``[(index, name, image)]``: one call
    for the batch; a batch the server rejects for its content is halved until each image that
    fails alone has its own error (a few extra calls per bad image, none when all are good)."""
    if not items:
        return []
    try:
        return [(index, row) for (index, _, _), row in zip(items, classify([image for _, _, image in items]))]
    except FerServingError as error:
        if error.code_name not in _IMAGE_ERRORS:
            raise
        if len(items) == 1:
            index, name, _ = items[0]
            return [(index, FerServingError(error.code, error.message, error.code_name, error.attempts, image=name))]
        half = len(items) // 2
        return _classify_each(classify, items[:half]) + _classify_each(classify, items[half:])


def _classify(classify, images, errors: str) -> list:
    """``classify`` (encoded images or array rows -> rows) over ``images``, see ``FerClient.predict``."""
    if errors not in ("raise", "return"):
        raise ValueError(f'errors must be "raise" or "return". Received: errors={errors!r}')
    if isinstance(images, (str, bytes, os.PathLike)):
        images = [images]
    if errors == "raise":
        return classify(images if isinstance(images, np.ndarray) else [_read_image(item) for item in images])
    results, items = [None] * len(images), []
    for index, item in enumerate(images):
        try:
            items.append((index, _image_name(item, index), item if isinstance(item, np.ndarray) else _read_image(item)))
        except FerServingError as error:
            results[index] = error
    for index, result in _classify_each(classify, items):
        results[index] = result
    return results


def _rows(outputs: dict) -> list[dict]:
    """Per-image dicts from the ``probabilities``/``class_ids``/``labels`` outputs."""
    probabilities = np.asarray(outputs["probabilities"], dtype=np.float32)
    if "class_ids" in outputs:
        class_ids = np.asarray(outputs["class_ids"]).astype(np.int64)
    else:
        class_ids = probabilities.argmax(axis=1)
    labels = outputs.get("labels")
    rows = []
    for index in range(len(probabilities)):
        label = labels[index] if labels is not None else str(int(class_ids[index]))
        if isinstance(label, (bytes, np.bytes_)):
            label = bytes(label).decode("utf-8")
        rows.append({"label": str(label), "class_id": int(class_ids[index]), "probabilities": probabilities[index].tolist()})
    return rows


class FerClient:
    """gRPC client of ``tensorflow.serving.PredictionService``/``ModelService``.

    Args:
        target: "host:port" of the gRPC endpoint.
        timeout: deadline of each call in seconds.
        retries: extra attempts after an UNAVAILABLE answer (0 = no retry).
        backoff: first retry delay in seconds, doubled per attempt (capped by ``max_backoff``).
        max_message_bytes: largest request/response message the channel accepts.
    """

    def __init__(self, target: str, timeout: float = 10.0, retries: int = 3, backoff: float = 0.25,
                 max_backoff: float = 4.0, max_message_bytes: int = 64 * 1024 * 1024, channel=None):
        apis = _apis()
        self.target = target
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._own_channel = channel is None
        self.channel = channel or grpc.insecure_channel(
            target,
            options=[("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)],
        )
        self.prediction_stub = apis["prediction_service_pb2_grpc"].PredictionServiceStub(self.channel)
        self.model_stub = apis["model_service_pb2_grpc"].ModelServiceStub(self.channel)

    def close(self):
        if self._own_channel:
            self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------------------------------

    def _call(self, method, request, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
                details = (error.details() if hasattr(error, "details") else str(error)) or ""
                if code == grpc.StatusCode.UNAVAILABLE and attempt <= self.retries:
                    time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    details = f"no answer from {self.target} within {timeout:g} s ({details or 'Deadline Exceeded'})"
                elif code == grpc.StatusCode.UNAVAILABLE:
                    details = f"{self.target} unavailable after {attempt} attempt(s): {details}"
                raise FerServingError(code, details, attempts=attempt) from None

    @staticmethod
    def _model_spec(spec, model: str, signature: str | None = None, version=None, version_label=None):
        spec.name = model
        if signature:
            spec.signature_name = signature
        if version is not None:
            spec.version.value = int(version)
        elif version_label:
            spec.version_label = version_label

    def predict_raw(self, inputs: dict, model: str, signature: str = DEFAULT_SIGNATURE, version=None,
                    version_label=None, output_filter=(), timeout=None):
        """Predict with ``{input name: np.ndarray or TensorProto}``; returns ``(outputs dict of
        np.ndarray, served version)``."""
        apis = _apis()
        request = apis["predict_pb2"].PredictRequest()
        self._model_spec(request.model_spec, model, signature, version, version_label)
        for name, value in inputs.items():
            if hasattr(value, "SerializeToString") and hasattr(value, "tensor_shape"):
                request.inputs[name].CopyFrom(value)
            else:
                request.inputs[name].CopyFrom(apis["tf"].make_tensor_proto(value))
        request.output_filter.extend(output_filter)
        response = self._call(self.prediction_stub.Predict, request, timeout)
        outputs = {name: apis["tf"].make_ndarray(proto) for name, proto in response.outputs.items()}
        return outputs, int(response.model_spec.version.value)

    def predict(self, images, model: str, signature: str = DEFAULT_SIGNATURE, version=None, version_label=None, timeout=None,
                errors: str = "raise") -> list:
        """Classify faces: ``images`` is a list of paths / encoded JPEG-PNG bytes (string input),
        or a uint8 array ``[N, H, W, C]`` for the ``predict_images`` signature.
        Returns one ``{"label", "class_id", "probabilities"}`` dict per image. ``errors="raise"``
        raises the call's ``FerServingError``; ``errors="return"`` puts, for each image that fails
        (unreadable file, not an image, ...), its ``FerServingError`` (``.image`` names it) in
        place of its dict, and only raises errors about the whole call (unknown model, no server)."""

        def classify(batch):
            arrays = isinstance(batch, np.ndarray) or (len(batch) and isinstance(batch[0], np.ndarray))
            tensor = np.asarray(batch) if arrays else np.array(batch, dtype=object)  # uint8 rows, or encoded images
            outputs, _ = self.predict_raw({"images": tensor}, model, signature, version, version_label, timeout=timeout)
            if "probabilities" not in outputs:
                raise FerServingError(None, f"signature {signature!r} of {model!r} has no 'probabilities' output (got {sorted(outputs)})",
                                      code_name="CLIENT_ERROR")
            return _rows(outputs)

        return _classify(classify, images, errors)

    def metadata(self, model: str, version=None, timeout=None) -> dict:
        """``{"model", "version", "signatures": {name: {"inputs": {...}, "outputs": {...}}}}``."""
        apis = _apis()
        request = apis["get_model_metadata_pb2"].GetModelMetadataRequest()
        self._model_spec(request.model_spec, model, version=version)
        request.metadata_field.append("signature_def")
        response = self._call(self.prediction_stub.GetModelMetadata, request, timeout)
        signature_map = apis["get_model_metadata_pb2"].SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        tf = apis["tf"]

        def tensors(infos):
            return {
                key: {
                    "dtype": tf.as_dtype(info.dtype).name,
                    "shape": None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim],
                }
                for key, info in infos.items()
            }

        signatures = {
            name: {"method_name": sig.method_name, "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
            for name, sig in signature_map.signature_def.items()
            if not name.startswith("__")
        }
        return {"model": response.model_spec.name, "version": int(response.model_spec.version.value), "signatures": signatures}

    def status(self, model: str, version=None, timeout=None) -> list[dict]:
        """``[{"version", "state", "error_code", "error_message"}]`` newest first."""
        apis = _apis()
        module = apis["get_model_status_pb2"]
        request = module.GetModelStatusRequest()
        self._model_spec(request.model_spec, model, version=version)
        response = self._call(self.model_stub.GetModelStatus, request, timeout)
        codes = {code.value[0]: code.name for code in grpc.StatusCode}
        return [
            {
                "version": int(status.version),
                "state": module.ModelVersionStatus.State.Name(status.state),
                "error_code": codes.get(status.status.error_code, str(status.status.error_code)),
                "error_message": status.status.error_message,
            }
            for status in response.model_version_status
        ]

    def wait_until_available(self, model: str, version=None, timeout: float = 60.0, interval: float = 0.2) -> int:
        """Poll ``status`` until a (the) version is AVAILABLE; returns that version."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                for row in self.status(model, version, timeout=min(self.timeout, 5.0)):
                    if row["state"] == "AVAILABLE":
                        return row["version"]
            except FerServingError as error:
                last = error
            time.sleep(interval)
        raise FerServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{model} version {version or 'any'} not AVAILABLE within {timeout:g} s"
                              + (f" (last error {last})" if last else ""))


def predict_rest(url: str, images, model: str, signature: str = DEFAULT_SIGNATURE, version=None, timeout: float = 10.0,
                 errors: str = "raise") -> list:
    """Classify faces through TF Serving's REST API (``POST /v1/models/<model>[/versions/<v>]:predict``,
    ``{"instances": [{"b64": ...}]}``). ``url``: e.g. "http://localhost:8501"; ``errors`` as in
    ``FerClient.predict``."""
    return _classify(lambda batch: _predict_rest_batch(url, batch, model, signature, version, timeout), images, errors)


def _predict_rest_batch(url: str, images: list, model: str, signature: str, version, timeout: float) -> list[dict]:
    """One ``:predict`` call with encoded images; rows as ``_rows``."""
    body = {"instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images]}
    if signature and signature != DEFAULT_SIGNATURE:
        body["signature_name"] = signature
    path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "") + ":predict"
    request = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            payload = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read()).get("error", error.reason)
        except (ValueError, AttributeError):
            message = str(error.reason)
        raise FerServingError(None, message, code_name=f"HTTP_{error.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise FerServingError(None, f"{url} unreachable: {getattr(error, 'reason', error)}", code_name="UNAVAILABLE") from None
    predictions = payload["predictions"]
    columns = {key: [row[key] for row in predictions] for key in predictions[0]} if predictions else {"probabilities": np.zeros((0, 0))}
    return _rows(columns)


# --------------------------------------------------------------------------------------------
# CLI


def _table(paths, rows) -> str:
    lines = [f"{'image':<40} {'label':<10} {'class':>5} {'p':>6}"]
    for path, row in zip(paths, rows):
        name = os.path.basename(str(path)) if not isinstance(path, bytes) else "<bytes>"
        lines.append(f"{name[:40]:<40} {row['label']:<10} {row['class_id']:>5} {max(row['probabilities']):>6.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.client", description="Classify faces with a TF Serving deployment.")
    parser.add_argument("images", nargs="*", help="PNG/JPEG face images")
    parser.add_argument("--server", default="localhost:8500", help="gRPC host:port")
    parser.add_argument("--rest", help="REST base URL (e.g. http://localhost:8501) instead of gRPC")
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE)
    parser.add_argument("--version", type=int)
    parser.add_argument("--version_label")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--status", action="store_true", help="print the model's version status")
    parser.add_argument("--metadata", action="store_true", help="print the model's signatures")
    args = parser.parse_args(argv)
    try:
        if args.status or args.metadata:
            with FerClient(args.server, args.timeout, args.retries) as client:
                result = client.status(args.model, args.version) if args.status else client.metadata(args.model, args.version)
            print(json.dumps(result, indent=2))
            return 0
        if not args.images:
            parser.error("give image files (or --status / --metadata)")
        if args.rest:
            results = predict_rest(args.rest, args.images, args.model, args.signature, args.version, args.timeout, errors="return")
        else:
            with FerClient(args.server, args.timeout, args.retries) as client:
                results = client.predict(args.images, args.model, args.signature, args.version, args.version_label, errors="return")
    except FerServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    failed = [result for result in results if isinstance(result, FerServingError)]
    for error in failed:
        print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
    done = [(path, row) for path, row in zip(args.images, results) if not isinstance(row, FerServingError)]
    if args.json:
        print(json.dumps([{"image": str(path), **row} for path, row in done], indent=2))
    elif done:
        print(_table(*zip(*done)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
