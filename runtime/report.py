"""Per-file run reports (JSON-serialisable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ccstereo.runtime.clipping import ClipReport

# Where CPU-seconds go (``StageTimes.cpu_s``), each measured on the thread that does it; "backend" is the rest of
# the process's CPU: the engine's call and its thread pool (and the little the run does besides).
CPU_STAGES = ("decode", "colour", "resize_crop", "backend", "overlap_add", "combine", "encode", "mux", "level")
_WALL = {"decode": "decode_s", "colour": "preprocess_s", "resize_crop": "preprocess_s", "backend": "backend_s"}
_WALL |= {"overlap_add": "overlap_add_s", "combine": "encode_s", "encode": "encode_s", "mux": "encode_s"}
_WALL |= {"level": "encode_s"}  # the lossy output's true peak measured, and the output written again scaled
_open_stages = threading.local()
_adding = threading.Lock()  # stages run on several threads (decoding, resizing, writing) and add to one tally


def process_age_s() -> float | None:
    """Return seconds since this process started (Linux: from /proc, 10 ms resolution), or None where unknown."""
    import os

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return round(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 3)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@dataclass
class StageTimes:
    """Seconds spent per stage of one run: wall time of the thread doing it (``*_s``: decode; preprocess = colour
    conversion + resize/crop; the backend calls; overlap-add; encode = full-band combine + encode + mux) and
    CPU-seconds per stage of ``CPU_STAGES`` (``cpu_s``)."""

    decode_s: float = 0.0
    preprocess_s: float = 0.0
    backend_s: float = 0.0
    overlap_add_s: float = 0.0
    encode_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Count the block's wall time and this thread's CPU time to stage ``name``; a stage opened inside another
        on the same thread pauses the outer one (decoding that converts colour counts the conversion once)."""
        stack = _open_stages.__dict__.setdefault("stack", [])
        now = (time.perf_counter(), time.thread_time())
        if stack:
            self._add(stack[-1][0], now, stack[-1][1])
        stack.append([name, now])
        try:
            yield
        finally:
            name, started = stack.pop()
            now = (time.perf_counter(), time.thread_time())
            self._add(name, now, started)
            if stack:
                stack[-1][1] = now

    def _add(self, name: str, now: tuple[float, float], started: tuple[float, float]) -> None:
        wall = _WALL.get(name)
        with _adding:
            if wall is not None:
                setattr(self, wall, getattr(self, wall) + now[0] - started[0])
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + now[1] - started[1]

    def settle(self, process_cpu_s: float) -> None:
        """Give "backend" the process's CPU-seconds of the run that no other stage took (its thread pool's)."""
        others = sum(v for k, v in self.cpu_s.items() if k != "backend")
        self.cpu_s = {k: round(self.cpu_s.get(k, 0.0), 3) for k in CPU_STAGES if k != "backend"}
        self.cpu_s["backend"] = round(max(0.0, process_cpu_s - others), 3)


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
    mirror: bool = False  # mirror test-time augmentation ran (RunOptions.mirror)
    resize: str = "exact"  # how pictures became the model's size (RunOptions.resize): exact | fast
    full_band: bool = True
    input_rate_hz: int = 0  # the input's audio rate (probed)
    output_rate_hz: int = 0
    audio_start_s: float = 0.0  # where the output audio starts on the input's timeline (kept in the output)
    clip: ClipReport | None = None
    video_note: str = ""  # set when the picture could not be copied as it is (why, and what it became)
    times: StageTimes = field(default_factory=StageTimes)
    backend_alone_ms_per_window: float | None = None  # the tuner's time for this engine running alone, when tuned
    first_backend_call_s: float | None = None  # seconds from the process's start to this file's first backend call
    live: dict | None = None  # --live: compute delay figures and degradations (``live.LiveControl.summary``)

    @property
    def backend_ms_per_window(self) -> float:
        """Return the backend's wall time per window in this run (compare ``backend_alone_ms_per_window``)."""
        return 1000 * self.times.backend_s / self.windows if self.windows else 0.0

    @property
    def realtime_speed(self) -> float:
        """Return seconds of media processed per second of wall time."""
        return self.duration_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["realtime_speed"] = round(self.realtime_speed, 3)
        d["backend_ms_per_window"] = round(self.backend_ms_per_window, 3)
        return d
