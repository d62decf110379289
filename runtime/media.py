"""Media input with PyAV, streamed: probing, audio as 16 kHz stereo (plus the original rate), frames per tick.

Nothing here holds the whole file: audio comes out in decoder-sized chunks, video as one frame per 0.1 s tick
chosen by presentation time (so variable frame rate and any fps work), rotated for display.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ccstereo.runtime.errors import CCStereoRuntimeError

if TYPE_CHECKING:
    from ccstereo.runtime.report import StageTimes


class MediaError(CCStereoRuntimeError):
    """An input that cannot be binauralised: missing stream, unreadable, truncated or empty."""


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    container: str
    duration_s: float  # the container's (its longest stream's) duration; 0 when unknown
    audio_rate_hz: int
    audio_channels: int
    audio_layout: str
    video_codec: str
    video_size: tuple[int, int]
    video_fps: float
    audio_duration_s: float | None = None  # the audio stream's own declared duration, when it declares one
    audio_start_s: float = 0.0  # presentation time of the first audio sample (0 when unknown)


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"{path}: unreadable media file ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    """Return an FFmpeg error as one short line (PyAV repeats the file name in its message)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200]


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular_file(path: Path) -> None:
    """Raise MediaError naming what ``path`` is when it is not a regular file that can be read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read it ({exc.strerror})") from exc
    for test, kind in _KINDS:
        if test(mode):
            raise MediaError(f"{path}: is {kind}, not a media file (give a regular file)")


def picture_stream(container):
    """Return the video stream that is the picture: the first that is not an attached picture (cover art stored
    before the film), else the first (a song whose only picture is its cover)."""
    import av

    videos = list(container.streams.video)
    films = [v for v in videos if not v.disposition & av.stream.Disposition.attached_pic]
    return (films or videos)[0]


def probe(path: str | Path) -> MediaInfo:
    """Return stream facts of ``path``; raise MediaError when it lacks audio or video or is empty."""
    path = Path(path)
    _check_regular_file(path)
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: zero-length file")
    with _open(path) as container:
        return container_info(path, container, lambda: _first_audio_time(path, container))


def container_info(path: Path, container, first_audio_time) -> MediaInfo:
    """Return the stream facts of an open ``container`` (``first_audio_time()``: when its first sound plays)."""
    if not container.streams.audio:
        raise MediaError(f"{path}: no audio stream")
    if not container.streams.video:
        raise MediaError(f"{path}: no video stream (the model needs the picture)")
    audio, video = container.streams.audio[0], picture_stream(container)
    duration = container.duration / 1_000_000 if container.duration else None
    # MPEG-TS declares no durations: FFmpeg's figure for a file is an estimate (from the last timestamps it finds near
    # the end, or the bitrate) that can fall short of the sound and would cut its end; a stream in a pipe has none.
    # A DURATION tag is Matroska's own statistic (its muxer writes it, and drops a copied one); other containers
    # (NUT) carry a copied source's tag as it was: `ffmpeg -i a.mkv -t 10 -c copy b.nut` says a's full length.
    tags = container.format.name.startswith("matroska")
    audio_duration = None if container.format.name == "mpegts" else stream_duration_s(audio, tags)
    if audio_duration is not None and audio_duration <= 0 and not duration:
        raise MediaError(f"{path}: zero-length media")
    fps = float(video.average_rate) if video.average_rate else 0.0
    a, v = audio.codec_context, video.codec_context
    for kind, context in (("audio", a), ("video", v)):
        if context is None:
            raise MediaError(f"{path}: the {kind} stream has no known codec (corrupt or unsupported)")
    start = first_audio_time()
    return MediaInfo(
        path,
        container.format.name,
        duration or audio_duration or 0.0,
        a.sample_rate or 0,
        a.channels,
        a.layout.name if a.layout is not None else "",
        v.name,
        (v.width, v.height),
        fps,
        audio_duration,
        start,
    )


def read_audio(path: str | Path) -> tuple[int, float, np.ndarray]:
    """Return (sample rate, time of the first sample, [2, N] float32) of the whole first audio stream of any
    media file, video or not (a wav, a reference, an output), decoded as ``iter_audio`` does."""
    path = Path(path)
    _check_regular_file(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        rate = container.streams.audio[0].codec_context.sample_rate or 0
        if not rate:
            raise MediaError(f"{path}: the audio stream has no sample rate (corrupt or unsupported)")
        start_s = _first_audio_time(path, container)
    pieces = [chunk.model for chunk in iter_audio(path, rate, False)]
    audio = np.concatenate(pieces, axis=1) if pieces else np.zeros((2, 0), np.float32)
    if not audio.shape[1]:
        raise MediaError(f"{path}: zero-length audio")
    return rate, start_s, audio


def stream_duration_s(stream, tags: bool) -> float | None:
    """Return the duration a stream declares for itself (header, or ``tags``: its DURATION tag); None if none."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if not tags:
        return None
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:
        try:
            h, m, sec = str(tag).split(":")
            value = int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
        # FFmpeg's Matroska muxer writes the track's END time there: a track starting at 1.5 s that lasts 2.5 s
        # says 4.0 s. A tag beyond the start is read as an end (at worst a length read as shorter: lenient).
        start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        return value - start if 0 < start < value else value
    return None


@dataclass
class AudioChunk:
    model: np.ndarray  # [2, n] float32 at the model rate
    original: np.ndarray | None  # [2, m] float32 at the input rate (stereo downmix), when requested


# Timestamps are followed to this precision: a gap or overlap larger than this is filled with silence or cut,
# so picture and sound never drift apart by more (well below the ~45 ms at which lip sync is noticed).
TIMELINE_TOLERANCE_S = 0.02
# A timestamp jump longer than this that also runs past the stream's declared end (or ten times longer in any
# case) is corruption, not a gap to fill with silence.
MAX_GAP_S = 60.0


class _Timeline:
    """Places decoded audio on the stream's own timeline: gaps become silence, overlaps are cut."""

    def __init__(self, path: Path, declared_end_s: float | None) -> None:
        self.path, self.declared_end_s = path, declared_end_s
        self.rate = 0
        self.start_s: float | None = None
        self.samples = 0  # samples placed so far, at ``rate``

    def place(self, time_s: float | None, rate: int, pcm: np.ndarray) -> list[np.ndarray]:
        """Return the pieces to emit for ``pcm`` [C, n] decoded at presentation time ``time_s``."""
        if not self.rate:
            self.rate = rate
        elif rate != self.rate:
            at = self.samples / self.rate
            raise MediaError(f"{self.path}: audio sample rate changes from {self.rate} to {rate} Hz at {at:.2f} s")
        if self.start_s is None:
            self.start_s = time_s if time_s is not None else 0.0
        if time_s is None:  # no timestamp: the frame follows the previous one
            self.samples += pcm.shape[1]
            return [pcm]
        drift = round((time_s - self.start_s) * rate) - self.samples
        if drift > TIMELINE_TOLERANCE_S * rate:
            gap_s = drift / rate
            end_s = (self.samples + drift) / rate
            beyond_end = self.declared_end_s is None or end_s > self.declared_end_s + 1.0
            if gap_s > MAX_GAP_S and (beyond_end or gap_s > 10 * MAX_GAP_S):
                raise MediaError(
                    f"{self.path}: audio timestamps jump by {gap_s:.1f} s at {self.samples / rate:.2f} s "
                    "(corrupt timestamps)"
                )
            self.samples += drift + pcm.shape[1]
            return [np.zeros((pcm.shape[0], drift), np.float32), pcm]
        if drift < -TIMELINE_TOLERANCE_S * rate:
            pcm = pcm[:, -drift:]
        self.samples += pcm.shape[1]
        return [pcm]


# An encoder pads its last frame with silence to a whole frame (AAC: 1024 samples, plus priming); a container
# says where the sound ends, but this FFmpeg's decoders return the padding too. Decoded audio beyond the stream's
# declared length by at most this many samples is that padding and is dropped; more means the declaration is
# wrong, and everything decoded is kept.
MAX_END_PADDING = 4096


class _Tail:
    """Holds back decoded samples beyond the declared length; drops them at the end if they stay padding-sized."""

    def __init__(self, declared_s: float | None) -> None:
        self.declared_s = declared_s
        self.limit: int | None = None
        self.emitted = 0
        self.held: list[np.ndarray] = []

    def pass_on(self, pcm: np.ndarray, rate: int) -> list[np.ndarray]:
        """Return what may be emitted of ``pcm`` now."""
        if self.declared_s is None:
            return [pcm]
        if self.limit is None:
            self.limit = round(self.declared_s * rate)
        room = max(0, self.limit - self.emitted)
        keep, extra = pcm[:, :room], pcm[:, room:]
        self.emitted += keep.shape[1]
        if extra.shape[1]:
            self.held.append(extra)
        if sum(h.shape[1] for h in self.held) > MAX_END_PADDING:  # not padding: the declared length is wrong
            released, self.held, self.declared_s = self.held, [], None
            return [keep, *released]
        return [keep]


def iter_audio(
    path: Path,
    model_rate_hz: int,
    keep_original: bool,
    declared_end_s: float | None = None,
    original_rate_hz: int | None = None,
) -> Iterator[AudioChunk]:
    """Yield the audio as stereo float32 chunks at ``model_rate_hz`` (and at the input rate if asked).

    The output follows the stream's timestamps from its first sample: a gap in them (missing packets) becomes
    silence, an overlap is cut. Mono becomes two equal channels (so L + R = 2x); 5.1 and other layouts are
    downmixed to stereo with FFmpeg's standard matrix. NaN/Inf samples, rate changes and decoding errors
    become MediaError naming the file.
    """
    with _open(path) as container:
        stream = container.streams.audio[0]
        decoded = (stream, container.decode(stream))
        yield from audio_chunks(path, decoded, model_rate_hz, keep_original, declared_end_s, original_rate_hz)


def audio_chunks(
    path: Path, decoded: tuple[Any, Iterator], model_rate_hz: int, keep_original: bool, declared_end_s: float | None,
    original_rate_hz: int | None,
) -> Iterator[AudioChunk]:  # fmt: skip
    """``iter_audio`` over ``decoded``: (an audio stream, its decoded frames from a demuxer of its own or a single
    pass over a pipe)."""
    import av

    stream, frames = decoded
    # A mono track is duplicated (L = R = x, so L + R = 2x) instead of FFmpeg's -3 dB pan to stereo.
    layout = "mono" if stream.codec_context.channels == 1 else "stereo"
    timeline = _Timeline(path, declared_end_s)
    tail = _Tail(declared_end_s)
    to_float = _ToFloat(path, layout)
    to_model = av.AudioResampler(format="fltp", layout=layout, rate=model_rate_hz)
    # the original-rate copy at another rate, when the output's codec cannot take the input's
    to_out = None if original_rate_hz is None else av.AudioResampler("fltp", layout, original_rate_hz)
    try:
        for frame in frames:
            if not frame.samples or not frame.sample_rate:
                continue
            time_s = float(frame.time) if frame.time is not None else None
            pcm = to_float(frame, (timeline.samples / timeline.rate) if timeline.rate else 0.0)
            for piece in (
                p
                for placed in timeline.place(time_s, frame.sample_rate, pcm)
                for p in tail.pass_on(placed, frame.sample_rate)
            ):
                original = None if not keep_original else _resampled(to_out, piece, frame.sample_rate)
                yield _chunk(to_model, piece, frame.sample_rate, original)
        rest = None if to_out is None else _stereo(_cat(to_out.resample(None)))
        yield AudioChunk(_stereo(_cat(to_model.resample(None))), rest)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt or truncated audio ({_reason(exc)})") from exc


class _ToFloat:
    """Each decoded frame as float32 planar [C, n] in the track's layout at its own rate (layout and sample format
    only; a new resampler when they change mid-stream); NaN or infinite samples are a MediaError."""

    def __init__(self, path: Path, layout: str) -> None:
        self.path, self.layout = path, layout
        self.key: tuple | None = None
        self.resampler: Any = None

    def __call__(self, frame, at_s: float) -> np.ndarray:
        import av

        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self.resampler is None or self.key != key:
            self.key, self.resampler = key, av.AudioResampler(format="fltp", layout=self.layout, rate=frame.sample_rate)
        frame.pts = None  # the timeline places samples; the resamplers run on sample counts
        pcm = _cat(self.resampler.resample(frame))
        if not np.isfinite(pcm).all():
            raise MediaError(f"{self.path}: the audio holds NaN or infinite samples (from about {at_s:.2f} s)")
        return pcm


def _resampled(resampler, pcm: np.ndarray, rate: int) -> np.ndarray:
    """Return ``pcm`` [C, n] at ``rate`` through ``resampler`` (None: as it is)."""
    import av

    if resampler is None or not pcm.shape[1]:
        return pcm
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, np.float32), format="fltp", layout="mono" if pcm.shape[0] == 1 else "stereo"
    )
    frame.sample_rate = rate
    return _cat(resampler.resample(frame))


def _cat(frames) -> np.ndarray:
    arrays = [f.to_ndarray() for f in frames]
    return np.concatenate(arrays, axis=1).astype(np.float32, copy=False) if arrays else np.zeros((1, 0), np.float32)


def _stereo(pcm: np.ndarray) -> np.ndarray:
    return np.concatenate([pcm, pcm]) if pcm.shape[0] == 1 else pcm


def _chunk(to_model, pcm: np.ndarray, rate: int, original: np.ndarray | None) -> AudioChunk:
    import av

    if not pcm.shape[1]:
        return AudioChunk(np.zeros((2, 0), np.float32), None if original is None else np.zeros((2, 0), np.float32))
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, np.float32), format="fltp", layout="mono" if pcm.shape[0] == 1 else "stereo"
    )
    frame.sample_rate = rate
    return AudioChunk(_stereo(_cat(to_model.resample(frame))), None if original is None else _stereo(original))


def _first_audio_time(path: Path, container) -> float:
    """Return the presentation time of the first decoded audio sample in seconds (0 when unknown)."""
    import av

    try:
        for frame in container.decode(container.streams.audio[0]):
            if frame.samples:
                return float(frame.time) if frame.time is not None else 0.0
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt or truncated audio ({_reason(exc)})") from exc
    return 0.0


@dataclass(frozen=True)
class MediaInput:
    """An input probed once: its stream facts, and a reader per stream that follows them (``single``: a
    ``runtime.single_pass.SinglePass`` that feeds every reader from one pass over a pipe)."""

    info: MediaInfo
    single: Any = None

    @property
    def path(self) -> Path:
        return self.info.path

    def audio(
        self, model_rate_hz: int, keep_original: bool, original_rate_hz: int | None = None
    ) -> Iterator[AudioChunk]:
        """The audio at the model rate (and at its own rate, or ``original_rate_hz``, when ``keep_original``), on
        its own timeline."""
        declared = self.info.audio_duration_s
        if self.single is not None:
            decoded = (self.single.audio_stream, self.single.audio_frames())
            return audio_chunks(self.path, decoded, model_rate_hz, keep_original, declared, original_rate_hz)
        return iter_audio(self.path, model_rate_hz, keep_original, declared, original_rate_hz)

    def frames(
        self, fps: float, times: StageTimes | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """The picture on screen at each ``fps`` tick from the first audio sample on (``times`` is told what the
        colour conversion took); ``size`` (width, height): FFmpeg resizes it as it converts it."""
        if self.single is not None:
            return tick_frames(self.path, self.single.video_frames(), fps, self.info.audio_start_s, times, size)
        return iter_tick_frames(self.path, fps, self.info.audio_start_s, times, size)

    def video_source(self, copied: bool = True) -> Any:
        """What the output's video is copied from: the input's path (a reader of its own), or the single pass;
        ``copied`` False: the output holds sound alone (a single pass then keeps no packets for a copy)."""
        if self.single is None:
            return self.path
        if not copied:
            self.single.no_copy()
            return self.path
        return self.single.video_copy()


def open_input(path: str | Path, info: MediaInfo | None = None) -> MediaInput:
    """Return ``path`` probed (unless its ``info`` is given) with its stream readers.

    Each stream is read by its own demuxer: a file may store minutes of one stream before the other (one
    demuxer for both would have to buffer them), so two readers keep memory flat whatever the interleaving.
    """
    return MediaInput(info if info is not None else probe(path))


def iter_tick_frames(
    path: Path, fps: float, origin_s: float, times: StageTimes | None = None, size: tuple[int, int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (tick, RGB uint8 [H, W, 3]) for ticks 0, 1, 2, ... at ``origin_s + tick / fps``.

    Each tick gets the frame on screen at that time: the last frame whose presentation time is not later
    (the first frame for ticks before it). Ends after the last frame's ticks; the caller repeats the last one.
    A frame no tick shows is never converted to RGB, and one whose decoded planes equal the last converted
    frame's gets that frame's RGB array (the same object: later stages see it is the same picture).
    """
    from ccstereo.runtime.shown_frames import decode_shown

    with _open(path) as container:
        stream = picture_stream(container)
        stream.thread_type = "AUTO"
        yield from tick_frames(path, decode_shown(container, stream, fps, origin_s), fps, origin_s, times, size)


def tick_frames(
    path: Path,
    decoded: Iterator,
    fps: float,
    origin_s: float,
    times: StageTimes | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """``iter_tick_frames`` over the ``decoded`` frames of the picture stream (from a demuxer of its own, or a single
    pass over a pipe); ``size`` (width, height): each picture resized by FFmpeg as it is converted (bicubic)."""
    import av

    pictures = _Pictures(times, size)
    shown = None  # the decoded frame on screen
    tick = 0
    try:
        for frame in decoded:
            t = float(frame.time) if frame.time is not None else tick / fps + origin_s
            while origin_s + tick / fps < t - 1e-6:  # ticks before the first frame show the first frame
                yield tick, pictures.rgb(frame if shown is None else shown)
                tick += 1
            shown = frame
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt or truncated video ({_reason(exc)})") from exc
    if shown is None:
        raise MediaError(f"{path}: the video stream has no decodable frame")
    yield tick, pictures.rgb(shown)


class _Pictures:
    """RGB of decoded frames, converted when first shown; a frame equal, plane for plane, to the last converted
    one (a still image, a duplicated frame) reuses its array."""

    def __init__(self, times: StageTimes | None = None, size: tuple[int, int] | None = None) -> None:
        self.times, self.size = times, size
        self.frame = None
        self.key: tuple = ()
        self.planes: list[np.ndarray] = []
        self.image: np.ndarray | None = None

    def rgb(self, frame) -> np.ndarray:
        if frame is self.frame and self.image is not None:
            return self.image
        key = (frame.format.name, frame.width, frame.height, getattr(frame, "rotation", 0))
        planes = [np.frombuffer(plane, np.uint8) for plane in frame.planes]  # views: no copy
        image = self.image
        same = key == self.key and len(planes) == len(self.planes)
        if image is None or not same or not all(map(np.array_equal, planes, self.planes)):
            if self.times is None:
                image = _rgb(frame, self.size)
            else:
                with self.times.stage("colour"):
                    image = _rgb(frame, self.size)
        self.frame, self.key, self.planes, self.image = frame, key, planes, image
        return image


def _rgb(frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """The frame as RGB uint8 [H, W, 3], turned upright; ``size`` (width, height, upright): resized by FFmpeg in
    the same conversion (bicubic)."""
    rotation = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
    if size is None:
        image = frame.to_ndarray(format="rgb24")
    else:
        width, height = size if rotation % 2 == 0 else size[::-1]  # the stored picture is turned after resizing
        image = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC").to_ndarray()
    return np.ascontiguousarray(np.rot90(image, k=rotation)) if rotation else image
