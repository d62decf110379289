"""Media input with PyAV, streamed: probing, audio as 16 kHz stereo (plus the original rate), frames per tick.

Nothing here holds the whole file: audio comes out in decoder-sized chunks, video as one frame per 0.1 s tick
chosen by presentation time (so variable frame rate and any fps work), rotated for display.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccstereo.runtime.errors import CCStereoRuntimeError


class MediaError(CCStereoRuntimeError):
    """An input that cannot be binauralised: missing stream, unreadable, truncated or empty."""


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    container: str
    duration_s: float
    audio_rate_hz: int
    audio_channels: int
    audio_layout: str
    video_codec: str
    video_size: tuple[int, int]
    video_fps: float


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: unreadable media file ({exc})") from exc


def probe(path: str | Path) -> MediaInfo:
    """Return stream facts of ``path``; raise MediaError when it lacks audio or video or is empty."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: zero-length file")
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream (the model needs the picture)")
        audio, video = container.streams.audio[0], container.streams.video[0]
        duration = _duration_s(container, audio)
        if duration is not None and duration <= 0:
            raise MediaError(f"{path}: zero-length media")
        fps = float(video.average_rate) if video.average_rate else 0.0
        return MediaInfo(
            path,
            container.format.name,
            duration or 0.0,
            audio.codec_context.sample_rate or 0,
            audio.codec_context.channels,
            audio.codec_context.layout.name,
            video.codec_context.name,
            (video.codec_context.width, video.codec_context.height),
            fps,
        )


def _duration_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


@dataclass
class AudioChunk:
    model: np.ndarray  # [2, n] float32 at the model rate
    original: np.ndarray | None  # [2, m] float32 at the input rate (stereo downmix), when requested


def iter_audio(path: Path, model_rate_hz: int, keep_original: bool) -> Iterator[AudioChunk]:
    """Yield the audio as stereo float32 chunks at ``model_rate_hz`` (and at the input rate if asked).

    Mono becomes two equal channels (so L + R = 2x); 5.1 and other layouts are downmixed to stereo with
    FFmpeg's standard matrix. Decoding errors become MediaError naming the file.
    """
    import av

    with _open(path) as container:
        stream = container.streams.audio[0]
        # A mono track is duplicated (L = R = x, so L + R = 2x) instead of FFmpeg's -3 dB pan to stereo.
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        to_model = av.AudioResampler(format="fltp", layout=layout, rate=model_rate_hz)
        to_orig = None
        if keep_original:
            to_orig = av.AudioResampler(format="fltp", layout=layout, rate=stream.codec_context.sample_rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler run on sample counts; gaps are not ours to fill
                yield _chunk(to_model.resample(frame), to_orig.resample(frame) if to_orig else None)
            yield _chunk(to_model.resample(None), to_orig.resample(None) if to_orig else None)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt or truncated audio ({exc})") from exc


def _chunk(model_frames, orig_frames) -> AudioChunk:
    def cat(frames):
        arrays = [f.to_ndarray() for f in frames]
        out = np.concatenate(arrays, axis=1) if arrays else np.zeros((2, 0), np.float32)
        return np.concatenate([out, out]) if out.shape[0] == 1 else out

    return AudioChunk(cat(model_frames), None if orig_frames is None else cat(orig_frames))


def audio_start_s(path: Path) -> float:
    """Return the presentation time of the first audio sample in seconds (0 when unknown)."""
    with _open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            return float(frame.time) if frame.time is not None else 0.0
    return 0.0


def iter_tick_frames(path: Path, fps: float, origin_s: float) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (tick, RGB uint8 [H, W, 3]) for ticks 0, 1, 2, ... at ``origin_s + tick / fps``.

    Each tick gets the frame on screen at that time: the last frame whose presentation time is not later
    (the first frame for ticks before it). Ends after the last frame's ticks; the caller repeats the last one.
    """
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        shown: np.ndarray | None = None
        tick = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else tick / fps + origin_s
                image = _rgb(frame)
                while shown is not None and origin_s + tick / fps < t - 1e-6:
                    yield tick, shown
                    tick += 1
                if shown is None:  # ticks before the first frame show the first frame
                    while origin_s + tick / fps < t - 1e-6:
                        yield tick, image
                        tick += 1
                shown = image
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt or truncated video ({exc})") from exc
        if shown is None:
            raise MediaError(f"{path}: the video stream has no decodable frame")
        yield tick, shown


def _rgb(frame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    rotation = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k=rotation)) if rotation else image
