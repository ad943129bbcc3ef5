"""Versions written in two steps: failed loads are retried like TF Serving
(``--max_num_load_retries``, ``--load_retry_interval_micros``), then reported, never fatal."""

from __future__ import annotations

import collections
import pathlib
import shutil
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import config as serving_config
from serving import servables
from serving.client import FerClient
from serving.server import build_arg_parser, build_server
from tests.serving.conftest import install_version

PIXELS = np.full([2, 48, 48, 1], 128, np.uint8)


def _install_partial(source, base_path, version: int):
    """``base_path/<version>`` as a slow copy leaves it at first: the graph, no variables yet."""
    temp = pathlib.Path(base_path) / f".tmp-{version}"
    shutil.copytree(source, temp, ignore=shutil.ignore_patterns("variables"))
    return temp.rename(pathlib.Path(base_path) / str(version))


def _copy_variables(source, version_dir):
    """The slow copy finishing."""
    shutil.copytree(pathlib.Path(source) / "variables", pathlib.Path(version_dir) / "variables")


@pytest.fixture
def load_attempts(monkeypatch):
    """Counts ``load_servable`` calls per (model, version); ``on_failure[(model, version)]`` runs
    after a failed attempt with the attempt number and the version folder."""
    counts, on_failure = collections.Counter(), {}
    real = servables.load_servable

    def counting_load(name, version, path):
        counts[name, version] += 1
        try:
            return real(name, version, path)
        except Exception:
            if (name, version) in on_failure:
                on_failure[name, version](counts[name, version], path)
            raise

    monkeypatch.setattr(servables, "load_servable", counting_load)
    counts.on_failure = on_failure
    return counts


def _start(argv):
    return build_server(build_arg_parser().parse_args(["--port=0", "--file_system_poll_wait_seconds=0.05", *argv])).start()


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _state(manager, name="fer", version=1):
    _, state, code, message = manager.status(name, version)[0]
    return servables.State.Name(state), code, message


def test_version_copied_in_slowly_is_loaded_after_failed_attempts(tmp_path, tiny_models, load_attempts):
    base = tmp_path / "fer"
    install_version(tiny_models["v1"], base, 1)
    server = _start(["--model_name=fer", f"--model_base_path={base}",
                     "--max_num_load_retries=5", "--load_retry_interval_micros=100000"])
    try:
        # The variables arrive after the third failed attempt (the old server gave up there).
        load_attempts.on_failure["fer", 2] = lambda attempt, path: attempt == 3 and _copy_variables(tiny_models["v2"], path)
        _install_partial(tiny_models["v2"], base, 2)
        with FerClient(server.target, timeout=30.0) as client:
            assert client.wait_until_available("fer", version=2, timeout=30.0) == 2
            outputs, version = client.predict_raw({"images": PIXELS}, "fer", signature="predict_images")
            statuses = {row["version"]: row for row in client.status("fer")}
    finally:
        server.stop()
    assert load_attempts["fer", 2] == 4
    assert version == 2
    expected = tf.saved_model.load(str(tiny_models["v2"])).signatures["predict_images"](images=tf.constant(PIXELS))
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), rtol=1e-5, atol=1e-6)
    assert statuses[2] == {"version": 2, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
    assert statuses[1]["state"] == "END" and statuses[1]["error_code"] == "OK"  # latest{1}: unloaded once 2 is up


def test_version_never_completed_reports_its_error_and_the_rest_keeps_serving(tmp_path, tiny_models, load_attempts):
    install_version(tiny_models["v1"], tmp_path / "fer", 1)
    install_version(tiny_models["v2"], tmp_path / "other", 1)
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{\n  config {{ name: "fer" base_path: "{tmp_path / "fer"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "other" base_path: "{tmp_path / "other"}" model_platform: "tensorflow" }}\n}}\n'
    )
    server = _start([f"--model_config_file={config}", "--max_num_load_retries=2", "--load_retry_interval_micros=50000"])
    try:
        _install_partial(tiny_models["v2"], tmp_path / "fer", 2)  # after v1 is AVAILABLE: latest{1} keeps it until 2 is
        with FerClient(server.target, timeout=30.0) as client:
            _wait_for(lambda: {"version": 2, "state": "END"}.items() <= client.status("fer")[0].items())
            failed = client.status("fer", version=2)[0]
            served = client.predict_raw({"images": PIXELS}, "fer", signature="predict_images")[1]
            other = client.predict(PIXELS, "other", signature="predict_images")
            fer_status = client.status("fer", version=1)[0]
    finally:
        server.stop()
    assert load_attempts["fer", 2] == 3  # one attempt + 2 retries
    assert failed["error_code"] == "NOT_FOUND" and "variables" in failed["error_message"]
    assert served == 1 and fer_status["state"] == "AVAILABLE"  # the older version keeps serving
    assert len(other) == 2


def test_retries_wait_for_the_interval_and_stop_when_the_folder_goes(tmp_path, tiny_models, load_attempts):
    base = tmp_path / "fer"
    _install_partial(tiny_models["v1"], base, 1)
    manager = servables.ModelManager(serving_config.model_entries(serving_config.single_model_config("fer", str(base))))
    manager.poll()
    manager.poll()  # TF Serving's default: the retry is due 60 s later, not on the next poll
    assert load_attempts["fer", 1] == 1
    assert _state(manager) == ("LOADING", grpc.StatusCode.OK, "")
    shutil.rmtree(base / "1")
    manager.poll()  # the pending retries are cancelled, the last error reported
    state, code, message = _state(manager)
    assert (state, code) == ("END", grpc.StatusCode.NOT_FOUND) and "variables" in message
    assert load_attempts["fer", 1] == 1


def test_given_up_version_is_tried_again_only_once_it_comes_back(tmp_path, tiny_models, load_attempts):
    base = tmp_path / "fer"
    _install_partial(tiny_models["v1"], base, 1)
    manager = servables.ModelManager(serving_config.model_entries(serving_config.single_model_config("fer", str(base))),
                                     max_num_load_retries=2, load_retry_interval_micros=0)
    manager.poll()
    assert _state(manager) == ("LOADING", grpc.StatusCode.OK, "")  # between attempts, like TF Serving
    manager.poll()
    manager.poll()
    assert load_attempts["fer", 1] == 3 and _state(manager)[:2] == ("END", grpc.StatusCode.NOT_FOUND)
    _copy_variables(tiny_models["v1"], base / "1")
    manager.poll()  # complete now, but given up on while it stays (TF Serving keeps it in error)
    assert load_attempts["fer", 1] == 3 and _state(manager)[0] == "END"
    shutil.rmtree(base / "1")
    manager.poll()
    install_version(tiny_models["v1"], base, 1)
    manager.poll()
    assert load_attempts["fer", 1] == 4 and _state(manager) == ("AVAILABLE", grpc.StatusCode.OK, "")
    assert manager.get("fer").version == 1
