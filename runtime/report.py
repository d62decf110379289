"""Per-file run reports (JSON-serialisable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ccstereo.runtime.clipping import ClipReport


@dataclass
class StageTimes:
    """Seconds spent per stage of one run."""

    decode_s: float = 0.0
    preprocess_s: float = 0.0
    backend_s: float = 0.0
    overlap_add_s: float = 0.0
    encode_s: float = 0.0


@dataclass
class RunReport:
    input: str
    output: str | None
    status: str  # ok | skipped | failed
    error: str | None = None
    duration_s: float = 0.0
    wall_s: float = 0.0
    windows: int = 0
    batches: int = 0
    crops_computed: int = 0  # V-TTA crops the visual network ran on
    crops_shared: int = 0  # crops identical to one already computed: not computed again (exact)
    crops_reused: int = 0  # adaptive visual rate: crops that took the features of a similar earlier crop
    visual_rate: str = "exact"
    backend: str = ""
    model_sha256: str = ""
    hop_samples: int = 0
    tta: bool = True
    full_band: bool = True
    input_rate_hz: int = 0  # the input's audio rate (probed)
    output_rate_hz: int = 0
    audio_start_s: float = 0.0  # where the output audio starts on the input's timeline (kept in the output)
    clip: ClipReport | None = None
    video_note: str = ""  # set when the picture could not be copied as it is (why, and what it became)
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def realtime_speed(self) -> float:
        """Return seconds of media processed per second of wall time."""
        return self.duration_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["realtime_speed"] = round(self.realtime_speed, 3)
        return d
