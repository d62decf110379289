"""The visual encoder per V-TTA crop: today's half-width ResNet-18 against an ImageNet-trained EfficientNet-Lite0
(the same ASPP head and 7 x 14 x 128 output), on this CPU, through the engines ``ccs-run`` picks from.

    python benchmarks/trunk_speed.py [--trunks resnet18 lite0 lite0:11] [--batch 32] [--rounds 5] [--json out.json]

Why it exists: EfficientNet-Lite0 has fewer FLOPs (1.69 against 2.12 GFLOP per crop, ``torch.utils.flop_counter``)
but depthwise convolutions, which get little from AMX or VNNI; whether the pretrained trunk can be the runtime's
trunk is a measurement per CPU class, not a FLOP count. Random weights (speed does not depend on them); BatchNorms
folded as ``ccs-export`` folds them; each engine times both encoders interleaved, ``--rounds`` times; the figure is
the median ms per crop at batch ``--batch``. ``lite0:N``: Lite0's first N blocks (``ModelConfig.lite0_blocks``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ccstereo.config import ModelConfig
from ccstereo.model import CCStereo
from ccstereo.model.fold import fold_batchnorms
from ccstereo.testing.bench import cpu_name


def _config(trunk: str) -> ModelConfig:
    """``resnet18`` (the default's half width) | ``lite0`` | ``lite0:N``."""
    if trunk == "resnet18":
        return ModelConfig(resnet_width=32, aspp_hidden=128)
    from ccstereo.model.efficientnet import LITE0_BLOCKS

    blocks = int(trunk.partition(":")[2] or LITE0_BLOCKS)
    return ModelConfig(resnet_width=32, aspp_hidden=128, visual_trunk="efficientnet_lite0", lite0_blocks=blocks)


def export_encoder(trunk: str, folder: Path) -> tuple[Path, float]:
    """Return (ONNX file of the folded visual encoder, its GFLOP per crop)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = fold_batchnorms(CCStereo(_config(trunk)).eval())
    crop = torch.randn(1, 3, 224, 448)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.visual(crop)
    path = folder / f"{trunk.replace(':', '_')}.onnx"
    torch.onnx.export(model.visual, (crop,), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
    return path, counter.get_total_flops() / 1e9


def engines(path: Path) -> dict:
    """Return {engine name: callable(batch)} for the engines installed here."""
    import onnxruntime as ort

    found = {"onnxruntime fp32": _ort(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))}
    from ccstereo.runtime.cpu_features import native_bf16
    from ccstereo.runtime.openvino_import import core

    try:
        ov = core()
    except ImportError:  # no OpenVINO here
        return found
    found["openvino fp32"] = ov.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    if native_bf16():
        found["openvino bf16"] = ov.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    return found


def _ort(session):
    return lambda batch: session.run(None, {"x": batch})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trunks", nargs="+", default=["resnet18", "lite0", "lite0:11"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    batch = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 448)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        exported = {trunk: export_encoder(trunk, Path(tmp)) for trunk in args.trunks}
        runs = {trunk: engines(path) for trunk, (path, _) in exported.items()}
        times: dict[str, dict[str, list[float]]] = {name: {t: [] for t in runs} for name in runs[args.trunks[0]]}
        for _ in range(args.rounds):
            for name in times:
                for trunk, found in runs.items():
                    found[name](batch)  # warm
                    start = time.perf_counter()
                    found[name](batch)
                    times[name][trunk].append((time.perf_counter() - start) * 1000 / args.batch)
    print(f"CPU: {cpu_name()}; visual encoder per crop, batch {args.batch}, median of {args.rounds} interleaved\n")
    first, others = args.trunks[0], args.trunks[1:]
    heads = [f"{t}, ms" for t in args.trunks] + [f"{t} / {first}" for t in others]
    print(f"| engine | {' | '.join(heads)} |")
    print("|---|" + "---|" * (2 * len(args.trunks) - 1))
    rows = {}
    for name, per in times.items():
        ms = {trunk: statistics.median(per[trunk]) for trunk in args.trunks}
        rows[name] = {f"{trunk}_ms": value for trunk, value in ms.items()}
        ratios = " | ".join(f"{ms[t] / ms[first]:.2f}" for t in others)
        print(f"| {name} | {' | '.join(f'{v:.2f}' for v in ms.values())} | {ratios} |")
    gflop = {trunk: round(g, 3) for trunk, (_, g) in exported.items()}
    print(f"\nGFLOP per crop: {gflop}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "gflop": gflop, "ms_per_crop": rows}, indent=2))


if __name__ == "__main__":
    main()
