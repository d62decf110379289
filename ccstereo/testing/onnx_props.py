"""Copies of an ONNX model with its metadata changed (tests of what the runtime does with a model's claims)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def with_metadata(source: Path, target: Path, change: Callable[[dict[str, str]], None]) -> Path:
    """Write ``source`` to ``target`` with its metadata entries passed through ``change`` (edited in place)."""
    import onnx

    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    change(props)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(target))
    return target
