"""The deployment files in serving/ parse with TF Serving's protos and say what the docs promise."""

from __future__ import annotations

import pathlib
import re

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import config as serving_config

SERVING = pathlib.Path(__file__).resolve().parents[2] / "serving"
IMAGE_TAG = "2.21.0"


def test_models_config_parses_with_model_server_config_proto():
    config = text_format.Parse((SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = {m.name: m for m in config.model_config_list.config}
    # only what serving/models ships (see the comment in models.config for adding an ensemble)
    assert set(models) == {p.name for p in (SERVING / "models").iterdir() if p.is_dir()} == {"baseline", "mrcar", "vgg4", "vgg4_wide", "resface_ferplus"}
    for name, model in models.items():
        assert model.base_path == f"/models/{name}"
        assert model.model_platform == "tensorflow"
        assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
        assert model.model_version_policy.latest.num_versions == 1
        assert not model.version_labels  # docker-compose.yml does not allow labels at startup
    # and through serving.config (what the local server uses)
    entries = {e.name: e for e in serving_config.model_entries(config)}
    assert entries["baseline"].policy == ("latest", 1)


def test_batching_config_parses_with_batching_parameters():
    cls, is_mirror = serving_config.batching_parameters_class()
    # tensorflow-serving-api 2.21 does not ship session_bundle_config_pb2; the mirror is built
    # from the documented fields of session_bundle_config.proto.
    params = text_format.Parse((SERVING / "batching.config").read_text(), cls())
    assert params.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert params.HasField(name), name
        assert getattr(params, name).value >= (0 if name == "batch_timeout_micros" else 1), name
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(set(sizes)) and (not sizes or sizes[-1] == params.max_batch_size.value)
    serving_config.parse_batching_parameters((SERVING / "batching.config").read_text())
    # a misspelt field is refused, as tensorflow_model_server would
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sizes { value: 8 }", cls())
    with pytest.raises(ValueError, match="max_batch_size"):
        serving_config.parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 4")


def test_monitoring_config_parses_with_monitoring_config():
    cls, _ = serving_config.monitoring_config_class()
    config = text_format.Parse((SERVING / "monitoring.config").read_text(), cls())
    assert config.DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"
    with pytest.raises(text_format.ParseError):
        text_format.Parse("prometheus_config { enabled: true }", cls())


def _compose():
    text = (SERVING / "docker-compose.yml").read_text()
    try:
        import yaml  # PyYAML is not in the venv today; use it when present
    except ImportError:
        return text, None
    return text, yaml.safe_load(text)


def test_docker_compose_runs_official_image_with_configs():
    text, parsed = _compose()
    images = re.findall(r"^\s*image:\s*(\S+)", text, re.M)
    assert images == [f"tensorflow/serving:{IMAGE_TAG}", f"tensorflow/serving:{IMAGE_TAG}-gpu"]
    for port in ("8500:8500", "8501:8501"):
        assert f'"{port}"' in text
    assert re.search(r"^\s*-\s*\./models:/models(:ro)?\s*$", text, re.M)
    for flag in (
        "--model_config_file=/config/models.config",
        "--enable_batching=true",
        "--batching_parameters_file=/config/batching.config",
        "--monitoring_config_file=/config/monitoring.config",
        "--port=8500",
        "--rest_api_port=8501",
    ):
        assert re.search(rf"^\s*-\s*{re.escape(flag)}\s*$", text, re.M), flag
    for name in ("models.config", "batching.config", "monitoring.config"):
        assert f"./{name}:/config/{name}" in text
    assert re.search(r"driver:\s*nvidia", text) and re.search(r"capabilities:\s*\[gpu\]", text)
    if parsed is not None:
        services = parsed["services"]
        assert services["tfserving"]["image"].endswith(IMAGE_TAG)
        assert services["tfserving-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_readme_documents_the_image_tag():
    readme = (SERVING / "README.md").read_text()
    assert f"tensorflow/serving:{IMAGE_TAG}" in readme and "-gpu" in readme


def test_readme_says_serving_default_expects_aligned_face_crops():
    readme = " ".join((SERVING / "README.md").read_text().split())
    assert "`serving_default` expects each image to be an ALIGNED face crop" in readme
    assert "fer_keras.Recognizer" in readme and "pipelines.faces" in readme


def test_versions_layout_and_policies(tmp_path):
    for name in ("1", "7", "12"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "3").mkdir()  # no saved_model.pb (export in progress)
    (tmp_path / ".tmp-export-9").mkdir()
    (tmp_path / "tmp9").mkdir()
    assert serving_config.list_versions(tmp_path) == [1, 7, 12]
    assert serving_config.list_versions(tmp_path / "missing") == []
    assert serving_config.select_versions([1, 7, 12], ("latest", 1)) == [12]
    assert serving_config.select_versions([1, 7, 12], ("latest", 2)) == [7, 12]
    assert serving_config.select_versions([1, 7, 12], ("specific", (1, 5))) == [1]
    assert serving_config.select_versions([1, 7, 12], ("all",)) == [1, 7, 12]
    default = serving_config.parse_model_server_config(
        'model_config_list { config { name: "m" base_path: "/x" model_platform: "tensorflow" } }')
    assert serving_config.model_entries(default)[0].policy == ("latest", 1)


def test_base_path_resolution(tmp_path):
    (tmp_path / "models" / "baseline").mkdir(parents=True)
    assert serving_config.resolve_base_path("/models/baseline", tmp_path) == str(tmp_path / "models" / "baseline")
    assert serving_config.resolve_base_path("rel/m", tmp_path) == str(tmp_path / "rel" / "m")
    mapped = serving_config.resolve_base_path("/models/x", None, serving_config.parse_path_map([f"/models={tmp_path}"]))
    assert mapped == str(tmp_path / "x")
    bad = ('model_config_list { config { name: "a" base_path: "/a" model_platform: "tensorflow" } '
           'config { name: "a" base_path: "/b" model_platform: "tensorflow" } }')
    with pytest.raises(ValueError, match="Illegal to list model a multiple times in config list"):
        serving_config.model_entries(serving_config.parse_model_server_config(bad))
