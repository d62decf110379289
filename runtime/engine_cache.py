"""TensorRT engine identity: cache keys, sidecar files and the check that refuses a mismatched engine.

Pure Python: computing, saving and comparing keys needs neither TensorRT nor a GPU, so it is tested here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ccstereo.atomic import write_text
from ccstereo.config import ModelConfig
from ccstereo.runtime.backends.protocol import DEFAULT_BATCH
from ccstereo.runtime.errors import EngineMismatchError

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class BatchProfile:
    """Optimisation profile of the dynamic batch (windows W, and distinct frames F with the same bounds)."""

    min_batch: int = 1
    opt_batch: int = DEFAULT_BATCH
    max_batch: int = 128

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    def shapes(self, config: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """Return input name -> (min, opt, max) shapes for the window graph."""
        frame = (config.crop_height, config.crop_width, 3)
        out = {}
        for name, tail in (("frames", frame), ("mono", (config.window_samples,)), ("frame_index", ())):
            out[name] = tuple((b, *tail) for b in (self.min_batch, self.opt_batch, self.max_batch))
        return out  # type: ignore[return-value]


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; an engine runs only where its key equals the machine's."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: BatchProfile

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> EngineKey:
        data = json.loads(text)
        data["profile"] = BatchProfile(**data["profile"])
        return cls(**data)

    def plan_name(self) -> str:
        """Return the engine file name: model.<gpu>.<trt-version>.<precision>.plan."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        return f"model.{gpu}.{self.tensorrt_version}.{self.precision}.plan"


def differences(built: EngineKey, here: EngineKey) -> list[str]:
    """Return human-readable differences between an engine's key and this machine's."""
    out = []
    for field in ("onnx_sha256", "tensorrt_version", "gpu_name", "compute_capability", "precision", "profile"):
        a, b = getattr(built, field), getattr(here, field)
        if a != b:
            out.append(f"{field}: engine has {a!r}, here {b!r}")
    return out


def sidecar_path(plan: Path) -> Path:
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def write_sidecar(plan: Path, key: EngineKey, model_metadata: dict[str, str]) -> Path:
    """Write ``<plan>.json``: the engine key and the ONNX model's ccstereo.* metadata."""
    path = sidecar_path(plan)
    payload = {"key": json.loads(key.to_json()), "model": dict(model_metadata)}
    return write_text(path, json.dumps(payload, sort_keys=True, indent=2))


def read_sidecar(plan: Path) -> tuple[EngineKey, dict[str, str]]:
    """Return (engine key, model metadata) from ``<plan>.json``."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise EngineMismatchError(f"{plan}: no sidecar {path.name}; rebuild the engine with ccs-export --engine")
    try:
        payload = json.loads(path.read_text())
        return EngineKey.from_json(json.dumps(payload["key"])), dict(payload["model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineMismatchError(f"{path}: unreadable engine key ({exc}); rebuild with ccs-export --engine") from exc


def check_engine(plan: Path, here: EngineKey) -> EngineKey:
    """Return the engine's key, or raise EngineMismatchError saying what differs and how to rebuild."""
    built, _ = read_sidecar(plan)
    diffs = differences(built, here)
    if diffs:
        raise EngineMismatchError(
            f"{plan} was built for another setup ({'; '.join(diffs)}). Rebuild it on this machine: "
            f"ccs-export CHECKPOINT -o {plan.parent} --engine"
        )
    return built
