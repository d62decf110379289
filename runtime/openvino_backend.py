"""OpenVINO backend for CPUs: the exported FP32 graph run with an inference-precision hint (bf16 on AMX/AVX512-BF16
CPUs, f32 elsewhere). Offered in bf16 only when the export measured its accuracy (metadata ``ccstereo.bf16_snr_db``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ccstereo.runtime.backend import as_feeds
from ccstereo.runtime.errors import BackendUnavailableError
from ccstereo.runtime.model_info import ModelInfo, read_onnx_info

MIN_OFFERED_SNR_DB = 30.0  # no precision below this binaural SNR vs fp32 is offered to users


def openvino_bf16_capable() -> bool:
    """Return True when OpenVINO is installed and the CPU plugin reports native BF16."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINOBackend:
    """Run ``model.onnx`` with OpenVINO's CPU plugin at ``precision`` ('bf16' or 'f32')."""

    def __init__(
        self,
        model_path: str | Path,
        precision: str = "bf16",
        max_batch: int = 32,
        threads: int | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        """``info``: the model's metadata when the caller has already read it (saves a second read)."""
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("openvino is not installed (pip install '.[cpu]')") from exc
        self.info = info if info is not None else read_onnx_info(model_path)
        if precision not in ("bf16", "f32"):
            raise ValueError(f"OpenVINO precision must be bf16 or f32, not {precision!r}")
        if precision == "bf16":
            measured = self.info.measured_snr_db.get("bf16")
            if measured is None:
                raise BackendUnavailableError(
                    f"{model_path}: bf16 accuracy was not measured at export; re-export "
                    "with openvino installed (ccs-export) or use --precision fp32"
                )
            if measured < MIN_OFFERED_SNR_DB:
                raise BackendUnavailableError(
                    f"{model_path}: bf16 measured {measured:.1f} dB SNR vs fp32 "
                    f"(< {MIN_OFFERED_SNR_DB} dB): not offered"
                )
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or os.cpu_count() or 1,
        }
        self.compiled = core.compile_model(core.read_model(str(model_path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.name = f"openvino-cpu-{precision}"
        self.max_batch = max_batch

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        feeds = as_feeds(frames, mono, frame_index)
        result = self.request.infer(feeds)
        return np.array(result[self.output], dtype=np.float32, copy=True)
