"""Options of a run, defined once: the API's dataclasses, whose fields and defaults ``ccs-run`` exposes as flags
(tests/test_cli_options.py checks that every flag maps to a field with the same default)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ccstereo.runtime.errors import OptionError
from ccstereo.runtime.visual_rate import AdaptiveRate


class BackendName(str, Enum):
    """Which engine runs the model (``auto``: see ``ccstereo.runtime.backends.select``)."""

    auto = "auto"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tensorrt = "tensorrt"
    torch = "torch"


class Precision(str, Enum):
    """CPU precision; reduced ones run only as measured (``ccstereo.runtime.backends.precision_policy``)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


class OutputFormat(str, Enum):
    """Output containers: the video ones copy the input's video stream; wav/flac hold the sound alone."""

    mp4 = "mp4"
    mkv = "mkv"
    mov = "mov"
    ts = "ts"  # MPEG-TS (H.264/HEVC copied in Annex B form: FFmpeg's muxer converts them)
    nut = "nut"
    wav = "wav"
    flac = "flac"


class ClipMode(str, Enum):
    """What happens to samples beyond full scale (see ``ccstereo.runtime.clipping``)."""

    rescale = "rescale"
    clamp = "clamp"
    none = "none"


class VisualRate(str, Enum):
    """How often the visual network runs (see ``ccstereo.runtime.visual_rate``)."""

    exact = "exact"  # on every distinct crop (identical pixels computed once): the official output to the bit
    adaptive = "adaptive"  # only where the picture changed since its features were computed


class Resize(str, Enum):
    """How a picture becomes the model's size (``frames.resize_for_model``)."""

    exact = "exact"  # converted to RGB, then the official loader's Pillow bicubic: its pixels to the bit
    fast = "fast"  # FFmpeg converts and resizes in one step (bicubic): a few times cheaper, not the same pixels


def _check_choice(name: str, value: str | None, choices: type[Enum]) -> None:
    allowed = [m.value for m in choices]
    if value is not None and value not in allowed:
        raise OptionError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded: the engine, its precision, windows per call and CPU threads."""

    backend: str = BackendName.auto.value
    precision: str = Precision.auto.value
    batch_size: int | None = None  # None: measured by the tuner, else backends.protocol.DEFAULT_BATCH
    threads: int | None = None  # None: every CPU this process may use (its affinity)
    # auto on a CPU: None = the engine measured fastest and accurate on this machine (measured once, cached);
    # True = measure again; False = the CPU-flag rules without measuring speed (see backends/tuning.py)
    tune: bool | None = None

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, BackendName)
        _check_choice("precision", self.precision, Precision)
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name.replace('_', ' ')} must be at least 1, got {value}")


@dataclass(frozen=True)
class RunOptions:
    """Per-file options shared by the API and the CLI."""

    hop_samples: int | None = None  # None: the model's default (0.1 s)
    tta: bool = True
    full_band: bool = True
    fmt: str | None = None  # None: a container that can carry the input's video (see binauralizer.output_format)
    overwrite: bool = False
    clip_mode: str = ClipMode.rescale.value
    # Identical crops (still pictures, repeated frames) go through the visual network once per batch; the
    # output is bit-identical either way (False only to measure what it saves).
    share_identical_crops: bool = True
    visual_rate: str = VisualRate.exact.value
    # adaptive: reuse a crop position's features while no 56 x 56 pixel tile of its crop has changed by more
    # than this many grey levels (mean absolute difference), for at most visual_max_stale_s seconds
    visual_threshold: float = 1.0
    visual_max_stale_s: float = 1.0
    # input from a pipe (``-``): how far apart (seconds) its audio and picture may lie in the stream
    max_apart_s: float = 30.0
    # input from a pipe, live (``runtime.live``): each window runs as soon as its sound has arrived; past
    # live_budget_s seconds of compute delay the run degrades (one crop, pictures held, doubled hop)
    live: bool = False
    live_budget_s: float = 0.25
    # mirror test-time augmentation: every other tick's crop is mirrored and its window's ears swapped back, so a
    # model's left/right leanings average out over the overlapping windows (no extra compute). None: as the model
    # says (ModelInfo.mirror_tta: on for models trained with mirror augmentation, off for official checkpoints)
    mirror: bool | None = None
    # how each picture becomes the model's size: exact (the official loader's resize, to the bit) or fast (FFmpeg's
    # conversion and bicubic resize in one step: not the official pixels, the output a few tens of dB away)
    resize: str = Resize.exact.value

    def __post_init__(self) -> None:
        if not self.max_apart_s > 0:
            raise OptionError(f"--max-apart-s must be positive, got {self.max_apart_s}")
        if not self.live_budget_s > 0:
            raise OptionError(f"--live-budget-s must be positive, got {self.live_budget_s}")
        if self.live and self.visual_rate != VisualRate.exact.value:
            raise OptionError("--live runs the exact visual rate (it holds pictures itself when behind)")
        if self.hop_samples is not None and self.hop_samples < 1:
            raise OptionError(f"hop of {self.hop_samples} samples must be at least 1")
        _check_choice("output format", self.fmt, OutputFormat)
        _check_choice("clip mode", self.clip_mode, ClipMode)
        _check_choice("visual rate", self.visual_rate, VisualRate)
        _check_choice("resize", self.resize, Resize)
        self.adaptive_rate()  # validates the thresholds

    def adaptive_rate(self) -> AdaptiveRate | None:
        """Return the adaptive visual rate's settings, or None for the exact rate."""
        rate = AdaptiveRate(self.visual_threshold, self.visual_max_stale_s)
        return None if self.visual_rate == VisualRate.exact.value else rate


def quiet_libraries() -> None:
    """Environment defaults for the libraries a run loads (a user's own setting wins): onnxruntime's telemetry
    off (it uploads, and under a read-only HOME it prints a warning even with --quiet)."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
