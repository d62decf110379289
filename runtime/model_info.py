"""An exported model's metadata (ModelConfig, checkpoint hash, precision, measured accuracy): written by
ccs-export, read by the runtime without torch or onnx."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccstereo.config import ConfigError, ModelConfig
from ccstereo.runtime.errors import ModelMetadataError

PREFIX = "ccstereo."
REQUIRED_KEYS = ("ccstereo.config", "ccstereo.checkpoint_sha256", "ccstereo.precision", "ccstereo.opset")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model file says about itself: the one contract between ``ccs-export`` and the runtime.

    Stored as ``ccstereo.*`` string entries of the ONNX ``metadata_props`` (and of a TensorRT engine's
    sidecar); ``to_props`` writes them, ``from_props`` reads and validates them.
    """

    path: Path
    config: ModelConfig
    checkpoint_sha256: str
    precision: str
    opset: int
    exporter: str
    measured_snr_db: dict[str, float] = field(default_factory=dict)  # reduced precision -> SNR vs fp32
    # reduced precision -> largest relative change of a paper metric vs fp32 on the export's verification set
    measured_worst_metric_change: dict[str, float] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)  # how an int8 graph was quantised (empty otherwise)
    # the model maker's word that the model was trained left/right symmetric (mirror augmentation): ccs-run then
    # runs mirror test-time augmentation unless told otherwise (RunOptions.mirror; ccs-export --mirror-tta)
    mirror_tta: bool = False

    def to_props(self) -> dict[str, str]:
        """Return the metadata entries of this model (measured figures rounded as stored)."""
        props = {
            "ccstereo.config": self.config.to_json(),
            "ccstereo.checkpoint_sha256": self.checkpoint_sha256,
            "ccstereo.precision": self.precision,
            "ccstereo.opset": str(self.opset),
            "ccstereo.exporter": self.exporter,
        }
        if self.measured_snr_db:
            props["ccstereo.measured_snr_db"] = json.dumps({k: round(v, 2) for k, v in self.measured_snr_db.items()})
        if self.measured_worst_metric_change:
            worst = {k: round(v, 5) for k, v in self.measured_worst_metric_change.items()}
            props["ccstereo.measured_worst_metric_change"] = json.dumps(worst)
        if self.int8:
            props["ccstereo.int8"] = json.dumps(self.int8)
        if self.mirror_tta:
            props["ccstereo.mirror_tta"] = "true"
        return props

    @classmethod
    def from_props(cls, path: Path, props: dict[str, str]) -> ModelInfo:
        """Return the ModelInfo stored in ``props``; raise ModelMetadataError naming ``path`` when it is missing
        or inconsistent."""
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise ModelMetadataError(f"{path}: missing CCStereo metadata {missing}; export it with ccs-export")
        try:
            config = ModelConfig.from_json(props["ccstereo.config"])
        except ConfigError as exc:
            raise ModelMetadataError(f"{path}: inconsistent model config in metadata: {exc}") from exc
        try:
            opset = int(props["ccstereo.opset"])
        except ValueError as exc:
            raise ModelMetadataError(f"{path}: bad opset {props['ccstereo.opset']!r}") from exc
        precision = props["ccstereo.precision"]
        if precision not in PRECISIONS:
            raise ModelMetadataError(f"{path}: unknown precision {precision!r}")
        return cls(
            path,
            config,
            props["ccstereo.checkpoint_sha256"],
            precision,
            opset,
            props.get("ccstereo.exporter", ""),
            _json_dict(path, props, "ccstereo.measured_snr_db", float),
            _json_dict(path, props, "ccstereo.measured_worst_metric_change", float),
            _json_dict(path, props, "ccstereo.int8"),
            _flag(path, props, "ccstereo.mirror_tta"),
        )


def _flag(path: Path, props: dict[str, str], key: str) -> bool:
    """Return the boolean stored under ``key`` (False when absent): exactly "true" or "false"."""
    value = props.get(key, "false")
    if value not in ("true", "false"):
        raise ModelMetadataError(f"{path}: bad {key} metadata {value[:40]!r} (true or false)")
    return value == "true"


def _json_dict(path: Path, props: dict[str, str], key: str, value_type=None) -> dict[str, Any]:
    """Return the JSON object stored under ``key`` ({} when absent), its values made ``value_type`` if given."""
    try:
        value = json.loads(props.get(key, "{}"))
        if not isinstance(value, dict):
            raise TypeError(f"not an object: {value!r}")
        return value if value_type is None else {k: value_type(v) for k, v in value.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise ModelMetadataError(f"{path}: bad {key} metadata") from exc


def open_onnx_session(path: str | Path, options=None, providers: list | None = None):
    """Return an onnxruntime session of ``path``; an unreadable file becomes ModelMetadataError."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelMetadataError(f"{path}: no such model file")
    if options is None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelMetadataError(f"{path}: not a readable ONNX model: {exc}") from exc


def info_from_session(path: str | Path, session) -> ModelInfo:
    """Return the ModelInfo of an open onnxruntime session, checking its I/O against its own config."""
    path = Path(path)
    info = ModelInfo.from_props(path, dict(session.get_modelmeta().custom_metadata_map))
    check_io(
        path,
        info.config,
        {i.name: i.shape for i in session.get_inputs()},
        {o.name: o.shape for o in session.get_outputs()},
    )
    return info


def read_onnx_info(path: str | Path) -> ModelInfo:
    """Return the ModelInfo of an ONNX file, checking its I/O against its own config; read from the file's header
    (``runtime.onnx_header``: no engine, no onnx package, the weights untouched)."""
    from ccstereo.runtime.onnx_header import HeaderError, read_header

    path = Path(path)
    if not path.is_file():
        raise ModelMetadataError(f"{path}: no such model file")
    try:
        header = read_header(path)
    except (HeaderError, OSError) as exc:
        raise ModelMetadataError(f"{path}: not a readable ONNX model: {exc}") from exc
    for place in header.external:  # weights kept beside the graph must stay in its folder (no path traversal)
        folder = path.resolve().parent
        if not (folder / place).resolve().is_relative_to(folder):
            raise ModelMetadataError(f"{path}: external weights file {place!r} escapes the model's folder: refused")
    info = ModelInfo.from_props(path, header.props)
    check_io(path, info.config, header.inputs, header.outputs)
    return info


def check_io(path: Path, config: ModelConfig, inputs: dict[str, list], outputs: dict[str, list]) -> None:
    """Raise ModelMetadataError when the graph's I/O does not match its own config."""
    expected_in: dict[str, list[int | None]] = {
        "frames": [None, config.crop_height, config.crop_width, 3],
        "mono": [None, config.window_samples],
        "frame_index": [None],
    }
    expected_out: dict[str, list[int | None]] = {"binaural": [None, 2, config.window_samples]}
    for kind, actual, expected in (("input", inputs, expected_in), ("output", outputs, expected_out)):
        if set(actual) != set(expected):
            raise ModelMetadataError(f"{path}: {kind}s {sorted(actual)} != expected {sorted(expected)}")
        for name, shape in expected.items():
            got = list(actual[name])
            static = [d if isinstance(d, int) else None for d in got]
            if len(got) != len(shape) or static[1:] != shape[1:]:
                raise ModelMetadataError(f"{path}: {kind} {name!r} has shape {got}, config implies {shape}")
