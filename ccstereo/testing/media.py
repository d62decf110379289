"""Real media files for tests and benchmarks, made with PyAV (H.264/AAC mp4, lossless mkv, broken files)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def moving_block_frames(n: int, width: int = 320, height: int = 180) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        img = np.zeros((height, width, 3), np.uint8)
        img[:, :, 2] = 60
        x = int(i / max(1, n - 1) * (width - 40))
        img[height // 2 - 20 : height // 2 + 20, x : x + 40] = (255, 200, 0)
        frames.append(img)
    return frames


def panned_tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    sig = 0.3 * np.sin(2 * np.pi * freq * t)
    pan = t / max(seconds, 1e-9)
    return np.stack([sig * (0.3 + 0.7 * pan), sig * (1.0 - 0.7 * pan)]).astype(np.float32)


def write_mp4(
    path: Path,
    seconds: float = 2.0,
    fps: int = 30,
    rate: int = 44100,
    audio: np.ndarray | None = None,
    video: bool = True,
    width: int = 320,
    height: int = 180,
) -> Path:
    """Write an H.264 + AAC mp4 (either stream optional)."""
    import av

    with av.open(str(path), "w") as out:
        v = None
        if video:
            v = out.add_stream("libx264", rate=fps)
            v.width, v.height, v.pix_fmt = width, height, "yuv420p"
            v.options = {"preset": "ultrafast"}
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=rate, layout="stereo" if audio.shape[0] == 2 else "mono")
        if v is not None:
            for i, img in enumerate(moving_block_frames(int(seconds * fps), width, height)):
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for packet in v.encode(frame):
                    out.mux(packet)
            for packet in v.encode(None):
                out.mux(packet)
        if a is not None and audio is not None:
            for s in range(0, audio.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(audio[:, s : s + 1024]), format="fltp", layout=a.layout.name
                )
                frame.sample_rate, frame.pts = rate, s
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode(None):
                out.mux(packet)
    return path
