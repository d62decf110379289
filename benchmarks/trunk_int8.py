"""Can a visual trunk run in int8 on this CPU, and is int8 then faster? Today's default trunk (half-width ResNet-18,
its trained weights from the bundled graph) against EfficientNet-Lite0 with its ImageNet weights, alone, each in
OpenVINO fp32, bf16 and int8 — the int8 graph made as ``ccs-export`` makes one (onnxruntime's static QDQ quantiser,
per-channel int8 weights, uint8 activations, entropy ranges) and run as ``ccs-run`` runs one (OpenVINO, no precision
hint: the float parts in bf16 where the CPU has it).

    python benchmarks/trunk_int8.py [--trunks default lite0:11] [--float-first 0 12] [--batch 32] [--rounds 3]
                                    [--profile]

Pictures: training-side backgrounds (``ccstereo.synth.real_assets``, fetched once), cropped as the model's V-TTA
crops; the first half calibrates, the other half is measured. SNR: the trunk's output against PyTorch fp32 on the
measured half. ``--float-first N``: an int8 graph whose first N convolutions (graph order; 12 = Lite0's stem and
its first four blocks, where its bf16 loss begins) stay float. Time: ms per crop at batch ``--batch`` on one
thread, each engine of each trunk in turn, the median of ``--rounds``. ``--profile``: OpenVINO's per-layer times of
one batch, summed per (layer type, kernel), for every engine: where an int8 graph's time goes besides its
convolutions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccstereo.config import ModelConfig
from ccstereo.runtime.verification import snr_db
from ccstereo.testing.bench import cpu_name

CONFIG = ModelConfig()


def load_trunk(name: str) -> torch.nn.Module:
    """``default``: the bundled model's trunk (its graph has BatchNorm folded); ``lite0[:N]``: ImageNet's, folded."""
    if name == "default":
        from ccstereo.model.from_onnx import model_from_onnx

        return model_from_onnx(Path(__file__).parents[1] / "runtime/assets/default/model.onnx").visual.trunk.eval()
    from ccstereo.model import CCStereo
    from ccstereo.model.efficientnet import LITE0_BLOCKS, load_imagenet_weights
    from ccstereo.model.fold import fold_batchnorms

    blocks = int(name.partition(":")[2] or LITE0_BLOCKS)
    config = ModelConfig(resnet_width=32, aspp_hidden=128, visual_trunk="efficientnet_lite0", lite0_blocks=blocks)
    model = CCStereo(config).eval()
    load_imagenet_weights(model.visual.trunk)  # type: ignore[arg-type]
    return fold_batchnorms(model).visual.trunk.eval()


def pictures(count: int, rng: np.random.Generator) -> np.ndarray:
    """[2 * count, 3, 224, 448] ImageNet-normalised crops of training-side backgrounds (two crops each)."""
    from ccstereo.synth.real_assets import load_assets

    crops = []
    backgrounds = load_assets("train").backgrounds
    for path in [backgrounds[i] for i in rng.permutation(len(backgrounds))[:count]]:
        image = np.asarray(Image.open(path).convert("RGB").resize((CONFIG.resize_width, CONFIG.resize_height)))
        for _ in range(2):
            x = rng.integers(0, CONFIG.resize_width - CONFIG.crop_width + 1)
            y = rng.integers(0, CONFIG.resize_height - CONFIG.crop_height + 1)
            crops.append(image[y : y + CONFIG.crop_height, x : x + CONFIG.crop_width])
    scaled = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    mean = np.asarray(CONFIG.imagenet_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CONFIG.imagenet_std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((scaled - mean) / std)


def quantised(fp32: Path, calibration: np.ndarray, float_first: int) -> Path:
    """The int8 QDQ graph of ``fp32`` as ``ccs-export`` makes one, its first ``float_first`` Convs left float."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": calibration[i : i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self):
            return next(self.items, None)

    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    out = fp32.with_name(f"{fp32.stem}.int8-{float_first}.onnx")
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    nodes_to_quantize=convs[float_first:], per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy)  # fmt: skip
    return out


def engines(trunk: torch.nn.Module, name: str, calibration: np.ndarray, float_first: list[int], folder: Path,
            counting: bool = False):  # fmt: skip
    """{engine label: compiled OpenVINO model} for one trunk (``counting``: with OpenVINO's per-layer counters)."""
    from ccstereo.runtime.openvino_import import core

    path = folder / f"{name.replace(':', '_')}.onnx"
    example = torch.from_numpy(calibration[:1])
    torch.onnx.export(trunk, (example,), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
    ov = core()
    found = {f"{hint}": ov.compile_model(str(path), "CPU", _config(hint, counting)) for hint in ("f32", "bf16")}
    for n in float_first:
        label = "int8" if n == 0 else f"int8, first {n} convs float"
        found[label] = ov.compile_model(str(quantised(path, calibration, n)), "CPU", _config(None, counting))
    return found


def _config(hint: str | None, counting: bool) -> dict:
    config: dict = {"INFERENCE_NUM_THREADS": 1, "PERF_COUNT": counting}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    return config


def _ms(compiled, batch: np.ndarray) -> float:
    compiled(batch)  # warm
    start = time.perf_counter()
    compiled(batch)
    return (time.perf_counter() - start) * 1000 / len(batch)


def profile(compiled, batch: np.ndarray, top: int = 6) -> str:
    """The ``top`` (layer type, kernel) pairs by OpenVINO's measured time of one batch, ms per crop."""
    request = compiled.create_infer_request()
    request.infer({0: batch})
    totals: dict[tuple[str, str], float] = {}
    for layer in request.profiling_info:
        key = (layer.node_type, layer.exec_type)
        totals[key] = totals.get(key, 0.0) + layer.real_time.total_seconds() * 1000 / len(batch)
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{kind} {kernel} {ms:.2f}" for (kind, kernel), ms in ranked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trunks", nargs="+", default=["default", "lite0:11"])
    parser.add_argument("--float-first", nargs="+", type=int, default=[0, 12])
    parser.add_argument("--pictures", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    crops = pictures(args.pictures, np.random.default_rng(0))
    calibration, measured = crops[: len(crops) // 2], crops[len(crops) // 2 :]
    batch = np.ascontiguousarray(np.resize(measured, (args.batch, *measured.shape[1:])))
    with tempfile.TemporaryDirectory() as tmp:
        trunks = {name: load_trunk(name) for name in args.trunks}
        found = {n: engines(t, n, calibration, args.float_first, Path(tmp), args.profile) for n, t in trunks.items()}
        snr = {}
        for name, trunk in trunks.items():
            with torch.no_grad():
                reference = trunk(torch.from_numpy(measured)).numpy()
            snr[name] = {label: snr_db(next(iter(c(measured).values())), reference) for label, c in found[name].items()}
        times: dict = {name: {label: [] for label in per} for name, per in found.items()}
        for _ in range(args.rounds):
            for name, per in found.items():
                for label, compiled in per.items():
                    times[name][label].append(_ms(compiled, batch))
        profiles = {(n, label): profile(c, batch) for n, per in found.items() for label, c in per.items()}
        profiles = profiles if args.profile else {}
    print(f"CPU: {cpu_name()}; trunk alone, batch {args.batch}, one thread, median of {args.rounds} rounds; SNR of "
          f"its output against PyTorch fp32 on {len(measured)} crops of training-side pictures\n")  # fmt: skip
    print("| trunk | engine | ms per crop | SNR vs fp32 (dB) |\n|---|---|---|---|")
    for name, per in times.items():
        for label, values in per.items():
            print(f"| {name} | OpenVINO {label} | {statistics.median(values):.2f} | {snr[name][label]:.1f} |")
    if profiles:
        print("\nOpenVINO's per-layer times of one batch, ms per crop (layer type, kernel):")
        for (name, label), line in profiles.items():
            print(f"- {name}, {label}: {line}")


if __name__ == "__main__":
    main()
