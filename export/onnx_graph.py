"""torch -> ONNX for the per-window graph, plus the graph passes that leave it static and lean.

Steps: fold BatchNorms in PyTorch, export ``forward_windows`` with the dynamo exporter (F and W dynamic),
fold every node whose inputs are all constant, drop dead nodes and initializers, write metadata.
"""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import ccstereo
from ccstereo.export.options import DEFAULT_OPSET
from ccstereo.model import CCStereo
from ccstereo.model.fold import fold_batchnorms
from ccstereo.runtime.model_info import PREFIX, ModelInfo

INPUT_NAMES = ("frames", "mono", "frame_index")
OUTPUT_NAME = "binaural"
# Ops that only exist to compute shapes; none may remain once every non-batch size is static.
SHAPE_OPS = ("Shape", "Size", "ConstantOfShape", "Range", "NonZero")


class _WindowsGraph(torch.nn.Module):
    """Export wrapper: positional (frames, mono, frame_index) -> binaural."""

    def __init__(self, model: CCStereo) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, mono: torch.Tensor, frame_index: torch.Tensor) -> torch.Tensor:
        return self.model.forward_windows(frames, mono, frame_index)


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exporter_version() -> str:
    return f"ccstereo-deploy {ccstereo.__version__} (torch {torch.__version__}, onnx {onnx.__version__})"


def _example_inputs(model: CCStereo) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = model.config
    # Distinct, non-trivial sizes so the exporter keeps F and W symbolic instead of specialising them.
    frames = torch.randint(0, 255, (3, cfg.crop_height, cfg.crop_width, 3), dtype=torch.uint8)
    mono = torch.randn(5, cfg.window_samples) * 0.1
    return frames, mono, torch.tensor([0, 1, 2, 2, 1], dtype=torch.int64)


def torch_to_onnx(model: CCStereo, opset: int = DEFAULT_OPSET, max_batch: int = 65536) -> onnx.ModelProto:
    """Return the ONNX model of ``forward_windows`` with BatchNorms folded and F, W dynamic."""
    folded = fold_batchnorms(model)
    f_dim = torch.export.Dim("F", min=1, max=max_batch)
    w_dim = torch.export.Dim("W", min=1, max=max_batch)
    program = torch.onnx.export(
        _WindowsGraph(folded).eval(),
        _example_inputs(model),
        dynamo=True,
        input_names=list(INPUT_NAMES),
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"frames": {0: f_dim}, "mono": {0: w_dim}, "frame_index": {0: w_dim}},
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    proto = program.model_proto
    fold_constants(proto)
    remove_dead_code(proto)
    _set_output_shape(proto, model)
    return proto


def _set_output_shape(proto: onnx.ModelProto, model: CCStereo) -> None:
    out = proto.graph.output[0].type.tensor_type
    out.ClearField("shape")
    for dim in ("W", 2, model.config.window_samples):
        d = out.shape.dim.add()
        if isinstance(dim, str):
            d.dim_param = dim
        else:
            d.dim_value = dim


def fold_constants(proto: onnx.ModelProto) -> int:
    """Replace every node whose inputs are all initializers by initializers; return how many were folded."""
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    consts = {init.name: init for init in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type != "Constant" and (not inputs or not all(i in consts for i in inputs)):
            kept.append(node)
            continue
        feeds = {i: numpy_helper.to_array(consts[i]) for i in inputs}
        try:
            outputs = ReferenceEvaluator(node).run(None, feeds)
        except Exception:  # an op the reference evaluator lacks: keep the node, nothing is lost
            kept.append(node)
            continue
        for name, value in zip(node.output, outputs, strict=True):
            tensor = numpy_helper.from_array(np.asarray(value), name)
            graph.initializer.append(tensor)
            consts[name] = tensor
        folded += 1
    del graph.node[:]
    graph.node.extend(kept)
    return folded


def remove_dead_code(proto: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody uses and initializers no node reads."""
    graph = proto.graph
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(live))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    values = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Return node counts by op type, most frequent first."""
    return dict(collections.Counter(n.op_type for n in proto.graph.node).most_common())


def set_metadata(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """Write ``info`` into ``metadata_props`` (replacing every earlier ccstereo.* entry)."""
    keep = {p.key: p.value for p in proto.metadata_props if not p.key.startswith(PREFIX)}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {**keep, **info.to_props()})
    proto.producer_name = "ccstereo-deploy"
    proto.producer_version = ccstereo.__version__


def get_metadata(proto: onnx.ModelProto, path: Path) -> ModelInfo:
    """Return the ModelInfo stored in ``proto`` (read from ``path``)."""
    return ModelInfo.from_props(path, {p.key: p.value for p in proto.metadata_props})


def save_onnx(proto: onnx.ModelProto, path: Path) -> None:
    """Check and write ``proto`` atomically (temporary file + rename)."""
    onnx.checker.check_model(proto, full_check=False)
    from ccstereo.atomic import writing

    with writing(path) as tmp:
        onnx.save(proto, str(tmp))
