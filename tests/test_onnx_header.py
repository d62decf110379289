"""The ONNX header reader (no engine) sees what onnxruntime sees, and a damaged file is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccstereo.runtime.errors import ModelMetadataError
from ccstereo.runtime.model_info import read_onnx_info
from ccstereo.runtime.onnx_header import read_header

BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "default"


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_the_header_is_what_onnxruntime_reads(name, request):
    """The bundled fp32 graph, and an int8 graph (the fixture checkpoint's export: none is bundled)."""
    import onnxruntime as ort

    path = BUNDLED / name if name == "model.onnx" else request.getfixturevalue("exported") / name
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    header = read_header(path)
    assert header.props == dict(session.get_modelmeta().custom_metadata_map)
    assert header.inputs == {i.name: i.shape for i in session.get_inputs()}
    assert header.outputs == {o.name: o.shape for o in session.get_outputs()}


def test_an_initializer_listed_as_an_input_is_not_an_input(tmp_path):
    """Older exporters list weights among the graph inputs; onnxruntime does not count them, nor do we."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2]), helper.make_tensor_value_info("w", 1, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [weight],
    )
    model = helper.make_model(graph, ir_version=7, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"a": "1", "b": "two"})
    onnx.save(model, str(tmp_path / "m.onnx"))
    header = read_header(tmp_path / "m.onnx")
    assert header.inputs == {"x": ["N", 2]} and header.outputs == {"y": ["N", 2]}
    assert header.props == {"a": "1", "b": "two"}


def test_every_truncation_and_random_bytes_are_one_error_naming_the_file(tmp_path):
    data = (BUNDLED / "model.onnx").read_bytes()
    rng = np.random.default_rng(7)
    cuts = sorted({0, 1, 7, *rng.integers(1, len(data) - 1, 40).tolist()})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelMetadataError, match=str(path)):
            read_onnx_info(path)
        path.unlink()
    for seed in range(20):
        path = tmp_path / f"noise{seed}.onnx"
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(ModelMetadataError, match=str(path)):
            read_onnx_info(path)
