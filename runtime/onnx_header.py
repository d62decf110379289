"""What an ONNX file says about itself — metadata entries, graph inputs and outputs with their shapes — read
straight from its protobuf encoding, without onnx or onnxruntime and without touching the weights.

A model's metadata is needed on every start (which engine, which config) before any engine is built; opening an
onnxruntime session only to read it costs a session build of the whole graph. The file is memory-mapped and only
the fields below are decoded; every other field (weights included) is skipped by its length.

    ModelProto:      graph = 7 (GraphProto), metadata_props = 14 (StringStringEntryProto: key = 1, value = 2)
    GraphProto:      initializer = 5 (TensorProto: name = 8, external_data = 13 (key = 1, value = 2)),
                     input = 11, output = 12 (ValueInfoProto)
    ValueInfoProto:  name = 1, type = 2 (TypeProto: tensor_type = 1 (shape = 2 (dim = 1 (value = 1, param = 2))))
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

from ccstereo.runtime.errors import ModelMetadataError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class HeaderError(ModelMetadataError):
    """The bytes are not a well-formed ONNX model (``model_info.read_onnx_info`` says which file)."""


@dataclass(frozen=True)
class OnnxHeader:
    props: dict[str, str]
    inputs: dict[str, list[int | str | None]]  # graph inputs that are not initializers, with their shapes
    outputs: dict[str, list[int | str | None]]
    external: tuple[str, ...] = ()  # the files initializers keep their weights in (ONNX external data), as written


def read_header(path: Path) -> OnnxHeader:
    """Return the metadata entries and the graph's inputs and outputs of the ONNX file ``path``; raise HeaderError
    when it is not a well-formed ONNX model (OSError when it cannot be read)."""
    with path.open("rb") as fh:
        if path.stat().st_size == 0:
            raise HeaderError("empty file")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data, memoryview(data) as view:
            try:
                return _model(view)
            except HeaderError as exc:  # raised again below, once no frame of the parse holds a view of the map
                reason = str(exc)
    raise HeaderError(reason)


def _model(buf: memoryview) -> OnnxHeader:
    props: dict[str, str] = {}
    graph = None
    for number, value in _fields(buf):
        if number == 14 and isinstance(value, memoryview):
            entry = {n: bytes(v).decode("utf-8", "replace") for n, v in _fields(value) if isinstance(v, memoryview)}
            props[entry.get(1, "")] = entry.get(2, "")
        elif number == 7 and isinstance(value, memoryview):
            graph = value
    if graph is None:
        raise HeaderError("no graph")
    inputs: dict[str, list[int | str | None]] = {}
    outputs: dict[str, list[int | str | None]] = {}
    initializers: set[str] = set()
    external: list[str] = []
    for number, value in _fields(graph):
        if not isinstance(value, memoryview):
            continue
        if number == 5:
            name, places = _initializer(value)
            initializers.add(name)
            external.extend(places)
        elif number in (11, 12):
            name, shape = _value_info(value)
            (inputs if number == 11 else outputs)[name] = shape
    kept = {k: v for k, v in inputs.items() if k not in initializers}
    return OnnxHeader(props, kept, outputs, tuple(dict.fromkeys(external)))


def _initializer(tensor: memoryview) -> tuple[str, list[str]]:
    """Return (name, external data locations) of one TensorProto."""
    name, places = "", []
    for number, value in _fields(tensor):
        if number == 8 and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif number == 13 and isinstance(value, memoryview):
            entry = {n: bytes(v).decode("utf-8", "replace") for n, v in _fields(value) if isinstance(v, memoryview)}
            if entry.get(1) == "location":
                places.append(entry.get(2, ""))
    return name, places


def _value_info(buf: memoryview) -> tuple[str, list[int | str | None]]:
    name, shape = "", []
    for number, value in _fields(buf):
        if number == 1 and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif number == 2 and isinstance(value, memoryview):
            shape = _shape(value)
    return name, shape


def _shape(type_proto: memoryview) -> list[int | str | None]:
    tensor = _first(type_proto, 1)
    shape = _first(tensor, 2) if tensor is not None else None
    if shape is None:
        return []
    dims: list[int | str | None] = []
    for number, dim in _fields(shape):
        if number != 1 or not isinstance(dim, memoryview):
            continue
        got: int | str | None = None
        for n, v in _fields(dim):
            if n == 1 and isinstance(v, int):
                got = v
            elif n == 2 and isinstance(v, memoryview):
                got = bytes(v).decode("utf-8", "replace")
        dims.append(got)
    return dims


def _first(buf: memoryview, wanted: int) -> memoryview | None:
    return next((v for n, v in _fields(buf) if n == wanted and isinstance(v, memoryview)), None)


def _fields(buf: memoryview):
    """Yield (field number, int or memoryview) for each field of one message; raise HeaderError on bad bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise HeaderError("field number 0")
        if wire == VARINT:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise HeaderError("a field runs past the end of its message (truncated file?)")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (FIXED64, FIXED32):
            pos += 8 if wire == FIXED64 else 4
            if pos > end:
                raise HeaderError("truncated fixed-size field")
        else:
            raise HeaderError(f"unknown wire type {wire}")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise HeaderError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
