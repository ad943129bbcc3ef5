"""TF Serving configuration files: parse and check them the way ``tensorflow_model_server`` does.

* ``models.config``: a ``tensorflow.serving.ModelServerConfig`` text proto, parsed with the class
  ``tensorflow-serving-api`` ships (``tensorflow_serving.config.model_server_config_pb2``; its
  ``model_version_policy`` is ``file_system_storage_path_source_pb2``'s
  ``FileSystemStoragePathSourceConfig.ServableVersionPolicy``), one ``config {}`` per model with
  ``name``, ``base_path``, ``model_platform``, ``model_version_policy`` (default
  ``latest { num_versions: 1 }``) and optional ``version_labels``.
* ``batching.config``: a ``tensorflow.serving.BatchingParameters`` text proto
  (``tensorflow_serving/servables/tensorflow/session_bundle_config.proto``).
* ``monitoring.config``: a ``tensorflow.serving.MonitoringConfig`` text proto
  (``tensorflow_serving/config/monitoring_config.proto``).

The ``tensorflow-serving-api`` pip package (2.21) ships neither ``session_bundle_config_pb2`` nor
``monitoring_config_pb2``. For those two this module uses the real module when importable, else a
minimal fallback message built from the documented field names, numbers and types of the fields
this project uses (so ``text_format`` refuses unknown or misspelt fields like the server; a valid
field this fallback does not list is refused too: add it to ``_BATCHING_FIELDS``).

Checks refused by TF Serving carry TF Serving's own status code and message (see ``ConfigError``):

* malformed text: ``INVALID_ARGUMENT: Invalid protobuf file: '<file>'`` (``server.cc``
  ``ParseProtoTextFile``);
* a name listed twice: ``Illegal to list model <name> multiple times in config list``, a missing or
  relative ``base_path``: ``Expected model <name> to have an absolute path or URI; got
  base_path()=<path>`` (``server_core.cc`` ``ValidateModelConfigList``);
* no/unknown platform (``server_core.cc`` ``GetPlatform`` / ``CreateStoragePathRoutes``);
* a version label on a version that is not AVAILABLE: ``FAILED_PRECONDITION: Request to assign
  label to version <v> of model <name>, which is not currently available for inference``
  (``server_core.cc`` ``UpdateModelVersionLabelMap``). Labels are checked *before* the models of
  the config load, so at startup every label is refused unless
  ``--allow_version_labels_for_unavailable_models`` is passed; on a reload a label must name a
  loaded version (with the flag: a new label, or one that keeps its version, may name any);
* a ``base_path`` that does not exist: ``Could not find base path <path> for servable <name>``
  (``file_system_storage_path_source.cc``; TF Serving logs it on every poll and never finishes
  starting, the local server refuses the config instead).

``python -m serving.config --check serving/models.config`` (or a folder: all three files) runs
the checks, plus "the server would wait forever" (a model with no version its policy serves:
``No versions of servable <name> found under base path <path>``).

A model's versions are the all-digit sub-directories of ``base_path`` holding a
``saved_model.pb``; anything else (e.g. an exporter's temporary directory) is ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers google/protobuf/wrappers.proto)
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_POLICY = ("latest", 1)
TENSORFLOW_PLATFORM = "tensorflow"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ConfigError(ValueError):
    """A config ``tensorflow_model_server`` refuses.

    ``code``/``tf_message`` are TF Serving's status code name and message; ``path`` the file,
    ``field`` the offending field, ``detail`` extra context. ``str()`` names all of them.
    """

    def __init__(self, code: str, tf_message: str, path=None, field: str | None = None, detail: str | None = None):
        self.code, self.tf_message, self.path, self.field, self.detail = code, tf_message, path, field, detail
        where = ": ".join(str(part) for part in (path, field) if part)
        text = f"{code}: {tf_message}" + (f" ({detail})" if detail else "")
        super().__init__(f"{where}: {text}" if where else text)


# --------------------------------------------------------------------------------------------
# models.config: parsing


def parse_text_proto(text: str, message, path=None):
    """Parse a text proto into ``message``; malformed text -> TF Serving's "Invalid protobuf file"."""
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path or '<text>'}'", path, detail=str(error)) from None


def read_text(path) -> str:
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError("NOT_FOUND", f"{path}; {error.strerror or error}", path) from None


def parse_model_server_config(text: str, path=None) -> model_server_config_pb2.ModelServerConfig:
    """Parse a ``ModelServerConfig`` text proto (``ConfigError`` naming ``path`` on bad text)."""
    return parse_text_proto(text, model_server_config_pb2.ModelServerConfig(), path)


def read_model_server_config(path) -> model_server_config_pb2.ModelServerConfig:
    return parse_model_server_config(read_text(path), path)


# --------------------------------------------------------------------------------------------
# models.config: TF Serving's checks


def _field(index: int, name: str) -> str:
    return f"model_config_list.config[{index}].{name}"


def is_relative_path(base_path: str) -> bool:
    """TF Serving's ``UriIsRelativePath``: no scheme, no host and not absolute (so also empty)."""
    return not _URI.match(base_path) and not base_path.startswith("/")


def model_platform(model, index: int = 0, path=None) -> str:
    """TF Serving's ``GetPlatform`` plus the "unsupported platform" route check (only tensorflow)."""
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise ConfigError("INVALID_ARGUMENT", "Illegal setting both ModelServerConfig::model_type (deprecated) "
                              "and ModelServerConfig::model_platform.", path, _field(index, "model_type"))
        if model.model_type != model_server_config_pb2.TENSORFLOW:
            raise ConfigError("INVALID_ARGUMENT", f"ModelServerConfig::model_type choice {model.model_type} not supported.",
                              path, _field(index, "model_type"))
        return TENSORFLOW_PLATFORM
    if not model.model_platform:
        raise ConfigError("INVALID_ARGUMENT", "Illegal setting neither ModelServerConfig::model_type (deprecated) "
                          "nor ModelServerConfig::model_platform.", path, _field(index, "model_platform"))
    if model.model_platform != TENSORFLOW_PLATFORM:
        raise ConfigError("INVALID_ARGUMENT", f"Model {model.name} requests unsupported platform {model.model_platform}",
                          path, _field(index, "model_platform"))
    return TENSORFLOW_PLATFORM


def _check_unique_names(models, path=None):
    seen = set()
    for index, model in enumerate(models):
        if model.name in seen:
            raise ConfigError("INVALID_ARGUMENT", f"Illegal to list model {model.name} multiple times in config list",
                              path, _field(index, "name"))
        seen.add(model.name)


def _check_base_paths(models, path=None, root_dir=None):
    if root_dir is not None:
        if is_relative_path(str(root_dir)):
            raise ConfigError("INVALID_ARGUMENT", "Expected non-empty absolute path or URI; got "
                              f"model_config_list_root_dir={root_dir}", path, "--model_config_list_root_dir")
        return
    for index, model in enumerate(models):
        if is_relative_path(model.base_path):
            raise ConfigError("INVALID_ARGUMENT", f"Expected model {model.name} to have an absolute path or URI; "
                              f"got base_path()={model.base_path}", path, _field(index, "base_path"))


def check_model_server_config(config, path=None, root_dir=None):
    """The checks ``ServerCore::ReloadConfig`` makes before touching the file system."""
    which = config.WhichOneof("config")
    if which == "custom_model_config":
        # tensorflow_model_server's LoadCustomModelConfig LOG(FATAL)s with this message.
        raise ConfigError("UNIMPLEMENTED", "ModelServer does not yet support custom model config.", path, "custom_model_config")
    models = config.model_config_list.config
    _check_unique_names(models, path)
    _check_base_paths(models, path, root_dir)
    for index, model in enumerate(models):
        model_platform(model, index, path)
        version_policy(model, index, path)


def _label_allowed(name, label, version, available, allow_unavailable, current_labels) -> bool:
    if version in available.get(name, ()):
        return True
    return allow_unavailable and current_labels.get(name, {}).get(label, version) == version


def check_version_labels(config, available=None, allow_unavailable: bool = False, current_labels=None, path=None):
    """TF Serving's ``UpdateModelVersionLabelMap``.

    ``available``: ``{model: versions AVAILABLE now}`` (empty at startup: the check runs before the
    config's models load); ``current_labels``: ``{model: {label: version}}`` of the running config.
    """
    available, current_labels = available or {}, current_labels or {}
    for index, model in enumerate(config.model_config_list.config):
        for label, version in sorted(model.version_labels.items()):
            if not _label_allowed(model.name, label, int(version), available, allow_unavailable, current_labels):
                raise ConfigError("FAILED_PRECONDITION", f"Request to assign label to version {version} of model "
                                  f"{model.name}, which is not currently available for inference",
                                  path, _field(index, f"version_labels[{label!r}]"))


def version_policy(model_config, index: int = 0, path=None) -> tuple:
    """``("latest", n)``, ``("specific", (v, ...))`` or ``("all",)`` of a ``ModelConfig``."""
    policy = model_config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "specific":
        if not policy.specific.versions:
            raise ConfigError("INVALID_ARGUMENT", f"model {model_config.name!r}: specific version policy lists no versions",
                              path, _field(index, "model_version_policy.specific.versions"))
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
    config_base_path: str = ""  # base_path as written in the config (for messages)


def model_entries(config: model_server_config_pb2.ModelServerConfig, config_dir=None, path_map=(), root_dir=None,
                  path=None) -> list[ModelEntry]:
    """The models of a ``ModelServerConfig`` after ``check_model_server_config``, base paths resolved.

    A relative ``base_path`` is joined to ``root_dir`` (``--model_config_list_root_dir``) and refused
    without it, like TF Serving; then ``resolve_base_path`` maps it to this machine.
    """
    check_model_server_config(config, path, root_dir)
    entries = []
    for model in config.model_config_list.config:
        written = model.base_path
        if root_dir is not None and is_relative_path(written):
            written = os.path.join(str(root_dir), written)
        entries.append(
            ModelEntry(
                name=model.name,
                base_path=resolve_base_path(written, config_dir, path_map),
                policy=version_policy(model),
                version_labels={str(k): int(v) for k, v in model.version_labels.items()},
                config_base_path=model.base_path,
            )
        )
    return entries


def require_base_paths(entries, path=None):
    """Every base path exists (TF Serving's file system poll fails on the first one that does not)."""
    for index, entry in enumerate(entries):
        if not os.path.isdir(entry.base_path):
            raise ConfigError("NOT_FOUND", f"Could not find base path {entry.config_base_path or entry.base_path} "
                              f"for servable {entry.name}", path, _field(index, "base_path"), detail=f"looked in {entry.base_path}")


def require_versions(entries, path=None):
    """Every model has a version its policy serves (else TF Serving waits for it at startup)."""
    for index, entry in enumerate(entries):
        if not select_versions(list_versions(entry.base_path), entry.policy):
            raise ConfigError("UNAVAILABLE", f"No versions of servable {entry.name} found under base path "
                              f"{entry.config_base_path or entry.base_path}", path, _field(index, "model_version_policy"),
                              detail=f"policy {entry.policy} matches nothing in {entry.base_path}; tensorflow_model_server "
                              "would wait for it and not finish starting")


def load_model_server_config(config, path=None, config_dir=None, path_map=(), root_dir=None, available=None,
                             allow_version_labels_for_unavailable_models: bool = False, current_labels=None) -> list[ModelEntry]:
    """All of TF Serving's checks of a (re)loaded ``ModelServerConfig``; returns its ``ModelEntry`` list."""
    entries = model_entries(config, config_dir, path_map, root_dir, path)
    check_version_labels(config, available, allow_version_labels_for_unavailable_models, current_labels, path)
    require_base_paths(entries, path)
    return entries


def load_model_server_config_file(path, path_map=(), root_dir=None, allow_version_labels_for_unavailable_models: bool = False):
    """``load_model_server_config`` of a file at startup (nothing loaded yet)."""
    config = read_model_server_config(path)
    config_dir = os.path.dirname(os.path.abspath(path))
    return load_model_server_config(config, path, config_dir, path_map, root_dir, None, allow_version_labels_for_unavailable_models)


def single_model_config(name: str, base_path: str, num_versions: int = 1) -> model_server_config_pb2.ModelServerConfig:
    """The config ``--model_name/--model_base_path`` stand for (latest N versions)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(base_path)
    model.model_platform = TENSORFLOW_PLATFORM
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


def _positive_sizes(sizes, max_batch, path):
    field = "allowed_batch_sizes"
    if sizes != sorted(set(sizes)) or sizes[0] <= 0:
        raise ConfigError("INVALID_ARGUMENT", f"allowed_batch_sizes must be positive and strictly increasing, got {sizes}", path, field)
    if max_batch is not None and sizes[-1] != max_batch:
        raise ConfigError("INVALID_ARGUMENT", f"the last allowed_batch_sizes entry ({sizes[-1]}) must equal max_batch_size "
                          f"({max_batch})", path, field)


def parse_batching_parameters(text: str, path=None):
    """Parse ``batching.config``; checks the values TF Serving would refuse."""
    cls, _ = batching_parameters_class()
    params = parse_text_proto(text, cls(), path)
    max_batch = params.max_batch_size.value if params.HasField("max_batch_size") else None
    if params.allowed_batch_sizes:
        _positive_sizes(list(params.allowed_batch_sizes), max_batch, path)
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if params.HasField(name) and getattr(params, name).value <= 0:
            raise ConfigError("INVALID_ARGUMENT", f"{name} must be positive", path, name)
    return params


def parse_monitoring_config(text: str, path=None):
    cls, _ = monitoring_config_class()
    config = parse_text_proto(text, cls(), path)
    prometheus = config.prometheus_config
    if prometheus.enable and prometheus.path and not prometheus.path.startswith("/"):
        raise ConfigError("INVALID_ARGUMENT", "prometheus_config.path must start with '/'", path, "prometheus_config.path")
    return config


# --------------------------------------------------------------------------------------------
# python -m serving.config --check FILE_OR_FOLDER ...


def check_model_server_config_file(path, path_map=(), root_dir=None, allow_version_labels_for_unavailable_models=False):
    """Everything a fresh ``tensorflow_model_server --model_config_file=path`` checks, plus that each
    model has a version to serve. Returns the ``ModelEntry`` list; raises ``ConfigError``."""
    entries = load_model_server_config_file(path, path_map, root_dir, allow_version_labels_for_unavailable_models)
    require_versions(entries, path)
    return entries


def check_file(path, **options):
    """Check one config file; its kind comes from its name (``*batching*``, ``*monitoring*``, else models)."""
    name = pathlib.Path(path).name
    if "batching" in name:
        return parse_batching_parameters(read_text(path), path)
    if "monitoring" in name:
        return parse_monitoring_config(read_text(path), path)
    return check_model_server_config_file(path, **options)


def check_files(folder, **options) -> dict:
    """Check ``models.config``, ``batching.config`` and ``monitoring.config`` of ``folder``."""
    folder = pathlib.Path(folder)
    return {kind: check_file(folder / f"{kind}.config", **options) for kind in ("models", "batching", "monitoring")}


def _describe(result) -> str:
    if isinstance(result, list):
        return "; ".join(f"{e.name}: {e.base_path} policy={e.policy} labels={e.version_labels}" for e in result)
    return text_format.MessageToString(result, as_one_line=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.config", description="Check TF Serving config files "
                                     "(or folders holding models.config, batching.config, monitoring.config).")
    parser.add_argument("paths", nargs="*", help="files or folders (default: the serving/ folder)")
    parser.add_argument("--check", action="append", default=[], metavar="PATH", help="a file or folder to check (repeatable)")
    parser.add_argument("--allow_version_labels_for_unavailable_models", action="store_true")
    parser.add_argument("--model_config_list_root_dir", default=None)
    parser.add_argument("--base_path_map", action="append", default=[], metavar="FROM=TO")
    args = parser.parse_args(argv)
    options = dict(path_map=parse_path_map(args.base_path_map), root_dir=args.model_config_list_root_dir,
                   allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models)
    paths = args.check + args.paths or [pathlib.Path(__file__).parent]
    failed = 0
    for path in paths:
        files = [pathlib.Path(path) / f"{kind}.config" for kind in ("models", "batching", "monitoring")] if os.path.isdir(path) else [path]
        for file in files:
            try:
                print(f"OK {file}: {_describe(check_file(file, **options))}")
            except ConfigError as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
