"""Where does a reduced precision lose? The visual network of an exported model, layer by layer: the SNR of each
module's output under OpenVINO bf16 (this CPU) against OpenVINO fp32, on the model's own verification frames.

    python benchmarks/precision_layers.py [MODEL_DIR ...] [--depth 4] [--json out.json]

``ccs-export`` measures a precision once, at the output (binaural SNR vs fp32); when it refuses one (below the
35 dB of ``auto``) this says which layers lose it. Each module (the exported nodes' scope, cut at ``--depth``
name parts) is represented by the output of its last node; every such tensor becomes a graph output of the visual
half of the window graph (``runtime.graph_split``), compiled twice. A well-conditioned trunk loses a few dB over
its depth; one that amplifies its inputs' rounding shows a step at the layer that does. On a CPU without native
bf16 OpenVINO emulates it (slow, the same figures).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ccstereo.atomic import write_text
from ccstereo.export.fp16 import node_scope
from ccstereo.runtime.graph_split import split_window_graph
from ccstereo.runtime.verification import snr_db
from ccstereo.testing.bench import cpu_name


def layer_outputs(visual, depth: int) -> dict[str, str]:
    """Module scope (its first ``depth`` name parts) -> the output tensor of its last node, in the order of those
    last nodes (a module's row comes after the modules inside it)."""
    last: dict[str, tuple[int, str]] = {}
    for index, node in enumerate(visual.graph.node):
        scope = ".".join(node_scope(node).split(".")[:depth])
        if node.output and scope.startswith("visual"):
            last[scope] = (index, node.output[0])
    return {scope: tensor for scope, (_, tensor) in sorted(last.items(), key=lambda item: item[1][0])}


def measure(model_dir: Path, depth: int) -> list[dict]:
    """Rows of (module, shape, SNR dB, absmax) for one exported model folder."""
    import onnx
    import openvino as ov

    split = split_window_graph(model_dir / "model.onnx")
    visual = onnx.load_from_string(split.visual)
    layers = {**layer_outputs(visual, depth), "features": split.features}
    present = {o.name for o in visual.graph.output}
    for tensor in layers.values():
        if tensor not in present:
            visual.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
            present.add(tensor)
    frames = np.ascontiguousarray(np.load(model_dir / "verification.npz")["frames"])
    core = ov.Core()
    graph = core.read_model(visual.SerializeToString(), b"")
    outputs = {}
    for hint in ("f32", "bf16"):
        compiled = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        outputs[hint] = {port.get_any_name(): value for port, value in compiled({"frames": frames}).items()}
    rows = []
    for module, tensor in layers.items():
        ref, test = outputs["f32"][tensor], outputs["bf16"][tensor]
        rows.append({"module": module, "shape": list(ref.shape), "snr_db": snr_db(test, ref),
                     "absmax": float(np.abs(ref).max())})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path, default=[Path("runtime/assets/default")])
    parser.add_argument("--depth", type=int, default=4, help="name parts of a module scope (visual.trunk.blocks.3)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; OpenVINO bf16 vs fp32, each module's output on the model's verification frames")
    results = {}
    for model_dir in args.models:
        results[str(model_dir)] = rows = measure(model_dir, args.depth)
        print(f"\n{model_dir}\n| module | output | SNR | abs max |\n|---|---|---|---|")
        for row in rows:
            shape = "x".join(map(str, row["shape"]))
            print(f"| {row['module']} | {shape} | {row['snr_db']:.1f} dB | {row['absmax']:.3g} |")
    if args.json:
        write_text(args.json, json.dumps({"cpu": cpu_name(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
