"""FP32 -> FP16 ONNX conversion with FP32 islands, for strongly typed TensorRT builds.

Every node gets a precision. Island rules name the parts of this model that stay FP32 (by the module scope
the exporter records in each node's metadata, or by op type); shape-only ops follow their data input; the rest
runs in FP16. Casts are inserted only where a tensor crosses between precisions, so the graph says exactly what
TensorRT must do: a strongly typed network respects these types instead of choosing its own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP32, FP16 = "fp32", "fp16"
NEUTRAL_OPS = {"Reshape", "Transpose", "Gather", "Unsqueeze", "Squeeze", "Concat", "Identity", "Slice", "Flatten"}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16}


@dataclass(frozen=True)
class Island:
    """A named group of nodes kept in FP32, with the reason it exists."""

    name: str
    reason: str


# The candidate islands, in the order they are tested. ``classify`` maps a node to one of these names.
ISLANDS: dict[str, Island] = {
    i.name: i
    for i in (
        Island("rms_normalize", "per-window RMS over 10080 squared samples; sum overflows/loses digits in FP16"),
        Island("stft", "512-tap DFT accumulation; FP16 error of the input spectrogram feeds every layer"),
        Island("istft", "inverse DFT + window-sum division; output precision of the difference signal"),
        Island("mask_and_output", "complex product with the spectrogram (|X| up to ~1e2), L/R, level restore"),
        Island("mask_head", "sigmoid*2-1 and the 256->257 bin resize of the mask"),
        Island("layernorm", "LayerNorm variance over 128 channels after attention residuals"),
        Island("softmax", "attention softmax over 98 visual / 16 audio tokens"),
        Island("avad_similarity", "AVAD L2-normalised cosine similarity of visual tokens and audio positions"),
        Island("avad_modulation", "AVAD norm * (1 + gamma) + beta"),
        Island("frame_preprocess", "uint8 -> ImageNet normalisation of the frames"),
    )
}


def node_scope(node: onnx.NodeProto) -> str:
    """Return the innermost module path of a node (exporter metadata), '' when unknown."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return ""
            path = scopes[-2] if len(scopes) >= 2 else ""
            return re.sub(r"^model\.?", "", path)
    return ""


def _descendants(graph: onnx.GraphProto, sources: Iterable[str]) -> set[str]:
    """Return the names of nodes that depend (transitively) on any tensor in ``sources``."""
    reached, names = set(sources), set()
    for node in graph.node:
        if any(i in reached for i in node.input):
            names.add(node.name)
            reached.update(node.output)
    return names


def classify(graph: onnx.GraphProto) -> dict[str, str | None]:
    """Return node name -> island name (FP32) or None (FP16, or neutral)."""
    from_mono = _descendants(graph, ["mono"])
    gamma_beta = [o for n in graph.node if re.search(r"norm\.(gamma|beta)$", node_scope(n)) for o in n.output]
    after_gamma_beta = _descendants(graph, gamma_beta)
    result: dict[str, str | None] = {}
    for node in graph.node:
        scope, op = node_scope(node), node.op_type
        island: str | None = None
        if op == "LayerNormalization":
            island = "layernorm"
        elif op == "Softmax":
            island = "softmax"
        elif scope.startswith("rms"):
            island = "rms_normalize"
        elif scope.startswith("istft"):
            island = "istft"
        elif scope.startswith("stft"):
            island = "stft"
        elif re.fullmatch(r"audio\.up\d\.norm", scope) and op != "Relu":
            island = "avad_modulation" if node.name in after_gamma_beta else "avad_similarity"
        elif scope == "audio" and op != "Concat":
            island = "mask_head"
        elif scope == "" and op not in NEUTRAL_OPS:
            island = "mask_and_output" if node.name in from_mono else "frame_preprocess"
        result[node.name] = island
    return result


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[v.name] = v.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def convert_to_fp16(model: onnx.ModelProto, fp32_islands: Iterable[str]) -> tuple[onnx.ModelProto, dict]:
    """Return (FP16 model, summary) keeping the nodes of ``fp32_islands`` in FP32.

    The summary lists per island the number of nodes and their op types, and the number of Casts inserted.
    """
    keep = set(fp32_islands)
    unknown = keep - set(ISLANDS)
    if unknown:
        raise ValueError(f"unknown FP32 islands {sorted(unknown)}; known: {sorted(ISLANDS)}")
    src = onnx.ModelProto()
    src.CopyFrom(model)
    converter = _Fp16Converter(src, keep)
    for node in src.graph.node:
        converter.add(node)
    return src, converter.finish()


class _Fp16Converter:
    """Walks the nodes in order, giving each a precision and casting its inputs to it where they differ."""

    def __init__(self, src: onnx.ModelProto, keep: set[str]) -> None:
        self.src, self.graph, self.keep = src, src.graph, keep
        self.types = _elem_types(src)
        self.islands = classify(self.graph)
        self.inits = {i.name: i for i in self.graph.initializer}
        self.precision: dict[str, str] = {i.name: FP32 for i in self.graph.input}  # tensor -> precision
        self.precision.update({name: FP32 for name in self.inits})
        self.new_nodes: list[onnx.NodeProto] = []
        self.casts: dict[tuple[str, str], str] = {}
        self.fp16_inits: dict[str, str] = {}
        self.summary: dict[str, dict] = {name: {"nodes": 0, "ops": {}} for name in keep}

    def as_precision(self, tensor: str, target: str) -> str:
        """Return the name of ``tensor`` in ``target`` precision (an FP16 initializer copy or a Cast)."""
        if not tensor or self.types.get(tensor) not in FLOAT_TYPES or self.precision.get(tensor, FP32) == target:
            return tensor
        if tensor in self.inits and target == FP16:
            if tensor not in self.fp16_inits:
                arr = numpy_helper.to_array(self.inits[tensor]).astype(np.float16)
                self.fp16_inits[tensor] = f"{tensor}__fp16"
                self.graph.initializer.append(numpy_helper.from_array(arr, self.fp16_inits[tensor]))
            return self.fp16_inits[tensor]
        key = (tensor, target)
        if key not in self.casts:
            self.casts[key] = f"{tensor}__to_{target}"
            to = TensorProto.FLOAT16 if target == FP16 else TensorProto.FLOAT
            self.new_nodes.append(
                helper.make_node("Cast", [tensor], [self.casts[key]], name=f"cast_{self.casts[key]}", to=to)
            )
        return self.casts[key]

    def _target(self, node: onnx.NodeProto) -> str:
        island = self.islands.get(node.name)
        if node.op_type in NEUTRAL_OPS:
            first = next((i for i in node.input if self.types.get(i) in FLOAT_TYPES), None)
            return self.precision.get(first, FP32) if first else FP32
        if island in self.keep:
            self.summary[island]["nodes"] += 1
            self.summary[island]["ops"][node.op_type] = self.summary[island]["ops"].get(node.op_type, 0) + 1
            return FP32
        return FP16

    def add(self, node: onnx.NodeProto) -> None:
        target = self._target(node)
        if node.op_type == "Cast":  # the uint8 -> float cast of the frames: produce the target precision
            for attr in node.attribute:
                if attr.name == "to" and attr.i in FLOAT_TYPES:
                    attr.i = TensorProto.FLOAT16 if target == FP16 else TensorProto.FLOAT
        new_inputs = [self.as_precision(i, target) if node.op_type != "Cast" else i for i in node.input]
        del node.input[:]
        node.input.extend(new_inputs)
        for out in node.output:
            self.precision[out] = target
        self.new_nodes.append(node)

    def finish(self) -> dict:
        """Install the new node list (the output cast back to FP32), drop unused initializers; return the summary."""
        graph, new_nodes = self.graph, self.new_nodes
        out_name = graph.output[0].name
        if self.precision.get(out_name) == FP16:  # the output stays FP32 whatever runs before it
            producer = next(n for n in new_nodes if out_name in n.output)
            producer.output[list(producer.output).index(out_name)] = f"{out_name}__fp16"
            new_nodes.append(helper.make_node("Cast", [f"{out_name}__fp16"], [out_name], to=TensorProto.FLOAT))
        del graph.node[:]
        graph.node.extend(new_nodes)
        del graph.value_info[:]
        used = {i for n in graph.node for i in n.input}
        kept_inits = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept_inits)
        onnx.checker.check_model(self.src)
        return {
            "islands": self.summary,
            "casts_inserted": len(self.casts),
            "fp16_nodes": sum(1 for n in new_nodes if self.precision.get(n.output[0]) == FP16),
        }
