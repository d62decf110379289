"""Options of an export, defined once: ``ExportOptions`` is the API, and ``ccs-export`` reads each flag's default
from it (tests/test_cli_options.py). Light to import: no torch, no onnx."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ccstereo.runtime.engine_cache import BatchProfile

DEFAULT_OPSET = 18
DEFAULT_CALIBRATION_WINDOWS = 256  # int8 calibration windows, spread over the calibration videos


class Switch(str, Enum):
    """A step that runs when it can (auto), must run (on) or is skipped (off)."""

    auto = "auto"
    on = "on"
    off = "off"


@dataclass(frozen=True)
class ExportOptions:
    out_dir: Path
    fp16: bool = True
    engine: str = Switch.auto.value  # TensorRT engine: auto (when a GPU is present) | on | off
    profile: BatchProfile = field(default_factory=BatchProfile)
    opset: int = DEFAULT_OPSET
    verify: bool = True
    fp32_islands: tuple[str, ...] | None = None  # None = auto (measure when verifying)
    verify_clip: Path | None = None
    verify_frames: Path | None = None
    int8: str = Switch.auto.value  # auto (when OpenVINO is installed) | on | off
    calibrate: tuple[Path, ...] = ()  # videos whose windows calibrate int8 (default: the verification set)
    calibration_windows: int = DEFAULT_CALIBRATION_WINDOWS
    # recorded in the graphs' metadata: the checkpoint was trained with mirror augmentation (ccs-train --mirror),
    # so ccs-run runs mirror test-time augmentation by default (RunOptions.mirror)
    mirror_tta: bool = False

    def __post_init__(self) -> None:
        for name in ("engine", "int8"):
            if getattr(self, name) not in [s.value for s in Switch]:
                raise ValueError(f"{name} must be auto, on or off, not {getattr(self, name)!r}")
        if self.calibration_windows < 1:
            raise ValueError("calibration windows must be at least 1")
