"""What each step of an export produced, as frozen results composed into the report (export_report.json).

``ExportReport.to_dict`` is the report's JSON layout: one entry per step (``onnx``, ``fp16``, ``bf16``,
``int8``, ``engine``) beside the checkpoint's identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ccstereo.export.cpu_precisions import Bf16Result, Int8Result
from ccstereo.runtime import verification


@dataclass(frozen=True)
class GraphFile:
    """An ONNX file written by the export."""

    file: str
    sha256: str
    op_counts: dict[str, int]


@dataclass(frozen=True)
class Fp32Check:
    """model.onnx vs PyTorch on the verification windows."""

    max_abs_err: float
    peak: float
    err_over_peak: float
    windows: int


@dataclass(frozen=True)
class Fp16Check:
    """model.fp16.onnx vs model.onnx on the verification windows."""

    binaural_snr_db: float
    metrics_fp32: dict[str, float]
    metrics_fp16: dict[str, float]
    metric_rel_change: dict[str, float]
    engine: str = "onnxruntime CPUExecutionProvider running the FP16 graph"


@dataclass(frozen=True)
class Fp32Result:
    graph: GraphFile
    verify: Fp32Check | None = None

    def to_report(self) -> dict[str, Any]:
        return {**asdict(self.graph), **({} if self.verify is None else {"verify": asdict(self.verify)})}


@dataclass(frozen=True)
class Fp16Result:
    graph: GraphFile
    fp32_islands: dict[str, dict[str, Any]]  # island -> nodes, op types, why it stays FP32
    casts_inserted: int
    fp16_nodes: int
    verify: Fp16Check | None = None
    island_ablation_db: dict[str, float] | None = None  # when the islands were measured

    def to_report(self) -> dict[str, Any]:
        entry = {
            **asdict(self.graph),
            "fp32_islands": self.fp32_islands,
            "casts_inserted": self.casts_inserted,
            "fp16_nodes": self.fp16_nodes,
        }
        return {**entry, **({} if self.verify is None else {"verify": asdict(self.verify)})}


@dataclass(frozen=True)
class EngineResult:
    built: bool
    reason: str = ""
    file: str = ""
    device: str = ""
    profile: dict[str, int] | None = None

    def to_report(self) -> dict[str, Any]:
        if not self.built:
            return {"built": False, "reason": self.reason}
        return {"built": True, "file": self.file, "device": self.device, "profile": self.profile}


@dataclass(frozen=True)
class ExportReport:
    checkpoint: str
    checkpoint_sha256: str
    config: dict[str, Any]
    exporter: str
    opset: int
    onnx: Fp32Result
    verification_set: str | None
    fp16: Fp16Result | None
    bf16: Bf16Result | None  # None: not measured (--no-verify)
    int8: Int8Result
    engine: EngineResult
    seconds: float = 0.0
    mirror_tta: bool = False  # ccs-export --mirror-tta: recorded in every graph's metadata

    def to_dict(self) -> dict[str, Any]:
        """Return the report as export_report.json holds it."""
        out: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "config": self.config,
            "exporter": self.exporter,
            "opset": self.opset,
            "mirror_tta": self.mirror_tta,
            "onnx": self.onnx.to_report(),
        }
        if self.verification_set is not None:
            out["verification_set"] = self.verification_set
            # its first windows and the fp32 graph's outputs, for the runtime's on-this-CPU accuracy check
            out["verification_file"] = verification.FILE_NAME
        if self.fp16 is not None:
            if self.fp16.island_ablation_db is not None:
                out["island_ablation_db"] = self.fp16.island_ablation_db
            out["fp16"] = self.fp16.to_report()
        if self.bf16 is not None:
            out["bf16"] = self.bf16.to_report()
        out["int8"] = self.int8.to_report()
        out["engine"] = self.engine.to_report()
        out["seconds"] = self.seconds
        return out
