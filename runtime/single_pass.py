"""One pass over a media stream that cannot be read twice (standard input, a pipe): every reader fed from it.

A file is read by one demuxer per stream (``media.open_input``): each reads at its own pace and memory stays flat
however the file interleaves its streams. A pipe can be read once, so here one demuxer reads it and hands each
packet to the queue of the reader that needs it: the audio decoder, the picture decoder and the video copy of the
output. A reader that waits for its stream while another stream's queue fills means the streams lie far apart in
the pipe; past ``max_apart_s`` seconds that ends the run with one line saying how far apart they were and that
``--max-apart-s`` raises the bound, instead of buffering without limit.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ccstereo.runtime.media import MediaError, MediaInfo, MediaInput, _reason, container_info, picture_stream

MAX_APART_S = 30.0  # default bound on how far apart the audio and the picture may lie in a piped stream
_AUDIO, _VIDEO, _COPY = "audio", "video", "copy"


class SinglePass:
    """A demuxer over ``fileobj`` whose packets wait, per reader, until that reader takes them."""

    def __init__(
        self, name: Path, fileobj: BinaryIO, max_apart_s: float = MAX_APART_S, soft_end: bool = False,
        live: bool = False,
    ) -> None:  # fmt: skip
        """``soft_end``: a stream cut off mid-way ends the readers as a clean end would and is kept in ``error`` (the
        caller sends what was computed, then says it); else the reader that meets it raises. ``live``: packets are
        handed on as they arrive (no read waits for a full buffer; the stream is analysed for at most 1 s)."""
        import av

        self.name, self.max_apart_s, self.soft_end = name, max_apart_s, soft_end
        self.error: MediaError | None = None
        _hear_demuxer_warnings()
        reader = ArrivingBytes(fileobj) if live else fileobj
        self.kept = None if _seekable(fileobj) else TailKept(reader)  # a pipe: its last bytes say how it ended
        try:
            with av.logging.Capture(local=True) as said:
                self.container = av.open(self.kept or reader, mode="r", options=LIVE_INPUT_OPTIONS if live else None)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            if _sent_nothing(self.kept, fileobj):
                raise MediaError(f"{name}: the stream ended before its first byte (nothing was sent)") from exc
            raise MediaError(f"{name}: unreadable media stream ({_reason(exc)})") from exc
        if self.container.format.name.startswith("mov") and any(_PARTIAL in text for _, _, text in said):
            self.container.close()  # the index came last: the media before it was read past and cannot be had again
            raise MediaError(
                f"{name}: an MP4/MOV whose index (moov) follows its media cannot be read from a pipe: give the file "
                "itself, or have the producer write -movflags +faststart (or frag_keyframe+empty_moov)"
            )
        if not self.container.streams.audio or not self.container.streams.video:
            kind = "audio" if not self.container.streams.audio else "video"
            self.container.close()
            raise MediaError(f"{name}: no {kind} stream")
        self.audio_stream = self.container.streams.audio[0]
        self.video_stream = picture_stream(self.container)
        self.video_stream.thread_type = "AUTO"
        self.queues: dict[str, deque] = {_AUDIO: deque(), _VIDEO: deque(), _COPY: deque()}
        self.lock = threading.Lock()
        self.demuxed = self.container.demux(self.audio_stream, self.video_stream)
        self.ended = False
        self.done: set[str] = set()  # readers that stopped reading
        self.first_audio: list = []  # audio frames decoded to learn the start time, handed to the audio reader first

    def info(self) -> MediaInfo:
        """The stream's facts, as ``media.probe`` gives a file's (the first sound is decoded here and kept)."""
        return container_info(self.name, self.container, self._first_audio_time)

    def _first_audio_time(self) -> float:
        for frame in self._decode(_AUDIO, self.audio_stream):
            self.first_audio.append(frame)
            if frame.samples:
                return float(frame.time) if frame.time is not None else 0.0
        return 0.0

    def audio_frames(self) -> Iterator:
        """The audio stream's decoded frames, from its first."""
        first, self.first_audio = self.first_audio, []
        with self._reading(_AUDIO):
            yield from first
            yield from self._decode(_AUDIO, self.audio_stream)

    def video_frames(self) -> Iterator:
        """The picture stream's decoded frames."""
        with self._reading(_VIDEO):
            yield from self._decode(_VIDEO, self.video_stream)

    @contextlib.contextmanager
    def _reading(self, which: str) -> Iterator[None]:
        """While a reader reads; once it stops (the picture past the end of the sound), nothing is queued for it."""
        try:
            yield
        finally:
            self._stop(which)

    def _stop(self, which: str) -> None:
        with self.lock:
            self.done.add(which)
            self.queues[which].clear()

    def video_copy(self) -> VideoCopy:
        """The picture stream's packets, as they are, for the output's stream copy."""
        return VideoCopy(self.video_stream, self._packets(_COPY), None)

    def no_copy(self) -> None:
        """The output holds sound alone: the picture's packets are not kept for a copy."""
        self._stop(_COPY)

    def _decode(self, which: str, stream) -> Iterator:
        import av

        context = stream.codec_context
        try:
            for packet in itertools.chain(self._packets(which), [None]):  # None: flush the decoder
                for frame in context.decode(packet):
                    if frame.time_base is None:  # the frames a flush returns carry no time base of their own
                        frame.time_base = stream.time_base
                    yield frame
        except av.error.FFmpegError as exc:
            kind = "audio" if which == _AUDIO else "video"
            raise MediaError(f"{self.name}: corrupt or truncated {kind} ({_reason(exc)})") from exc

    def _packets(self, which: str) -> Iterator:
        while (packet := self._next(which)) is not None:
            yield packet

    def _next(self, which: str):
        """Return the next packet for ``which`` (None at the end), demuxing and queueing others' packets meanwhile."""
        import av

        with self.lock:
            queue = self.queues[which]
            while not queue and not self.ended:
                try:
                    with av.logging.Capture(local=True) as said:
                        packet = next(self.demuxed, None)
                except av.error.FFmpegError as exc:
                    raise MediaError(f"{self.name}: corrupt or truncated stream ({_reason(exc)})") from exc
                if any(_PREMATURE in text for _, _, text in said):  # the demuxer's word for a cut-off stream
                    self.error = MediaError(f"{self.name}: truncated: the stream ended in the middle of its data")
                    if not self.soft_end:
                        raise self.error
                    packet = None
                if packet is None:
                    self.ended = True
                    self._check_end()
                elif packet.dts is not None or packet.size:  # not the demuxer's flush packet
                    self._queue(packet)
            return queue.popleft() if queue else None

    def _check_end(self) -> None:
        """A NUT stream through a pipe that ends without its closing index was cut between two packets (a producer
        killed mid-stream): said like a cut inside one."""
        if self.kept is not None and self.container.format.name == "nut" and not nut_ended_whole(self.kept.tail()):
            self.error = MediaError(
                f"{self.name}: truncated: the NUT stream ended without its closing index (its producer stopped "
                "mid-stream, or was told -write_index 0)"
            )
            if not self.soft_end:
                raise self.error

    def _queue(self, packet) -> None:
        if packet.stream.index == self.audio_stream.index:
            targets = [(_AUDIO, packet)]
        else:  # the muxer takes the data of the packet it writes: the decoder gets a copy
            targets = [(_VIDEO, _copy_of(packet)), (_COPY, packet)]
        for which, item in targets:
            if which not in self.done:
                self.queues[which].append(item)
        for which in (_AUDIO, _VIDEO):
            self._check_apart(which, packet)

    def _check_apart(self, which: str, newest) -> None:
        queue = self.queues[which]
        if not queue or queue[0].pts is None or newest.pts is None or queue[0].time_base is None:
            return
        apart = float(newest.pts * newest.time_base) - float(queue[0].pts * queue[0].time_base)
        if apart > self.max_apart_s:
            raise MediaError(
                f"{self.name}: the audio and the picture lie {apart:.2f} s apart in the stream (more than "
                f"--max-apart-s {self.max_apart_s:g} s; raise it to buffer more)"
            )

    def close(self) -> None:
        self.container.close()


# A live stream is analysed for at most 1 s (FFmpeg's default, 5 s, would hold the first seconds back). Not
# fflags=nobuffer: it drops the packets read while analysing, the first keyframe among them.
LIVE_INPUT_OPTIONS = {"analyzeduration": "1000000"}


class ArrivingBytes:
    """A pipe read as its bytes arrive: ``read(n)`` returns what one read of the descriptor gives (a buffered
    reader's ``read(n)`` waits for all ``n`` bytes, which on a slow live stream holds packets back for seconds)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fd = fileobj.fileno()

    def read(self, n: int) -> bytes:
        import os

        return os.read(self.fd, n)


_PREMATURE = "ended prematurely"  # FFmpeg's demuxers (Matroska, NUT, ...) on a stream cut off mid-element
_PARTIAL = "partial file"  # FFmpeg's mov demuxer on a pipe, when the media it needs lies before what it has read
# FFmpeg's NUT muxer ends every stream it finishes with an index packet, on a pipe too (Matroska and MPEG-TS to a pipe
# end with nothing of the kind): its start code, and the one of the syncpoints every NUT stream of it carries.
NUT_INDEX = bytes.fromhex("4e58dd672f23e64e")
NUT_SYNCPOINT = bytes.fromhex("4e4be4adeeca4569")
TAIL_BYTES = 4 << 20  # what a pipe's reader keeps of its last bytes: a day's index of a NUT stream (~45 bytes/s)


class TailKept:
    """A pipe's reader that keeps the last ``TAIL_BYTES`` (at least) it handed on."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.chunks: deque = deque()
        self.size = 0
        self.total = 0  # every byte handed on

    def read(self, n: int) -> bytes:
        data = self.reader.read(n)
        if data:
            self.chunks.append(bytes(data))
            self.size += len(data)
            self.total += len(data)
            while self.size - len(self.chunks[0]) >= TAIL_BYTES:
                self.size -= len(self.chunks.popleft())
        return data

    def tail(self) -> bytes:
        return b"".join(self.chunks)


def nut_ended_whole(tail: bytes) -> bool:
    """Whether a NUT stream's last bytes end with a whole index packet (start code, forward pointer, its header
    checksum when the pointer is over 4096, then that many bytes). A tail with neither an index nor a syncpoint says
    nothing of the kind (a stream written without syncpoints has no index): True."""
    at = tail.rfind(NUT_INDEX)
    if at < 0:
        return NUT_SYNCPOINT not in tail
    pos, forward = at + len(NUT_INDEX), 0
    while True:  # NUT's variable-length number: 7 bits a byte, the top bit says more follow
        if pos >= len(tail):
            return False
        byte = tail[pos]
        pos, forward = pos + 1, (forward << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return pos + (4 if forward > 4096 else 0) + forward == len(tail)


def _sent_nothing(kept: TailKept | None, fileobj) -> bool:
    """Whether the stream had no byte at all: a pipe's reader counted none, or a redirected file reads empty."""
    if kept is not None:
        return kept.total == 0
    try:
        fileobj.seek(0)
        return not fileobj.read(1)
    except (OSError, ValueError, AttributeError):
        return False


def _seekable(fileobj) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _hear_demuxer_warnings() -> None:
    """Let FFmpeg report warnings (a cut-off stream is only a warning) to the captures above, and to no one else:
    the decoders' chatter stays off the console as it is by default."""
    import logging

    import av.logging

    logger = logging.getLogger("libav")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    av.logging.set_level(av.logging.WARNING)


def _copy_of(packet):
    import av

    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    copy.duration, copy.is_keyframe = packet.duration, packet.is_keyframe
    return copy


class VideoCopy:
    """The picture stream's packets for a stream copy: ``stream`` (the template) and ``packets``; ``container``:
    a demuxer of its own (a file), whose frames can also be decoded for a re-encode."""

    def __init__(self, stream, packets: Iterator, container: Any) -> None:
        self.stream, self.packets, self.container = stream, packets, container

    @classmethod
    def of_file(cls, path: Path) -> VideoCopy:
        import av

        container = av.open(str(path))
        stream = picture_stream(container)
        return cls(stream, container.demux(stream), container)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()


def open_single_pass(
    name: Path, fileobj: BinaryIO, max_apart_s: float = MAX_APART_S, soft_end: bool = False, live: bool = False
) -> MediaInput:
    """Return a MediaInput whose readers are all fed from one pass over ``fileobj`` (named ``name`` in errors)."""
    single = SinglePass(name, fileobj, max_apart_s, soft_end, live)
    try:
        return MediaInput(single.info(), single)
    except BaseException:
        single.close()
        raise
