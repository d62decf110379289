"""Cut an exported window graph in two at the visual features, for the adaptive visual rate.

The exported graph computes ``visual = features(frames)`` once per distinct crop and then gathers one row per
window (``visual[frame_index]``) for the audio U-Net and fusion. Cutting at the input of that gather gives

- the *visual* graph: ``frames`` u8 [F, h, w, 3] -> features [F, C, h', w'] (the ResNet-18 trunk and ASPP), and
- the *fusion* graph: (features [F, ...], ``mono`` [W, N], ``frame_index`` [W]) -> ``binaural`` [W, 2, N],

made of the very nodes and weights of the exported file (fp32 or int8 alike), so features computed once can be
fed again for later windows. The cut is made in memory when a run asks for it: an exported folder holds one
graph per precision and needs no re-export. Needs the ``onnx`` package (``pip install 'ccstereo-deploy[cpu]'``);
without it the run stays at the exact visual rate and its report says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError

FRAMES, MONO, FRAME_INDEX = "frames", "mono", "frame_index"


@dataclass(frozen=True)
class SplitGraph:
    """The two halves of one window graph, serialised (``onnxruntime`` / OpenVINO read them from bytes)."""

    visual: bytes
    fusion: bytes
    features: str  # the features tensor: the visual graph's output and the fusion graph's input


def split_window_graph(path: str | Path) -> SplitGraph:
    """Return the visual and fusion halves of the exported window graph at ``path``.

    Raises ModelMetadataError naming the file when the graph has no such cut (one gather of per-crop
    features by ``frame_index``, with nothing else crossing from the visual part to the rest), and
    BackendUnavailableError when the onnx package is not installed."""
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailableError("the adaptive visual rate needs the onnx package (pip install '.[cpu]')") from exc

    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError / OSError variants for unreadable files
        raise ModelMetadataError(f"{path}: not a readable ONNX model: {exc}") from exc
    graph = proto.graph
    features = _gathered_features(graph, path)
    visual_ids = _ancestors(graph, features)
    visual_nodes = [n for i, n in enumerate(graph.node) if i in visual_ids]
    fusion_nodes = [n for i, n in enumerate(graph.node) if i not in visual_ids]
    visual_made = {out for n in visual_nodes for out in n.output}
    crossing = {t for n in fusion_nodes for t in n.input if t in visual_made} - {features}
    inputs_used = {t for n in visual_nodes for t in n.input} & {i.name for i in graph.input}
    if crossing or inputs_used != {FRAMES}:
        raise ModelMetadataError(
            f"{path}: cannot cut the graph at its visual features {features!r} "
            f"(also crossing: {sorted(crossing)}; visual inputs: {sorted(inputs_used)})"
        )
    feature_info = _value_info(proto, features, path)
    visual = _subgraph(proto, visual_nodes, [_graph_input(graph, FRAMES)], [feature_info], "visual")
    fusion_inputs = [feature_info, _graph_input(graph, MONO), _graph_input(graph, FRAME_INDEX)]
    fusion = _subgraph(proto, fusion_nodes, fusion_inputs, list(graph.output), "fusion")
    return SplitGraph(visual.SerializeToString(), fusion.SerializeToString(), features)


def _gathered_features(graph, path: Path) -> str:
    """Return the tensor the graph gathers per window with indices computed from ``frame_index`` alone."""
    derived = {FRAME_INDEX}
    for node in graph.node:  # nodes are topologically sorted
        if node.op_type != "Gather" and any(t in derived for t in node.input):
            derived.update(node.output)
    gathers = [n for n in graph.node if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] in derived]
    if len(gathers) != 1:
        raise ModelMetadataError(f"{path}: expected one gather of visual features by frame_index, found {len(gathers)}")
    return gathers[0].input[0]


def _ancestors(graph, tensor: str) -> set[int]:
    """Return the indices of the nodes ``tensor`` depends on."""
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output}
    seen: set[int] = set()
    todo = [tensor]
    while todo:
        i = producer.get(todo.pop())
        if i is None or i in seen:
            continue
        seen.add(i)
        todo.extend(graph.node[i].input)
    return seen


def _graph_input(graph, name: str):
    return next(i for i in graph.input if i.name == name)


def _value_info(proto, name: str, path: Path):
    """Return the typed value info of an intermediate tensor (from the file, or by shape inference)."""
    import onnx

    found = [v for v in proto.graph.value_info if v.name == name]
    if not found:
        inferred = onnx.shape_inference.infer_shapes(proto)
        found = [v for v in inferred.graph.value_info if v.name == name]
    if not found or not found[0].type.tensor_type.elem_type:
        raise ModelMetadataError(f"{path}: the type of the visual features {name!r} is unknown")
    return found[0]


def _subgraph(proto, nodes, inputs, outputs, name: str):
    """Return a model of ``nodes`` with the initializers they use and the parent's opsets and metadata."""
    import onnx

    used = {t for n in nodes for t in n.input}
    initializers = [t for t in proto.graph.initializer if t.name in used]
    graph = onnx.helper.make_graph(nodes, f"{proto.graph.name}-{name}", inputs, outputs, initializers)
    keep = {t for n in nodes for t in (*n.input, *n.output)}
    graph.value_info.extend(v for v in proto.graph.value_info if v.name in keep)
    model = onnx.helper.make_model(graph, opset_imports=list(proto.opset_import))
    model.ir_version = proto.ir_version
    model.metadata_props.extend(proto.metadata_props)
    return model
