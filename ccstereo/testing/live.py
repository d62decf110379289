"""A real live run, measured: a producer sends an ffmpeg-made stream with clicks at known times into ``ccs-run -
--live`` at real time (``ffmpeg -re``), a consumer reads ccs-run's standard output and notes the wall-clock time
each click comes out. Used by ``benchmarks/live_latency.py`` and tests/test_live.py.

The delay of a click is (the wall time its output arrived) - (the wall time the producer's first bytes left +
the click's stream time): ``-re`` sends stream time t at t seconds after its first packet, so that is when the
click entered the pipe.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE_HZ = 48000
CLICK_EVERY_S = 1.0
CLICK_FIRST_S = 0.5


def click_times(seconds: float) -> np.ndarray:
    """The stream times of the clicks of a ``seconds``-long source."""
    return np.arange(CLICK_FIRST_S, seconds - 1.0, CLICK_EVERY_S)


def click_source(path: Path, seconds: float, size: str = "640x360") -> Path:
    """Write a Matroska source: a moving test picture (H.264, 30 fps) and quiet noise with a 4 ms click every
    second (AAC 48 kHz stereo); the clicks sit at ``click_times``."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    n = int(seconds * RATE_HZ)
    sound = (rng.standard_normal((n, 2)) * 0.003).astype(np.float32)
    burst = np.hanning(int(0.004 * RATE_HZ)).astype(np.float32) * 0.7
    for t in click_times(seconds):
        at = int(t * RATE_HZ)
        sound[at : at + len(burst), 0] += burst
        sound[at : at + len(burst), 1] += burst * 0.5
    wav = path.with_suffix(".clicks.wav")
    sf.write(wav, sound, RATE_HZ, subtype="FLOAT")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-i", str(wav),
         "-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "160k", "-f", "matroska", str(path)],
        check=True,
    )  # fmt: skip
    wav.unlink()
    return path


def confine(cpus: set[int] | None):
    """A ``preexec_fn`` that keeps a child process (and every thread it starts) on ``cpus``; None: no limit."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@dataclass
class LiveRun:
    """What a live run gave: click delays, RSS samples of ccs-run, its stderr, exit status."""

    delays_s: list[float]
    missing: int  # clicks that never came out
    rss_mb: list[tuple[float, float]]  # (seconds since start, MB)
    stderr: str
    returncode: int
    output: np.ndarray = field(repr=False)  # the output, mono sum (L + R)
    producer_started: float = 0.0

    def summary(self) -> dict:
        d = np.array(self.delays_s) if self.delays_s else np.zeros(1)
        return {
            "clicks": len(self.delays_s),
            "missing": self.missing,
            "delay_mean_s": round(float(d.mean()), 3),
            "delay_p95_s": round(float(np.percentile(d, 95)), 3),
            "delay_max_s": round(float(d.max()), 3),
        }


def run_live(source: Path, ccs_args: list[str], seconds: float, cpus: set[int] | None = None) -> LiveRun:
    """Start ``ccs-run - --live -o - --format wav`` (plus ``ccs_args``; confined to ``cpus`` when given), wait for
    its model to load, send ``source`` at real time and read the output; return the measurements."""
    cmd = [sys.executable, "-m", "ccstereo.runtime.cli", "-", "--live", "-o", "-", "--format", "wav", *ccs_args]
    ccs = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=confine(cpus))  # fmt: skip
    err = _Lines(ccs.stderr)
    err.loaded.wait(timeout=120)  # the "backend: ..." line: the model is loaded, standard input is read next
    reader = _WavReader(ccs.stdout)
    rss = _RssSampler(ccs.pid)
    producer = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", str(source), "-c", "copy", "-f", "matroska",
         "-cluster_time_limit", "50", "-flush_packets", "1", "-"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    started = _forward(producer, ccs)
    ccs.wait(timeout=seconds + 120)
    reader.thread.join(timeout=30)
    rss.stop()
    err.thread.join(timeout=30)
    delays, missing = _click_delays(reader, started, click_times(seconds))
    return LiveRun(delays, missing, rss.samples, "".join(err.lines), ccs.returncode, reader.mono(), started)


def _forward(producer: subprocess.Popen, ccs: subprocess.Popen) -> float:
    """Copy the producer's bytes into ccs-run's standard input as they come; return when its first bytes came."""
    first = None
    fd = producer.stdout.fileno()
    try:
        while chunk := os.read(fd, 65536):
            first = first or time.monotonic()
            ccs.stdin.write(chunk)
            ccs.stdin.flush()
    except BrokenPipeError:
        producer.kill()  # ccs-run stopped reading (it failed): a producer left writing would block for ever
    finally:
        producer.wait()
        with contextlib.suppress(BrokenPipeError):
            ccs.stdin.close()
    return first or time.monotonic()


class _Lines:
    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.loaded = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if line.startswith(("backend:", "error")):
                self.loaded.set()
        self.loaded.set()


class _WavReader:
    """Reads a float wav from a pipe as it comes, noting (wall time, frames received so far) per read."""

    def __init__(self, stream) -> None:
        self.fd = stream.fileno()
        self.data = bytearray()
        self.arrivals: list[tuple[float, int]] = []
        self.header = -1
        self.channels = 2
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := os.read(self.fd, 65536):
            self.data += chunk
            if self.header < 0:
                self.header = _data_offset(bytes(self.data))
            if self.header >= 0:
                frames = (len(self.data) - self.header) // (4 * self.channels)
                self.arrivals.append((time.monotonic(), frames))

    def mono(self) -> np.ndarray:
        if self.header < 0:
            return np.zeros(0, np.float32)
        body = bytes(self.data[self.header :])
        body = body[: len(body) // (4 * self.channels) * 4 * self.channels]
        pcm = np.frombuffer(body, "<f4").reshape(-1, self.channels)
        return pcm.sum(axis=1)

    def arrived(self, frame: int) -> float | None:
        """The wall time by which ``frame`` had arrived."""
        for wall, frames in self.arrivals:
            if frames > frame:
                return wall
        return None


def _data_offset(head: bytes) -> int:
    """Offset of the first sample of a RIFF/WAVE stream (after the ``data`` chunk header), -1 while unknown."""
    if len(head) < 12 or head[:4] != b"RIFF":
        return -1
    at = 12
    while at + 8 <= len(head):
        tag, size = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], "little")
        if tag == b"data":
            return at + 8
        at += 8 + size + (size & 1)
    return -1


def _click_delays(reader: _WavReader, started: float, times: np.ndarray) -> tuple[list[float], int]:
    """Find each click's onset in the output (the first sample above half the click level near its time) and
    return (its delay, clicks not found)."""
    mono = reader.mono()
    delays, missing = [], 0
    for t in times:
        lo, hi = int((t - 0.05) * RATE_HZ), int((t + 0.05) * RATE_HZ)
        part = np.abs(mono[lo:hi])
        if not part.size or part.max() < 0.3:
            missing += 1
            continue
        onset = lo + int(np.argmax(part > 0.3))
        wall = reader.arrived(onset)
        if wall is None:
            missing += 1
            continue
        delays.append(wall - (started + onset / RATE_HZ))
    return delays, missing


class _RssSampler:
    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        self.pid, self.every_s, self.samples = pid, every_s, []
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            match = re.search(r"VmRSS:\s+(\d+) kB", text)
            if match:
                self.samples.append((time.monotonic() - self.started, int(match.group(1)) / 1024))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def rss_drift(samples: list[tuple[float, float]]) -> dict | None:
    """Mean RSS of the second minute and of the last minute (None for runs under three minutes)."""
    if not samples or samples[-1][0] < 180:
        return None
    end = samples[-1][0]
    second = [mb for t, mb in samples if 60 <= t < 120]
    last = [mb for t, mb in samples if t >= end - 60]
    a, b = float(np.mean(second)), float(np.mean(last))
    return {"second_minute_mb": round(a, 1), "last_minute_mb": round(b, 1), "change": round(b / a - 1, 4)}
