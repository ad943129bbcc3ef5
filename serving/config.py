"""TF Serving configuration files: parse, check and apply them the way ``tensorflow_model_server`` does.

* ``models.config``: a ``tensorflow.serving.ModelServerConfig`` text proto
  (``tensorflow_serving.config.model_server_config_pb2``), one ``config {}`` per model with
  ``name``, ``base_path`` and ``model_version_policy`` (``latest``/``specific``/``all``; default
  ``latest { num_versions: 1 }`` as in TF Serving) and optional ``version_labels``.
* ``batching.config``: a ``tensorflow.serving.BatchingParameters`` text proto
  (``tensorflow_serving/servables/tensorflow/session_bundle_config.proto``).
* ``monitoring.config``: a ``tensorflow.serving.MonitoringConfig`` text proto
  (``tensorflow_serving/config/monitoring_config.proto``).

The ``tensorflow-serving-api`` pip package (2.21) ships ``model_server_config_pb2`` but neither
``session_bundle_config_pb2`` nor ``monitoring_config_pb2``; for those two this module uses the
real module when importable, else builds an equivalent message from the documented field names,
numbers and types, so ``google.protobuf.text_format`` rejects unknown fields exactly like the server.

A model's versions are the all-digit sub-directories of ``base_path`` holding a
``saved_model.pb``; anything else (e.g. an exporter's temporary directory) is ignored.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers google/protobuf/wrappers.proto)
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_POLICY = ("latest", 1)


# --------------------------------------------------------------------------------------------
# models.config


def parse_model_server_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """Parse a ``ModelServerConfig`` text proto; ``text_format.ParseError`` on a bad file."""
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def read_model_server_config(path) -> model_server_config_pb2.ModelServerConfig:
    with open(path, encoding="utf-8") as handle:
        return parse_model_server_config(handle.read())


def version_policy(model_config) -> tuple:
    """``("latest", n)``, ``("specific", (v, ...))`` or ``("all",)`` of a ``ModelConfig``."""
    policy = model_config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "specific":
        if not policy.specific.versions:
            raise ValueError(f"model {model_config.name!r}: specific version policy lists no versions")
        return ("specific", tuple(sorted(int(v) for v in policy.specific.versions)))
    if which == "all":
        return ("all",)
    if which == "latest":
        return ("latest", max(1, int(policy.latest.num_versions or 1)))
    return DEFAULT_POLICY


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One served model: where its versions live and which ones to serve."""

    name: str
    base_path: str
    policy: tuple = DEFAULT_POLICY
    version_labels: dict = dataclasses.field(default_factory=dict)


def model_entries(config: model_server_config_pb2.ModelServerConfig, config_dir=None, path_map=()) -> list[ModelEntry]:
    """The models of a ``ModelServerConfig`` with base paths resolved (see ``resolve_base_path``).

    Raises ValueError for a missing name/base_path, a duplicate name or a non-tensorflow platform.
    """
    which = config.WhichOneof("config")
    if which == "custom_model_config":
        raise ValueError("custom_model_config is not supported; use model_config_list")
    entries, seen = [], set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ValueError("a model config has no name")
        if not model.base_path:
            raise ValueError(f"model {model.name!r} has no base_path")
        if model.name in seen:
            raise ValueError(f"model {model.name!r} is configured twice")
        if model.model_platform and model.model_platform != "tensorflow":
            raise ValueError(f"model {model.name!r}: platform {model.model_platform!r} is not supported (only 'tensorflow')")
        seen.add(model.name)
        entries.append(
            ModelEntry(
                name=model.name,
                base_path=resolve_base_path(model.base_path, config_dir, path_map),
                policy=version_policy(model),
                version_labels={str(k): int(v) for k, v in model.version_labels.items()},
            )
        )
    return entries


def single_model_config(name: str, base_path: str, num_versions: int = 1) -> model_server_config_pb2.ModelServerConfig:
    """The config ``--model_name/--model_base_path`` stand for (latest N versions)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(base_path)
    model.model_platform = "tensorflow"
    model.model_version_policy.latest.num_versions = num_versions
    return config


def parse_path_map(items) -> list[tuple[str, str]]:
    """``["/models=serving/models", ...]`` -> ``[("/models", "serving/models"), ...]``."""
    pairs = []
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"path map {item!r} is not FROM=TO")
        source, target = item.split("=", 1)
        pairs.append((source.rstrip("/") or "/", target))
    return pairs


def resolve_base_path(base_path: str, config_dir=None, path_map=()) -> str:
    """Where a ``base_path`` is on this machine.

    ``path_map`` prefixes (``FROM=TO``) are applied first; a relative path is taken from the
    config file's folder; a Docker path ``/models/<name>`` that does not exist here falls back
    to ``<config dir>/models/<name>`` (so ``serving/models.config`` works locally unchanged).
    """
    path = str(base_path)
    for source, target in path_map:
        if path == source or path.startswith(source + "/"):
            path = target + path[len(source):]
            break
    if not os.path.isabs(path) and config_dir is not None:
        path = os.path.join(str(config_dir), path)
    if not os.path.exists(path) and config_dir is not None and path.startswith("/models/"):
        local = os.path.join(str(config_dir), path.lstrip("/"))
        if os.path.exists(os.path.dirname(local)):
            path = local
    return os.path.abspath(path)


def list_versions(base_path) -> list[int]:
    """All-digit sub-directories of ``base_path`` holding a SavedModel, ascending."""
    try:
        names = os.listdir(base_path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    versions = []
    for name in names:
        if not name.isdigit():
            continue
        folder = os.path.join(base_path, name)
        if os.path.isfile(os.path.join(folder, "saved_model.pb")) or os.path.isfile(os.path.join(folder, "saved_model.pbtxt")):
            versions.append(int(name))
    return sorted(versions)


def select_versions(available, policy) -> list[int]:
    """The versions a policy serves out of ``available`` (ascending)."""
    available = sorted(set(int(v) for v in available))
    kind = policy[0]
    if kind == "latest":
        return available[-int(policy[1]):] if available else []
    if kind == "specific":
        wanted = set(policy[1])
        return [v for v in available if v in wanted]
    if kind == "all":
        return available
    raise ValueError(f"unknown version policy {policy!r}")


# --------------------------------------------------------------------------------------------
# batching.config / monitoring.config

# The documented protos, used when the pip package does not ship their modules.
_BATCHING_FIELDS = [
    # (name, number, label, type, type_name)
    ("max_batch_size", 1, "optional", "message", ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, "optional", "message", ".google.protobuf.Int64Value"),
    ("thread_pool_name", 3, "optional", "message", ".google.protobuf.StringValue"),
    ("num_batch_threads", 4, "optional", "message", ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 5, "optional", "message", ".google.protobuf.Int64Value"),
    ("allowed_batch_sizes", 6, "repeated", "int64", None),
    ("pad_variable_length_inputs", 7, "optional", "bool", None),
]
_PROTO_TYPES = {
    "message": descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}
_LABELS = {
    "optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
}
_MIRRORS: dict = {}


def _add_fields(message_proto, fields):
    for name, number, label, kind, type_name in fields:
        field = message_proto.field.add(name=name, number=number, label=_LABELS[label], type=_PROTO_TYPES[kind])
        if type_name:
            field.type_name = type_name


def _mirror_messages():
    """``BatchingParameters`` and ``MonitoringConfig`` classes built from the documented fields."""
    if _MIRRORS:
        return _MIRRORS
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="fer_keras_serving_mirror/tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    _add_fields(file_proto.message_type.add(name="BatchingParameters"), _BATCHING_FIELDS)
    _add_fields(file_proto.message_type.add(name="PrometheusConfig"), [("enable", 1, "optional", "bool", None), ("path", 2, "optional", "string", None)])
    _add_fields(
        file_proto.message_type.add(name="MonitoringConfig"),
        [("prometheus_config", 1, "optional", "message", ".tensorflow.serving.PrometheusConfig")],
    )
    pool.Add(file_proto)
    for name in ("BatchingParameters", "MonitoringConfig"):
        _MIRRORS[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
    return _MIRRORS


def batching_parameters_class():
    """``(class, is_mirror)``: the real ``session_bundle_config_pb2.BatchingParameters`` if importable."""
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters, False
    except ImportError:
        return _mirror_messages()["BatchingParameters"], True


def monitoring_config_class():
    """``(class, is_mirror)``: the real ``monitoring_config_pb2.MonitoringConfig`` if importable."""
    try:
        from tensorflow_serving.config import monitoring_config_pb2

        return monitoring_config_pb2.MonitoringConfig, False
    except ImportError:
        return _mirror_messages()["MonitoringConfig"], True


def parse_batching_parameters(text: str):
    """Parse ``batching.config``; checks the values TF Serving would refuse."""
    cls, _ = batching_parameters_class()
    params = text_format.Parse(text, cls())
    max_batch = params.max_batch_size.value if params.HasField("max_batch_size") else None
    sizes = list(params.allowed_batch_sizes)
    if sizes:
        if sizes != sorted(set(sizes)) or sizes[0] <= 0:
            raise ValueError(f"allowed_batch_sizes must be positive and strictly increasing, got {sizes}")
        if max_batch is not None and sizes[-1] != max_batch:
            raise ValueError(f"the last allowed_batch_sizes entry ({sizes[-1]}) must equal max_batch_size ({max_batch})")
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if params.HasField(name) and getattr(params, name).value <= 0:
            raise ValueError(f"{name} must be positive")
    return params


def parse_monitoring_config(text: str):
    cls, _ = monitoring_config_class()
    config = text_format.Parse(text, cls())
    if config.prometheus_config.enable and config.prometheus_config.path and not config.prometheus_config.path.startswith("/"):
        raise ValueError("prometheus_config.path must start with '/'")
    return config


def check_files(folder) -> dict:
    """Parse the three config files of ``folder`` (the ``serving/`` directory); raises on errors."""
    folder = pathlib.Path(folder)
    models = read_model_server_config(folder / "models.config")
    return {
        "models": model_entries(models, folder),
        "batching": parse_batching_parameters((folder / "batching.config").read_text()),
        "monitoring": parse_monitoring_config((folder / "monitoring.config").read_text()),
    }


if __name__ == "__main__":  # python -m serving.config [serving/]
    import sys

    result = check_files(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent)
    for entry in result["models"]:
        print(f"model {entry.name}: {entry.base_path} policy={entry.policy} labels={entry.version_labels}")
    print("batching:", text_format.MessageToString(result["batching"], as_one_line=True))
    print("monitoring:", text_format.MessageToString(result["monitoring"], as_one_line=True))
