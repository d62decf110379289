"""Output writers: wav/flac through soundfile, mp4/mkv/mov through PyAV with the video stream copied.

Every writer writes to a temporary file in the target folder; ``commit`` renames it into place and ``abort``
deletes it, so an interrupted or failed run leaves no partial output.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ccstereo.atomic import WriteError, partial_path, publish, write_text
from ccstereo.runtime.errors import CCStereoRuntimeError
from ccstereo.runtime.media import picture_stream
from ccstereo.runtime.options import OutputFormat

FORMATS = tuple(f.value for f in OutputFormat)
AUDIO_FORMATS = (OutputFormat.wav.value, OutputFormat.flac.value)
VIDEO_FORMATS = tuple(f for f in FORMATS if f not in AUDIO_FORMATS)
_AUDIO_CODEC = {"mp4": "aac", "mov": "aac", "mkv": "aac", "ts": "aac", "nut": "aac"}
REENCODE = "H.264 (libx264, CRF 18)"  # a picture no container of ours can carry as a copy
# The sample rates the AAC encoder takes (MPEG-4 Audio sampling frequency indices 0-12).
AAC_RATES_HZ = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_CONTAINER = {"mp4": "mp4", "mov": "mov", "mkv": "matroska", "ts": "mpegts", "nut": "nut"}
PIPE_FORMATS = ("mkv", "ts", "nut", "wav")  # what -o - writes (mp4/mov need a seekable file; flac too here)
# Video codecs the mp4 muxer carries as a stream copy; anything else (vp8, theora, ffv1, ...) goes to Matroska.
MP4_VIDEO_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9", "mpeg2video", "mpeg1video"})


@dataclass(frozen=True)
class WriteMode:
    """How an output is written: where its audio starts on the input's timeline, and whether it is live
    (standard output gets each packet as soon as it is muxed)."""

    start_s: float = 0.0
    live: bool = False


class OutputError(CCStereoRuntimeError):
    """An output that cannot be written (folder not writable, codec refused)."""


class SameFileError(OutputError):
    """An output path that is the input itself: writing it would destroy the input."""


def same_file(a: Path, b: Path) -> bool:
    """Return whether two paths name the same file (symlinks, hard links and ``..`` included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def temporary_path(final: Path, suffix: str | None = None) -> Path:
    """Return a fresh temporary file beside ``final`` (``ccstereo.atomic``'s one scheme); OutputError when the
    folder is missing or not writable."""
    try:
        return partial_path(final, suffix)
    except WriteError as exc:
        raise OutputError(str(exc)) from exc


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    try:
        write_text(path, text)
    except WriteError as exc:
        raise OutputError(str(exc)) from exc


class SoundfileWriter:
    """Stereo wav (32-bit float) or flac (24-bit) at ``rate_hz``.

    libsndfile reports a failed write as the bare "System error."; the cause it logged (a full disk, a lost
    mount) is asked of the open file and put in the one-line error instead.
    """

    def __init__(self, final: Path, rate_hz: int, fmt: str) -> None:
        import soundfile as sf

        self.final, self.tmp = final, temporary_path(final)
        subtype = "FLOAT" if fmt == "wav" else "PCM_24"
        self.file: Any = None
        try:
            self.file = sf.SoundFile(
                str(self.tmp), "w", samplerate=rate_hz, channels=2, subtype=subtype, format=fmt.upper()
            )
        except sf.LibsndfileError as exc:
            self.tmp.unlink(missing_ok=True)
            raise write_error(final, None, exc, self.tmp) from exc
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.samples = 0

    def write(self, block: np.ndarray) -> None:
        """Write [2, n] float32 samples."""
        import soundfile as sf

        if block.shape[1]:
            data = block.T if self.file.subtype == "FLOAT" else np.clip(block.T, -1.0, 1.0)
            try:
                self.file.write(np.ascontiguousarray(data))
            except sf.LibsndfileError as exc:
                raise write_error(self.final, self.file, exc, self.tmp) from exc
            self.samples += block.shape[1]

    def commit(self) -> Path:
        import soundfile as sf

        try:
            cause = libsndfile_cause(self.file, None, self.tmp)  # an error no write call raised
            self.file.close()
        except sf.LibsndfileError as exc:
            raise write_error(self.final, self.file, exc, self.tmp) from exc
        if cause:
            raise OutputError(f"{self.final}: cannot write ({cause})")
        publish(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # best effort on the failure path: the file may be unwritable
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def write_error(final: Path, file: Any, exc: Exception, path: Path) -> OutputError:
    """The one-line error of a libsndfile write to ``path`` (the temporary file of ``final``) that failed."""
    return OutputError(f"{final}: cannot write ({libsndfile_cause(file, exc, path)})")


def libsndfile_cause(file: Any, exc: Exception | None, path: Path) -> str:
    """Return why a write to ``path`` failed: "No space left on device" when its file system is full (libsndfile
    words that as "System error." for wav, and as a FLAC encoder "initialization" error for flac), else
    libsndfile's own account of the last error on ``file``, else the error's text; "" when none is known."""
    text = ""
    try:  # soundfile has no public accessor for the per-file message
        from soundfile import _ffi, _snd

        if file is not None and not file.closed and _snd.sf_error(file._file):
            text = _ffi.string(_snd.sf_strerror(file._file)).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a private API that may change: fall back on what else is known
        text = ""
    if text or exc is not None:
        with contextlib.suppress(OSError):
            if os.statvfs(path.parent).f_bavail == 0 and os.strerror(errno.ENOSPC) not in text:
                text = os.strerror(errno.ENOSPC)
    if not text and exc is not None:
        text = getattr(exc, "error_string", None) or str(exc)  # error_string: without the temporary name
    return " ".join(text.split()).rstrip(".")


def _no_stage(_name: str):
    return contextlib.nullcontext()


class MuxWriter:
    """Video container with the input's video packets copied and a new stereo AAC track.

    Video packets are remuxed from a second reader of the input as the audio advances, so both streams are
    interleaved and memory stays flat.
    """

    def __init__(self, final: Path, source, rate_hz: int, fmt: str, mode: WriteMode | None = None, times=None) -> None:
        """``source``: the input's path, or a ``VideoCopy`` (a single pass over a pipe); ``final``: ``PIPE`` writes
        the container to standard output as it goes (nothing to rename; ``abort`` still closes it properly);
        ``mode``: where the audio starts, live or not; ``times``: a ``StageTimes`` that is told the CPU of muxing
        (the rest of a write is its caller's)."""
        import av

        from ccstereo.runtime.single_pass import VideoCopy

        self.final, self.rate = final, rate_hz
        mode = mode or WriteMode()
        start_s = mode.start_s
        self.tmp = None if final == PIPE else temporary_path(final)
        self.stage = times.stage if times is not None else _no_stage
        try:
            self.src = source if isinstance(source, VideoCopy) else VideoCopy.of_file(source)
        except BaseException:
            self._unlink()
            raise
        in_video = self.src.stream
        # The audio keeps its place beside the picture (a track starting 1.5 s after the picture still does), and the
        # timeline is moved, both streams alike, so the earlier one starts at 0, as FFmpeg's own remuxing does: an
        # MPEG-TS clock that starts at 1.4 s or hours in (a broadcast capture, an HLS segment) or that wrapped past
        # 2^33 ticks (before 0) would otherwise give an mp4 an edit list with that much nothing before the picture,
        # or hide everything before 0.
        base = in_video.time_base or Fraction(1, 90000)
        video_start = float(in_video.start_time * base) if in_video.start_time is not None else 0.0
        self.shift_s = -min(start_s, video_start)
        self.video_shift = round(self.shift_s / base) if self.shift_s else 0
        self.start = round((start_s + self.shift_s) * rate_hz)
        self.out = _open_output(self.tmp, _CONTAINER[fmt], mode.live)
        self.reencoded: str | None = None  # why the picture was re-encoded, when it was
        self.meter: Any = None  # measures the decoded true peak as packets are written (``measure_true_peak``)
        self.measured_peak: float | None = None
        try:
            self.video = _copy_stream(self.out, in_video)
            self.packets = self.src.packets
        except (ValueError, av.error.FFmpegError) as exc:
            try:  # no container of ours carries this codec (wmv2, ...): the picture is re-encoded, and said so
                self.video, self.packets = self._reencode(in_video)
            except (ValueError, av.error.FFmpegError) as again:
                self.abort()
                raise OutputError(
                    f"{final}: cannot copy the {in_video.codec_context.name} video into {fmt} ({exc}) nor "
                    f"re-encode it ({again})"
                ) from again
            self.reencoded = f"{in_video.codec_context.name} cannot be copied into {fmt}: re-encoded as {REENCODE}"
        self.audio: Any = self.out.add_stream(_AUDIO_CODEC[fmt], rate=rate_hz, layout="stereo")
        self.pending: Any = None
        self.samples = 0

    def _reencode(self, in_video):
        """Return (an H.264 stream, its packets from the input's decoded frames, on the output's timeline)."""
        if self.src.container is None:
            raise ValueError("a piped picture can only be copied (try --format mkv)")
        context = in_video.codec_context
        stream = self.out.add_stream("libx264", rate=in_video.average_rate or 25)
        stream.width, stream.height = (
            max(2, context.width - context.width % 2),
            max(2, context.height - context.height % 2),
        )
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = in_video.time_base
        stream.codec_context.options = {"crf": "18", "preset": "veryfast"}
        in_video.thread_type = "AUTO"

        def packets():
            for frame in self.src.container.decode(in_video):
                if frame.pts is None:
                    continue
                image = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
                image.pts, image.time_base = frame.pts + self.video_shift, in_video.time_base
                yield from stream.encode(image)
            yield from stream.encode(None)

        return stream, packets()

    def _mux_video_until(self, t_s: float | None) -> None:
        with self.stage("mux"):
            for packet in self._video_packets(t_s):
                packet.stream = self.video
                if self.video_shift and self.reencoded is None:  # re-encoded frames were placed already
                    packet.pts = None if packet.pts is None else packet.pts + self.video_shift
                    packet.dts = None if packet.dts is None else packet.dts + self.video_shift
                self.out.mux(packet)

    def _video_packets(self, t_s: float | None):
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.dts is None and packet.size == 0:  # demuxer flush packet
                continue
            shift = self.shift_s if self.reencoded is None else 0.0
            time = float(packet.dts * packet.time_base) + shift if packet.dts is not None else None
            if t_s is not None and time is not None and time > t_s:
                self.pending = packet
                return
            yield packet

    def write(self, block: np.ndarray) -> None:
        import av

        if not block.shape[1]:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout="stereo")
        frame.sample_rate = self.rate
        frame.pts = self.start + self.samples
        self.samples += block.shape[1]
        packets = self.audio.encode(frame)
        self._measure(packets)
        with self.stage("mux"):
            for packet in packets:
                self.out.mux(packet)
        self._mux_video_until((self.start + self.samples) / self.rate)

    def measure_true_peak(self, background: bool = False) -> None:
        """Measure the output's decoded true peak as it is written (``true_peak`` after ``finish``); ``background``:
        on a thread of its own."""
        from ccstereo.runtime.true_peak import BackgroundMeter, TruePeakMeter

        self.meter = (BackgroundMeter if background else TruePeakMeter)(self.audio.codec_context)

    def true_peak(self) -> float | None:
        """Return the decoded true peak (linear) measured while written; None unless asked before writing."""
        return self.measured_peak

    def _measure(self, packets) -> None:
        if self.meter is not None and packets:
            with self.stage("level"):
                for packet in packets:
                    self.meter.add(packet)

    def commit(self) -> Path:
        """Finish the file and move it into place; return the final path."""
        done = self.finish()
        if self.tmp is not None:
            publish(done, self.final)
        return self.final

    def finish(self) -> Path:
        """Flush the encoder and close the temporary file (not yet published); return its path. Idempotent."""
        if getattr(self, "finished", False):
            return self.tmp or self.final
        end = self.start + self.samples  # the last real sample, in the audio stream's 1/rate time base
        last = self.audio.encode(None)
        self._measure(last)
        if self.meter is not None:
            with self.stage("level"):
                self.measured_peak = self.meter.end()
        for packet in last:
            # PyAV pads the encoder's last frame with silence to a whole frame (1024 samples for AAC); the last
            # packet says how much of it is real, so the file ends where the sound does.
            if packet.pts is not None and packet.duration and packet.pts + packet.duration > end > packet.pts:
                packet.duration = end - packet.pts
            self.out.mux(packet)
        self._mux_video_until(None)
        self.out.close()
        self.src.close()
        self.finished = True
        return self.tmp or self.final

    def abort(self) -> None:
        """Remove the partial file; on standard output, end the container so what was sent stays playable."""
        if self.tmp is None and not getattr(self, "finished", False):
            with contextlib.suppress(Exception):
                self.finish()
        for handle in ("out", "src"):
            with contextlib.suppress(Exception):  # best effort on the failure path
                getattr(self, handle).close()
        if getattr(self, "meter", None) is not None:  # a meter on a thread of its own is stopped
            self.meter.abort()
        self._unlink()

    def _unlink(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


PIPE = Path("-")  # "-": standard input as an input, standard output as an output


def _destination(tmp: Path | None):
    import sys

    return sys.stdout.buffer if tmp is None else str(tmp)


# Live output: each packet is written out at once, and a Matroska cluster holds at most 100 ms (a pipe's default
# is a second, and nothing of a cluster reaches the reader before it closes).
LIVE_OUTPUT_OPTIONS = {"flush_packets": "1"}
LIVE_CONTAINER_OPTIONS = {"matroska": {"live": "1", "cluster_time_limit": "100"}}


def _open_output(tmp: Path | None, container: str, live: bool):
    """Open the output container: a file at ``tmp``, else standard output (``live``: unbuffered, flushed per
    packet)."""
    import av

    if not live or tmp is not None:
        return av.open(_destination(tmp), mode="w", format=container)
    options = {**LIVE_OUTPUT_OPTIONS, **LIVE_CONTAINER_OPTIONS.get(container, {})}
    return av.open(UnbufferedStdout(), mode="w", format=container, options=options)


class UnbufferedStdout:
    """Standard output written straight to its descriptor (what the muxer flushes reaches the reader at once)."""

    def __init__(self) -> None:
        import sys

        sys.stdout.flush()
        self.fd = sys.stdout.buffer.fileno()

    def write(self, data) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)


class PipeWavWriter:
    """32-bit float wav written to standard output as it goes (the header cannot give the length: players and
    FFmpeg read to the end)."""

    def __init__(self, rate_hz: int, live: bool = False) -> None:
        self.out = _open_output(None, "wav", live)
        self.audio: Any = self.out.add_stream("pcm_f32le", rate=rate_hz, layout="stereo")
        self.rate, self.samples = rate_hz, 0

    def write(self, block: np.ndarray) -> None:
        import av

        if not block.shape[1]:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = self.rate, self.samples
        self.samples += block.shape[1]
        for packet in self.audio.encode(frame):
            self.out.mux(packet)

    def commit(self) -> Path:
        for packet in self.audio.encode(None):
            self.out.mux(packet)
        self.out.close()
        return PIPE

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.commit()


def can_copy_video(source: Path, fmt: str) -> bool:
    """Return whether ``fmt``'s muxer takes a stream copy of ``source``'s video beside an AAC track (a header is
    written to memory: the muxer's own answer, not a list of ours)."""
    import io

    import av

    try:
        with av.open(str(source)) as src, av.open(io.BytesIO(), mode="w", format=_CONTAINER[fmt]) as out:
            _copy_stream(out, picture_stream(src))
            out.add_stream(_AUDIO_CODEC[fmt], rate=48000, layout="stereo")
            out.start_encoding()
        return True
    except (ValueError, av.error.FFmpegError, IndexError):
        return False


def _copy_stream(out, template):
    """Add a stream-copy of ``template``; codecs PyAV's FFmpeg cannot encode (theora, ...) are copied as
    opaque codec parameters, which is all a stream copy needs."""
    import av

    try:
        return out.add_stream_from_template(template)
    except av.codec.codec.UnknownCodecError:
        return out.add_stream_from_template(template, opaque=True)


def open_writer(final: Path, source, rate_hz: int, fmt: str, mode: WriteMode | None = None, times=None):
    """Return a writer for ``fmt`` (one of FORMATS); a video container places the audio at ``mode.start_s`` (and
    tells ``times`` what muxing took); ``mode.live``: standard output gets each packet at once."""
    mode = mode or WriteMode()
    if fmt == "wav" and final == PIPE:
        return PipeWavWriter(rate_hz, mode.live)
    if final == PIPE and fmt not in PIPE_FORMATS:
        raise OutputError(f"-o -: {fmt} cannot be written to a pipe; choose --format {' / '.join(PIPE_FORMATS)}")
    if fmt in AUDIO_FORMATS:
        return SoundfileWriter(final, rate_hz, fmt)
    if fmt in VIDEO_FORMATS:
        return MuxWriter(final, source, rate_hz, fmt, mode, times)
    raise OutputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
