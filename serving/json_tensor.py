"""JSON <-> tensors of the REST predict API, with the rules and messages of TF Serving's
``tensorflow_serving/util/json_tensor.cc``.

Request body: a JSON object with ``"instances"`` (row format: a non-empty list with one value per
example, or one object keyed by input name per example) or ``"inputs"`` (columnar: one value, or
an object keyed by input name), never both, and an optional string ``"signature_name"``. A
tensor is a scalar or a dense nested list: every list of a level has the same length and scalars
sit at the deepest level only. Scalars must match the input's dtype: strings for ``string`` (or
``{"b64": "<base64>"}`` for bytes), integers in range for integer dtypes (``1.5`` or ``true`` is
not an ``int32``), numbers (NaN and Infinity allowed) for floating dtypes, ``true``/``false``
for ``bool``; ``null`` is never a value. Anything else is INVALID_ARGUMENT naming the value.

Response: ``{"predictions": ...}`` for row requests (one entry per example; objects keyed by
output name when there are several outputs), ``{"outputs": ...}`` for columnar ones. Bytes that
are not UTF-8 are returned as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import grpc
import numpy as np
import tensorflow as tf

from serving.servables import ServingError

MAX_RANK = 254  # TensorShape's kMaxDims
_ERROR_VALUE_CHARS = 200


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _show(value) -> str:
    """A JSON value for an error message, shortened (TF Serving prints it whole)."""
    text = json.dumps(value)
    return text if len(text) <= _ERROR_VALUE_CHARS else text[:_ERROR_VALUE_CHARS] + "..."


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return str(value)
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def parse_body(data: bytes) -> dict:
    """The request body as a JSON object (``ParseJson`` and ``FillSignature``)."""
    if not data.strip():
        raise _invalid("JSON Parse error: The document is empty")
    try:
        body = json.loads(data)
    except RecursionError:
        raise _invalid("JSON Parse error: the document is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, bad UTF-8, integers of more than 4300 digits
        raise _invalid(f"JSON Parse error: {error}") from None
    if not isinstance(body, dict):
        raise _invalid(f"JSON Value: {_show(body)} Is not object")
    if not isinstance(body.get("signature_name", ""), str):
        raise _invalid(f"JSON Value: {_show(body)} not formatted correctly. 'signature_name' key must be a string value.")
    return body


def _scalar(value, dtype: tf.DType):
    """One JSON scalar as a Python value of ``dtype`` (``AddValueToTensor``)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise _invalid("Unable to base64 decode") from None
        if isinstance(value, dict):
            raise _invalid(f"JSON Value: {_show(value)} not formatted correctly for base64 data")
    elif dtype == tf.bool:
        if isinstance(value, bool):
            return value
    elif dtype.is_integer:
        if is_number and isinstance(value, int) and dtype.min <= value <= dtype.max:
            return value
    elif dtype.is_floating:
        if is_number and (not math.isfinite(value) or dtype.min <= value <= dtype.max):
            return value
    else:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: {_show(value)} to type: {dtype.name}")
    raise _invalid(f"JSON Value: {_show(value)} Type: {_json_type(value)} is not of expected type: {dtype.name}")


def _dense_shape(value) -> list:
    """The shape a JSON value claims, from its first elements (``GetDenseTensorShape``)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_RANK:
            raise _invalid(f"JSON list nested more than {MAX_RANK} levels deep: more dimensions than a tensor can have")
        if not value:
            break
        value = value[0]
    return shape


def to_array(value, dtype: tf.DType) -> np.ndarray:
    """A JSON value as a dense numpy array of ``dtype`` (``FillTensorProto``)."""
    shape = _dense_shape(value)
    flat = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _invalid(f"JSON Value: {_show(item)} found at incorrect level: {level + 1} in the JSON DOM. "
                               f"Expected at level: {len(shape)}")
            flat.append(_scalar(item, dtype))
            return
        if level >= len(shape):
            raise _invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
        if len(item) != shape[level]:
            raise _invalid(f"Encountered list at unexpected size: {len(item)} at level: {level} expected size: {shape[level]}")
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
    return np.array(flat, dtype=numpy_dtype).reshape(shape)


def _row_columns(body: dict, names: list) -> dict:
    """``"instances"``: ``{input name: [value of each example]}`` (``FillTensorMapFromInstancesList``)."""
    instances = body["instances"]
    if not isinstance(instances, list):
        raise _invalid(f"JSON Value: {_show(body)} Excepting 'instances' to be an list/array")
    if not instances:
        raise _invalid(f"JSON Value: {_show(body)} No values in 'instances' array")

    def is_object(item):
        return isinstance(item, dict) and not _is_b64(item)

    if not is_object(instances[0]):
        if len(names) > 1:
            raise _invalid("instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map")
        for index, item in enumerate(instances):
            if is_object(item):
                raise _invalid(f"Expecting value/list but got object at item {index} of input list")
        return {names[0]: instances}
    for index, item in enumerate(instances):
        if not is_object(item):
            raise _invalid(f"Expecting object but got list at item {index} of input list")
        if set(item) != set(names):
            raise _invalid(f"Failed to process element: {index} of 'instances' list. JSON object: {_show(item)} keys must be "
                           f"equal to: {','.join(names)}")
    return {name: [item[name] for item in instances] for name in names}


def _columnar_columns(body: dict, names: list) -> dict:
    """``"inputs"``: ``{input name: value}`` (``FillTensorMapFromInputsMap``; other keys are ignored)."""
    inputs = body["inputs"]
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(names) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map")
        return {names[0]: inputs}
    for name in names:
        if name not in inputs:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
    return {name: inputs[name] for name in names}


def predict_inputs(body: dict, specs: dict) -> tuple[dict, bool]:
    """``(named numpy inputs, row_format)`` of a predict request body for a signature whose
    inputs are ``specs`` (``{name: tf.TensorSpec}``)."""
    if "instances" in body and "inputs" in body:
        raise _invalid(f"JSON Value: {_show(body)} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
    if "instances" not in body and "inputs" not in body:
        raise _invalid("Missing 'inputs' or 'instances' key")
    names = sorted(specs)
    if not names:
        raise _invalid("Failed to get input map for signature")
    row_format = "instances" in body
    columns = _row_columns(body, names) if row_format else _columnar_columns(body, names)
    arrays = {}
    for name, value in columns.items():
        try:
            arrays[name] = to_array(value, specs[name].dtype)
        except ServingError as error:
            where = "'instances' list" if row_format else "'inputs'"
            raise ServingError(error.code, f"Failed to process input: {name} of {where}. Error: {error.message}") from None
    return arrays, row_format


def _to_json(value):
    if isinstance(value, np.ndarray):
        return [_to_json(item) for item in value] if value.ndim else _to_json(value.item())
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def predict_response(outputs: dict, row_format: bool) -> dict:
    """The JSON answer to a predict request (``MakeJsonFromTensors``)."""
    if not row_format:
        return {"outputs": {name: _to_json(value) for name, value in outputs.items()}}
    sizes = {name: value.shape[0] if value.ndim else None for name, value in outputs.items()}
    batch = next(iter(sizes.values()), 0)
    for name, size in sizes.items():
        if size is None or size != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}"
                           if size is not None else f"Tensor name: {name} has no shape information")
    if len(outputs) == 1:
        return {"predictions": _to_json(next(iter(outputs.values())))}
    return {"predictions": [{name: _to_json(value[index]) for name, value in outputs.items()} for index in range(batch)]}
