"""INT8 for CPUs with VNNI / AMX-INT8: the visual network's convolutions quantised, everything else as it was.

Measured on this project's models (ccs-export report "int8"): the visual trunk + ASPP carry ~95 % of the
FLOPs of a window and tolerate 8-bit convolutions (per-channel symmetric weights, per-tensor uint8
activations calibrated on real windows: ~45-50 dB binaural SNR vs fp32), while quantising the audio U-Net as
well costs ~15 dB more and gains nothing measurable, so its convolutions stay in floating point.

Activation ranges come from entropy (KL) calibration: on six held-out synthetic scenes of the bundled model it
gave a worst-scene SNR of 29 dB where percentile-99.999 gave 24 dB and min-max 29 dB (with min-max worse on
the other scenes). What matters most is variety: 256 windows from 24 different scenes lifted the worst of those
six scenes to 43 dB (from 29 dB with 248 windows from 6 scenes); 768 windows from the same 24 did not add more.

The result is a QDQ graph (QuantizeLinear/DequantizeLinear pairs around each quantised Conv), which OpenVINO's
CPU plugin fuses into int8 convolutions. Calibration windows go through the runtime's own decode
and crop path (``--calibrate VIDEO``), or are the verification set's windows when no video is given.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ccstereo.config import ModelConfig
from ccstereo.export.fp16 import node_scope
from ccstereo.export.onnx_graph import get_metadata, save_onnx, set_metadata

QUANTISED_SCOPE = "visual"  # module path prefix of the convolutions that run in int8
QUANTISED_OPS = ("Conv",)
CALIBRATION_BATCH = 8
PERCENTILE = 99.999
# The calibrator keeps every calibrated tensor of every batch until it builds its histograms: 256 windows of the
# bundled default hold 4.7 GB, of an EfficientNet-Lite0 model (its wide, high-resolution early layers) 24 GB, more
# than this machine has. Beyond this budget the batches are collected in chunks that fit it (ranges merged).
CALIBRATION_MEMORY = 6 * 2**30


@dataclass(frozen=True)
class CalibrationBatch:
    frames: np.ndarray  # [F, H, W, 3] uint8
    mono: np.ndarray  # [B, window] float32
    frame_index: np.ndarray  # [B] int64

    def feeds(self) -> dict[str, np.ndarray]:
        return {"frames": self.frames, "mono": self.mono, "frame_index": self.frame_index}


def quantised_nodes(proto: onnx.ModelProto) -> list[str]:
    """Return the names of the Conv nodes that run in int8 (the visual network's)."""
    return [
        n.name for n in proto.graph.node if n.op_type in QUANTISED_OPS and node_scope(n).startswith(QUANTISED_SCOPE)
    ]


def batches_from_arrays(
    crops: np.ndarray, mono: np.ndarray, frame_index: np.ndarray, limit: int
) -> list[CalibrationBatch]:
    """Split windows into calibration batches of equal shape, at most ``limit`` windows.

    The calibrator stacks the tensors it sees across batches, so every batch has ``CALIBRATION_BATCH`` windows
    with one frame each (frames gathered per window; a short tail is dropped unless it is all there is).
    """
    count = min(limit, len(mono))
    size = min(CALIBRATION_BATCH, count)
    out = []
    for start in range(0, count - size + 1, size):
        sel = np.arange(start, start + size)
        out.append(CalibrationBatch(crops[frame_index[sel]], mono[sel], np.arange(size, dtype=np.int64)))
    return out


def batches_from_videos(videos: Sequence[Path], config: ModelConfig, limit: int) -> list[CalibrationBatch]:
    """Return calibration batches from media files, decoded and cropped exactly as ``ccs-run`` does.

    Windows are spread over the videos: each contributes up to ``limit / len(videos)`` windows, evenly spaced
    over its whole length (at 0.1 s hops for short videos, up to one window apart for long ones).
    """
    from ccstereo.runtime.media import open_input
    from ccstereo.runtime.report import StageTimes
    from ccstereo.runtime.stream import Batch, Batching, windows_from
    from ccstereo.runtime.windows import WindowPlan

    if not videos:
        raise ValueError("no calibration video given")
    quota = max(1, limit // len(videos))
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    for video in videos:
        media = open_input(video)
        samples = int(media.info.duration_s * config.sample_rate_hz)
        # Decode at a hop of up to one window (fewer windows to cut in long videos), then keep ``quota`` of
        # them evenly spread over the whole length.
        stride = max(1, WindowPlan.for_config(config).count(samples) // quota)
        plan = WindowPlan.for_config(config, min(config.window_samples, config.hop_samples * stride))
        count = max(1, plan.count(samples))
        wanted = set(np.unique(np.round(np.linspace(0, count - 1, min(quota, count))).astype(int)).tolist())
        items = windows_from(media, Batching(plan, config, CALIBRATION_BATCH), StageTimes())
        crops: list[np.ndarray] = []
        monos: list[np.ndarray] = []
        k = 0
        for item in items:
            if not isinstance(item, Batch):
                break
            for j in range(len(item.starts)):
                if k + j in wanted:
                    crops.append(item.frames[item.frame_index[j]])
                    monos.append(item.mono[j])
            k += len(item.starts)
        if monos:
            windows.append((np.stack(crops), np.stack(monos)))
    if not windows:
        raise ValueError("no calibration window could be cut from the videos")
    crop_arr = np.concatenate([c for c, _ in windows])
    mono_arr = np.concatenate([m for _, m in windows])
    return batches_from_arrays(crop_arr, mono_arr, np.arange(len(mono_arr)), limit)


def calibrated_bytes_per_batch(proto: onnx.ModelProto, op_types: Sequence[str] = QUANTISED_OPS) -> int:
    """Bytes of the tensors the calibrator keeps per batch (float32), from ONNX shape inference at
    ``CALIBRATION_BATCH`` windows and frames; 0 when a shape is not known. onnxruntime's calibrator collects the
    inputs and outputs of EVERY node of ``op_types``, not only of the nodes it quantises (the audio U-Net's
    convolutions included): a budget counted over the quantised nodes alone ran a 7-node int8 out of memory."""
    shapes = _shapes_at_calibration_batch(proto)
    sizes = [int(np.prod(shapes.get(name) or [0])) for name in calibrated_tensors(proto, op_types, shapes)]
    return 0 if not sizes or 0 in sizes else 4 * sum(sizes)


def calibrated_tensors(
    proto: onnx.ModelProto, op_types: Sequence[str], shapes: dict[str, list[int]] | None = None
) -> set[str]:
    """Names of the tensors onnxruntime's calibrator collects: the inputs and outputs of every ``op_types`` node
    that are computed (not weights) and have a known tensor shape."""
    shapes = _shapes_at_calibration_batch(proto) if shapes is None else shapes
    weights = {t.name for t in proto.graph.initializer}
    return {
        name
        for n in proto.graph.node
        if n.op_type in op_types
        for name in (*n.input, *n.output)
        if name and name in shapes and name not in weights
    }


def _shapes_at_calibration_batch(proto: onnx.ModelProto) -> dict[str, list[int]]:
    """Float tensor name -> shape (0 where unknown), by ONNX shape inference with every free input dimension set
    to ``CALIBRATION_BATCH``."""
    from onnx import shape_inference

    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for value in fixed.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = CALIBRATION_BATCH
    graph = shape_inference.infer_shapes(fixed, data_prop=True).graph
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
        for v in [*graph.value_info, *graph.input, *graph.output]
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type in floats
    }


def batches_per_chunk(count: int, per_batch: int, budget: int) -> int:
    """How many batches the calibrator collects at a time: all of them when they fit ``budget`` (or the size is
    unknown), else the largest divisor of ``count`` (onnxruntime's chunks are equal) whose batches fit it, >= 1."""
    if per_batch <= 0 or count * per_batch <= budget:
        return count
    most = max(1, budget // per_batch)
    return max(d for d in range(1, min(most, count) + 1) if count % d == 0)


def quantize(
    fp32_path: Path,
    batches: Sequence[CalibrationBatch],
    out_path: Path,
    method: str = "entropy",
    memory_budget: int = CALIBRATION_MEMORY,
) -> dict:
    """Write the QDQ int8 graph of ``fp32_path`` to ``out_path``; return a summary (nodes, calibration).
    ``memory_budget``: bytes of calibrated tensors held at once (``CALIBRATION_MEMORY``)."""
    if not batches:
        raise ValueError("int8 calibration needs at least one window")
    proto = onnx.load(str(fp32_path))
    nodes = quantised_nodes(proto)
    if not nodes:
        raise ValueError(f"{fp32_path}: no visual convolutions found (node scopes missing?)")
    chunk = batches_per_chunk(len(batches), calibrated_bytes_per_batch(proto), memory_budget)
    with tempfile.TemporaryDirectory(prefix="ccs-int8-") as tmp:
        staged = Path(tmp) / "model.int8.onnx"
        _quantize_static(fp32_path, staged, batches, nodes, method, chunk)
        quantised = onnx.load(str(staged))
    summary = {
        "quantised_convs": len(nodes),
        "scope": QUANTISED_SCOPE,
        "calibration_windows": _windows(batches),
        "calibration": method,
    }
    info = dataclasses.replace(get_metadata(proto, fp32_path), path=out_path, precision="int8", int8=summary)
    del quantised.metadata_props[:]
    set_metadata(quantised, info)
    save_onnx(quantised, out_path)
    total_convs = sum(1 for n in proto.graph.node if n.op_type == "Conv")
    return {
        "quantised_convs": len(nodes),
        "float_convs": total_convs - len(nodes),
        "scope": QUANTISED_SCOPE,
        "calibration_windows": _windows(batches),
        "calibration": f"{method} activation ranges (uint8), per-channel int8 weights",
    }


def _quantize_static(
    fp32_path: Path, staged: Path, batches: Sequence[CalibrationBatch], nodes: list[str], method: str, chunk: int
) -> None:
    """Run onnxruntime's static QDQ quantiser on the ``nodes`` Convs, calibrated on ``batches``, ``chunk`` batches
    collected at a time (all at once: onnxruntime's plain path; fewer: its strided one, ranges merged)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
    }

    # (No "CalibMaxIntermediateOutputs": onnxruntime 1.32's min-max calibrator drops what it holds at that count
    # without taking its range first, so only the batches after the last drop counted.)
    options: dict = {"CalibPercentile": PERCENTILE}
    if chunk < len(batches):
        options["CalibStridedMinMax"] = chunk  # onnxruntime's name; it chunks every calibration method

    quantize_static(
        str(fp32_path),
        str(staged),
        _reader(batches),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTISED_OPS),
        nodes_to_quantize=nodes,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[method],
        extra_options=options,
    )


def _reader(batches: Sequence[CalibrationBatch]):
    """onnxruntime's calibration reader over ``batches``; ``set_range`` narrows it to one chunk of them."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items = iter(batches[start_index:end_index])

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else batch.feeds()

    return Reader()


def _windows(batches: Sequence[CalibrationBatch]) -> int:
    return int(sum(len(b.mono) for b in batches))


def set_measured(path: Path, snr_db: dict[str, float], worst_metric_change: dict[str, float]) -> None:
    """Record measured accuracy per reduced precision (vs fp32) in the metadata of the model file ``path``."""
    proto = onnx.load(str(path))
    info = get_metadata(proto, path)
    info = dataclasses.replace(
        info,
        measured_snr_db={**info.measured_snr_db, **snr_db},
        measured_worst_metric_change={**info.measured_worst_metric_change, **worst_metric_change},
    )
    set_metadata(proto, info)
    save_onnx(proto, path)
