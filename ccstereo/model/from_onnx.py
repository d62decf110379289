"""Recover a trainable CCStereo from an fp32 ONNX file that ``ccs-export`` wrote.

The export folds every BatchNorm into the convolution before it (``ccstereo.model.fold``), so the weights in the
graph are the folded ones. They are put back into the unfolded PyTorch model with every BatchNorm set to the
identity (running mean 0, running variance 1 - eps, scale 1) and the folded bias carried by the convolution where
it has one, else by the BatchNorm's shift. In eval mode the recovered model computes what the ONNX graph computes;
folding it again gives the same graph. Training from it must keep the BatchNorm statistics frozen
(``ccs-train --init model.onnx --frozen-bn``): batch statistics would replace the identity.

The file is untrusted input: only initializers are read (no code), the config comes from the graph's metadata and
is validated, and every tensor must have the shape the config implies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ccstereo.checkpoint import CheckpointError
from ccstereo.config import ConfigError, ModelConfig
from ccstereo.model.efficientnet import ConvBN, EfficientNetLite0Trunk
from ccstereo.model.network import CCStereo
from ccstereo.model.resnet import BasicBlock

# Graph constants that the model computes itself from its config (buffers, not weights).
_DERIVED = ("stft.", "istft.", "real_eps", "pixel_mean", "pixel_std", "audio.freq_resize", "visual.trunk.in_s")


def _visual_bn_pairs(model: CCStereo) -> list[tuple[str, nn.BatchNorm2d, slice]]:
    """(conv name, the BatchNorm after it, its channels in that BatchNorm) for the convs that have no bias."""
    pairs: list[tuple[str, nn.BatchNorm2d, slice]] = []
    trunk, aspp = model.visual.trunk, model.visual.aspp
    every = slice(None)
    if isinstance(trunk, EfficientNetLite0Trunk):
        for name, module in trunk.named_modules():
            if isinstance(module, ConvBN):
                pairs.append((f"visual.trunk.{name}.conv", module.bn, every))  # type: ignore[arg-type]
    else:
        pairs.append(("visual.trunk.conv1", trunk.bn1, every))
    for name, module in trunk.named_modules():
        if isinstance(module, BasicBlock):
            prefix = f"visual.trunk.{name}"
            pairs += [(f"{prefix}.conv1", module.bn1, every), (f"{prefix}.conv2", module.bn2, every)]
            if module.downsample is not None:
                pairs.append((f"{prefix}.downsample.0", module.downsample[1], every))
    width = aspp.map_convs[0].out_channels
    for i in range(len(aspp.map_convs)):
        pairs.append((f"visual.aspp.map_convs.{i}", aspp.map_bn, slice(i * width, (i + 1) * width)))
    pairs.append(("visual.aspp.global_pooling_conv", aspp.global_pooling_bn, every))
    pairs.append(("visual.aspp.red_conv", aspp.red_bn, every))
    return pairs


def _attention_weights(graph, initial: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Name the fusion's linear layers, which the exporter stores transposed under generated names.

    They are found by what consumes them: each MatMul whose second input is a [C, C] constant, in graph order,
    is q, k, v, out of the cross attention, then q, k, v, out of the self attention, then ffn1, ffn2; the bias
    added right after a q/k/v MatMul is that projection's part of the packed in_proj_bias.
    """
    order: list[tuple[str, str | None]] = []
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initial or initial[node.input[1]].ndim != 2:
            continue
        if node.input[1].startswith("model."):
            continue
        bias = None
        for after in consumers.get(node.output[0], []):
            if after.op_type == "Add":
                other = [n for n in after.input if n != node.output[0]]
                if other and other[0] in initial and initial[other[0]].ndim == 1:
                    bias = other[0]
        order.append((node.input[1], bias))
    if len(order) != 10:
        raise ValueError(f"expected the fusion's 10 linear layers, found {len(order)} constant matrix products")
    out: dict[str, np.ndarray] = {}
    prefix = "audio.fusion."
    for block, chunk in (("cross_attn", order[0:4]), ("self_attn", order[4:8])):
        (q, qb), (k, kb), (v, vb), (o, _) = chunk
        if None in (qb, kb, vb):
            raise ValueError(f"{block}: a q/k/v projection without its bias")
        out[f"{prefix}{block}.in_proj_weight"] = np.concatenate([initial[n].T for n in (q, k, v)])
        out[f"{prefix}{block}.in_proj_bias"] = np.concatenate([initial[n] for n in (qb, kb, vb)])  # type: ignore[index]
        out[f"{prefix}{block}.out_proj.weight"] = initial[o].T
    out[f"{prefix}ffn1.weight"] = initial[order[8][0]].T
    out[f"{prefix}ffn2.weight"] = initial[order[9][0]].T
    # The exporter shares one initializer among equal tensors (an untrained LayerNorm's ones and zeros), so the
    # three LayerNorms are named by their nodes, which a data dependency orders: cross, self, ffn.
    norms = [node for node in graph.node if node.op_type == "LayerNormalization"]
    if len(norms) != 3:
        raise ValueError(f"expected the fusion's 3 LayerNormalization nodes, found {len(norms)}")
    for node, name in zip(norms, ("cross_norm", "self_norm", "ffn_norm"), strict=True):
        out[f"{prefix}{name}.weight"], out[f"{prefix}{name}.bias"] = initial[node.input[1]], initial[node.input[2]]
    return out


def model_from_onnx(path: str | Path) -> CCStereo:
    """Return the model stored in our fp32 ONNX export at ``path``, in eval mode, BatchNorms as the identity."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise CheckpointError(f"{path}: not a readable ONNX file: {' '.join(str(exc).split())[:200]}") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    if "ccstereo.config" not in meta:
        raise CheckpointError(f"{path}: no ccstereo.config metadata: not a graph that ccs-export wrote")
    if meta.get("ccstereo.precision", "fp32") != "fp32":
        raise CheckpointError(f"{path}: a {meta['ccstereo.precision']} graph; recover from the fp32 model.onnx")
    try:
        config = ModelConfig.from_json(meta["ccstereo.config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad config in metadata: {exc}") from exc
    initial = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    named = {k[len("model.") :]: v for k, v in initial.items() if k.startswith("model.")}
    try:
        named.update(_attention_weights(proto.graph, initial))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc

    model = CCStereo(config).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
                if module.affine:
                    module.weight.fill_(1.0)
                    module.bias.zero_()
        bias_to_bn = {conv: (bn, part) for conv, bn, part in _visual_bn_pairs(model)}
        used: set[str] = set()
        for name, value in named.items():
            if name.startswith(_DERIVED):
                continue
            tensor = torch.from_numpy(np.array(value, dtype=np.float32))
            owner = name.rsplit(".", 1)[0]
            if name in params:
                target = params[name]
            elif name.endswith(".bias") and owner in bias_to_bn:
                bn, part = bias_to_bn[owner]
                target = bn.bias[part]
            else:
                raise CheckpointError(f"{path}: weight {name} has no place in the model its config describes")
            if tuple(target.shape) != tuple(tensor.shape):
                raise CheckpointError(
                    f"{path}: {name} is {tuple(tensor.shape)}, the config implies {tuple(target.shape)}"
                )
            target.copy_(tensor)
            used.add(name)
    norms = {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    missing = [n for n in params if n not in used and n.rsplit(".", 1)[0] not in norms]
    if missing:
        raise CheckpointError(f"{path}: weights missing from the graph: {', '.join(missing[:5])}")
    return model
