"""Configs ``tensorflow_model_server`` refuses are refused by ``serving.config`` and the local
server, with TF Serving's status code and message (server_core.cc, server.cc,
file_system_storage_path_source.cc), naming the file and field."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import grpc
import pytest
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving import config as serving_config
from serving.server import ModelServer
from tests.serving.conftest import install_version

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVING = ROOT / "serving"
LABEL_MESSAGE = "Request to assign label to version {v} of model {m}, which is not currently available for inference"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _model(name="fer", base_path=None, extra=""):
    base_path = f"/models/{name}" if base_path is None else base_path
    return f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" {extra} }}'


def _write_config(root: pathlib.Path, *models: str) -> pathlib.Path:
    path = root / "models.config"
    path.write_text("model_config_list {\n  " + "\n  ".join(models) + "\n}\n")
    return path


@pytest.fixture()
def repo(tmp_path, tiny_models):
    """``models/fer/1`` (a tiny SavedModel) next to the config that tests write."""
    install_version(tiny_models["v1"], tmp_path / "models" / "fer", 1)
    return tmp_path


def _start(config_path, **kwargs):
    return ModelServer.from_config_file(config_path, port=0, poll_seconds=0, **kwargs).start()


# --------------------------------------------------------------------------------------------
# the shipped configs


def test_shipped_configs_pass_the_tf_serving_checks():
    entries = serving_config.check_model_server_config_file(SERVING / "models.config")
    assert {e.name: e.policy for e in entries} == {"baseline": ("latest", 1), "mrcar": ("latest", 1), "vgg4": ("latest", 1), "vgg4_wide": ("latest", 1),
                                                       "resface_ferplus": ("latest", 1)}
    assert serving_config.main(["--check", str(SERVING)]) == 0
    # exactly what CI runs (no TensorFlow import needed)
    run = subprocess.run([sys.executable, "-m", "serving.config", "--check", "serving/models.config"],
                         cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "OK serving/models.config" in run.stdout


def test_compose_flags_match_the_shipped_labels():
    compose = (SERVING / "docker-compose.yml").read_text()
    config = serving_config.read_model_server_config(SERVING / "models.config")
    has_labels = any(model.version_labels for model in config.model_config_list.config)
    flag = re.search(r"^\s*-\s*--allow_version_labels_for_unavailable_models(=true)?\s*$", compose, re.M)
    assert has_labels == bool(flag)


def test_the_previous_ensemble_entry_is_refused(tmp_path):
    """The config this project used to ship: a label on a version that does not exist."""
    for name in ("baseline", "mrcar"):
        (tmp_path / "models" / name / "1").mkdir(parents=True)
        (tmp_path / "models" / name / "1" / "saved_model.pb").write_bytes(b"")
    path = _write_config(tmp_path, _model("baseline"), _model("mrcar"), _model(
        "ensemble", extra='model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 }'))
    with pytest.raises(serving_config.ConfigError) as error:
        serving_config.check_model_server_config_file(path)
    assert error.value.tf_message == LABEL_MESSAGE.format(v=1, m="ensemble")
    assert str(path) in str(error.value) and "config[2].version_labels['stable']" in str(error.value)
    # with the flag the missing base path is next: the file-system poll's message
    with pytest.raises(serving_config.ConfigError, match="Could not find base path /models/ensemble for servable ensemble"):
        serving_config.check_model_server_config_file(path, allow_version_labels_for_unavailable_models=True)


# --------------------------------------------------------------------------------------------
# version labels


def test_label_on_unavailable_version_refused_at_startup(repo):
    path = _write_config(repo, _model(extra='version_labels { key: "stable" value: 2 }'))
    with pytest.raises(serving_config.ConfigError) as error:
        ModelServer.from_config_file(path, port=0)
    assert (error.value.code, error.value.tf_message) == ("FAILED_PRECONDITION", LABEL_MESSAGE.format(v=2, m="fer"))
    assert str(error.value).startswith(f"{path}: model_config_list.config[0].version_labels['stable']: FAILED_PRECONDITION")


def test_label_accepted_with_allow_flag(repo, tiny_models):
    path = _write_config(repo, _model(extra='version_labels { key: "stable" value: 2 }'))
    server = _start(path, allow_version_labels_for_unavailable_models=True)
    try:
        assert server.manager.version_labels() == {"fer": {"stable": 2}}
        assert server.manager.get("fer").version == 1
        install_version(tiny_models["v2"], repo / "models" / "fer", 2)
        server.manager.poll()
        assert server.manager.get("fer", label="stable").version == 2
    finally:
        server.stop()


def test_cli_refuses_label_with_tf_serving_message_and_accepts_the_flag(repo):
    path = _write_config(repo, _model(extra='version_labels { key: "stable" value: 2 }'))
    command = [sys.executable, "-m", "serving.server", f"--model_config_file={path}", "--port=0"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 1
    assert f"Failed to start server. Error: FAILED_PRECONDITION: {LABEL_MESSAGE.format(v=2, m='fer')}" in run.stdout
    assert str(path) in run.stderr
    check = [sys.executable, "-m", "serving.config", "--check", str(path)]
    assert subprocess.run(check, cwd=ROOT, capture_output=True, env=ENV, timeout=120).returncode == 1
    allowed = subprocess.run(check + ["--allow_version_labels_for_unavailable_models"], cwd=ROOT, capture_output=True,
                             text=True, env=ENV, timeout=120)
    assert allowed.returncode == 0, allowed.stderr


def _label_config(base, **labels):
    extra = " ".join('version_labels { key: "%s" value: %d }' % item for item in labels.items())
    return f"model_config_list {{ {_model(base_path=base, extra=extra)} }}"


def _reload(server, text):
    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(serving_config.parse_model_server_config(text))
    with grpc.insecure_channel(server.target) as channel:
        return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60).status


@pytest.mark.parametrize("allow", [False, True])
def test_reload_labels_must_name_loaded_versions(repo, allow):
    base = str(repo / "models" / "fer")
    server = _start(_write_config(repo, _model(base_path=base)), allow_version_labels_for_unavailable_models=allow)
    try:
        status = _reload(server, _label_config(base, stable=1))
        assert status.error_code == 0 and server.manager.version_labels() == {"fer": {"stable": 1}}
        status = _reload(server, _label_config(base, stable=1, canary=7))
        if allow:  # a new label may name a version that is not loaded yet
            assert status.error_code == 0
        else:
            assert status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
            assert status.error_message == LABEL_MESSAGE.format(v=7, m="fer")
            assert server.manager.version_labels() == {"fer": {"stable": 1}}  # unchanged
        assert server.manager.version_labels()["fer"]["stable"] == 1
        # moving an existing label to a version that is not loaded is refused even with the flag
        status = _reload(server, _label_config(base, stable=7))
        assert status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert status.error_message == LABEL_MESSAGE.format(v=7, m="fer")
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# other configs TF Serving refuses


def test_duplicate_model_names_refused(repo):
    path = _write_config(repo, _model(), _model())
    with pytest.raises(serving_config.ConfigError) as error:
        ModelServer.from_config_file(path, port=0)
    assert (error.value.code, error.value.tf_message) == ("INVALID_ARGUMENT", "Illegal to list model fer multiple times in config list")
    assert str(error.value).startswith(f"{path}: model_config_list.config[1].name: ")
    server = _start(_write_config(repo, _model(base_path=str(repo / "models" / "fer"))))
    try:
        status = _reload(server, f"model_config_list {{ {_model(base_path='/a')} {_model(base_path='/b')} }}")
        assert (status.error_code, status.error_message) == (grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                             "Illegal to list model fer multiple times in config list")
    finally:
        server.stop()


@pytest.mark.parametrize("base_path", ["", "models/fer"])
def test_missing_or_relative_base_path_refused(repo, base_path):
    model = 'config { name: "fer" model_platform: "tensorflow" }' if not base_path else _model(base_path=base_path)
    path = _write_config(repo, model)
    with pytest.raises(serving_config.ConfigError) as error:
        ModelServer.from_config_file(path, port=0)
    assert error.value.tf_message == f"Expected model fer to have an absolute path or URI; got base_path()={base_path}"
    assert f"{path}: model_config_list.config[0].base_path: INVALID_ARGUMENT" in str(error.value)
    if base_path:  # TF Serving joins relative base paths to --model_config_list_root_dir
        entries = serving_config.check_model_server_config_file(path, root_dir=str(repo))
        assert entries[0].base_path == str(repo / "models" / "fer")


def test_missing_base_path_folder_and_platform_refused(repo):
    path = _write_config(repo, _model(), _model("ghost"))
    with pytest.raises(serving_config.ConfigError, match=r"config\[1\]\.base_path: NOT_FOUND: Could not find base path "
                                                         r"/models/ghost for servable ghost"):
        ModelServer.from_config_file(path, port=0)
    path = _write_config(repo, 'config { name: "fer" base_path: "/models/fer" }')
    with pytest.raises(serving_config.ConfigError, match=r"config\[0\]\.model_platform: INVALID_ARGUMENT: Illegal setting "
                                                         r"neither ModelServerConfig::model_type \(deprecated\) nor"):
        ModelServer.from_config_file(path, port=0)


def test_no_served_version_fails_the_check(repo):
    path = _write_config(repo, _model(extra="model_version_policy { specific { versions: 3 } }"))
    assert ModelServer.from_config_file(path, port=0) is not None  # the local server waits, like TF Serving
    with pytest.raises(serving_config.ConfigError, match="No versions of servable fer found under base path /models/fer"):
        serving_config.check_model_server_config_file(path)


def test_malformed_text_refused_naming_the_file(repo, capsys):
    path = repo / "models.config"
    path.write_text('model_config_list {\n  config { name: "fer" base_pth: "/models/fer" }\n}\n')
    with pytest.raises(serving_config.ConfigError) as error:
        ModelServer.from_config_file(path, port=0)
    assert (error.value.code, error.value.tf_message) == ("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'")
    assert str(error.value).startswith(f"{path}: INVALID_ARGUMENT: Invalid protobuf file: '{path}' (2:")
    assert 'has no field named "base_pth"' in str(error.value)
    assert serving_config.main(["--check", str(path)]) == 1
    assert f"error: {path}: INVALID_ARGUMENT: Invalid protobuf file" in capsys.readouterr().err
    batching = repo / "batching.config"
    batching.write_text("max_batch_size { value: 8 ")
    with pytest.raises(serving_config.ConfigError, match=f"Invalid protobuf file: '{batching}'"):
        serving_config.check_file(batching)
