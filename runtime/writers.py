"""Output writers: wav/flac through soundfile, mp4/mkv/mov through PyAV with the video stream copied.

Every writer writes to a temporary file in the target folder; ``commit`` renames it into place and ``abort``
deletes it, so an interrupted or failed run leaves no partial output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ccstereo.runtime.errors import CCStereoRuntimeError
from ccstereo.runtime.options import OutputFormat

FORMATS = tuple(f.value for f in OutputFormat)
AUDIO_FORMATS = (OutputFormat.wav.value, OutputFormat.flac.value)
VIDEO_FORMATS = tuple(f for f in FORMATS if f not in AUDIO_FORMATS)
_AUDIO_CODEC = {"mp4": "aac", "mov": "aac", "mkv": "aac"}
_CONTAINER = {"mp4": "mp4", "mov": "mov", "mkv": "matroska"}
# Video codecs the mp4 muxer carries as a stream copy; anything else (vp8, theora, ffv1, ...) goes to Matroska.
MP4_VIDEO_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9", "mpeg2video", "mpeg1video"})


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


def new_file_mode() -> int:
    """Return the permission bits a newly created file gets under this process's umask (0o666 & ~umask)."""
    try:  # Linux >= 4.7 reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_path(final: Path, suffix: str | None = None) -> Path:
    """Return a fresh temporary path beside ``final`` with the same extension (checks the folder is writable).

    mkstemp creates the file 0600; it gets the mode the umask gives a new file, because the rename that
    publishes it keeps the mode and outputs must be readable where a plain new file would be.
    """
    folder = final.parent
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist")
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{final.stem}.partial-", suffix=final.suffix if suffix is None else suffix, dir=folder
        )
    except OSError as exc:
        raise OutputError(f"{folder}: output folder is not writable ({exc.strerror})") from exc
    try:
        os.fchmod(fd, new_file_mode())
    finally:
        os.close(fd)
    return Path(name)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    tmp = temporary_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        os.replace(self.tmp, self.final)
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


class MuxWriter:
    """Video container with the input's video packets copied and a new stereo AAC track.

    Video packets are remuxed from a second reader of the input as the audio advances, so both streams are
    interleaved and memory stays flat.
    """

    def __init__(self, final: Path, source: Path, rate_hz: int, fmt: str, start_s: float = 0.0) -> None:
        import av

        self.final, self.tmp, self.rate = final, temporary_path(final), rate_hz
        # The audio keeps its place on the input's timeline (a track starting 1.5 s after the picture still does).
        self.start = round(start_s * rate_hz)
        try:
            self.src = av.open(str(source))
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        in_video = self.src.streams.video[0]
        self.out = av.open(str(self.tmp), mode="w", format=_CONTAINER[fmt])
        try:
            self.video = _copy_stream(self.out, in_video)
        except (ValueError, av.error.FFmpegError) as exc:
            self.abort()
            raise OutputError(
                f"{final}: cannot copy the {in_video.codec_context.name} video into {fmt}: {exc}"
            ) from exc
        self.audio: Any = self.out.add_stream(_AUDIO_CODEC[fmt], rate=rate_hz, layout="stereo")
        self.packets = self.src.demux(in_video)
        self.pending: Any = None
        self.samples = 0
        self.video_start = in_video.start_time or 0

    def _mux_video_until(self, t_s: float | None) -> None:
        for packet in self._video_packets(t_s):
            packet.stream = self.video
            self.out.mux(packet)

    def _video_packets(self, t_s: float | None):
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.dts is None and packet.size == 0:  # demuxer flush packet
                continue
            time = float(packet.dts * packet.time_base) if packet.dts is not None else None
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
        for packet in self.audio.encode(frame):
            self.out.mux(packet)
        self._mux_video_until((self.start + self.samples) / self.rate)

    def commit(self) -> Path:
        for packet in self.audio.encode(None):
            self.out.mux(packet)
        self._mux_video_until(None)
        self.out.close()
        self.src.close()
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        for handle in ("out", "src"):
            with contextlib.suppress(Exception):  # best effort on the failure path
                getattr(self, handle).close()
        self.tmp.unlink(missing_ok=True)


def _copy_stream(out, template):
    """Add a stream-copy of ``template``; codecs PyAV's FFmpeg cannot encode (theora, ...) are copied as
    opaque codec parameters, which is all a stream copy needs."""
    import av

    try:
        return out.add_stream_from_template(template)
    except av.codec.codec.UnknownCodecError:
        return out.add_stream_from_template(template, opaque=True)


def open_writer(final: Path, source: Path, rate_hz: int, fmt: str, start_s: float = 0.0):
    """Return a writer for ``fmt`` (one of FORMATS); a video container places the audio at ``start_s``."""
    if fmt in AUDIO_FORMATS:
        return SoundfileWriter(final, rate_hz, fmt)
    if fmt in VIDEO_FORMATS:
        return MuxWriter(final, source, rate_hz, fmt, start_s)
    raise OutputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
