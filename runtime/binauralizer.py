"""The Binauralizer Python API: load a model once, binauralise files or arrays.

``ccs-run`` is a thin CLI over this class. The runtime never imports torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ccstereo.atomic import NAME_MAX, remove_partials_of, writer_id
from ccstereo.config import ModelConfig
from ccstereo.runtime.backends import Backend, load_backend
from ccstereo.runtime.clipping import ClipGuard
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError, OptionError
from ccstereo.runtime.frames import picture_size
from ccstereo.runtime.fullband import FullBandCombiner, OriginalAudio
from ccstereo.runtime.live import LiveControl, live_batches
from ccstereo.runtime.media import MediaError, MediaInfo, MediaInput, open_input, probe
from ccstereo.runtime.options import LoadOptions, Resize, RunOptions, VisualRate
from ccstereo.runtime.report import RunReport, StageTimes
from ccstereo.runtime.sink import OutputSink
from ccstereo.runtime.stream import Batching, ConsumeResult, WindowRunner, consume, produce, threaded, windows_from
from ccstereo.runtime.visual_rate import CropTracker, FeatureStore
from ccstereo.runtime.windows import WindowPlan
from ccstereo.runtime.writers import (
    AAC_RATES_HZ,
    FORMATS,
    MP4_VIDEO_CODECS,
    PIPE,
    VIDEO_FORMATS,
    OutputError,
    SameFileError,
    WriteMode,
    can_copy_video,
    open_writer,
    same_file,
)

__all__ = ["Binauralizer", "LoadOptions", "RunOptions", "output_format", "output_path"]

TRUNCATION_TOLERANCE_S = 0.5


def output_format(source: Path, fmt: str | None, video_codec: str | None = None, out: Path | None = None) -> str:
    """Return the output format: ``fmt``; else the extension of an output file named by ``out``; else the
    input's own mkv/mov container, mp4 for video codecs mp4 carries, else the first of Matroska and QuickTime whose
    muxer takes a copy of this video (vp8, theora: mkv; a PNG cover picture: mov). Where none does (wmv2), mp4,
    and the writer re-encodes the picture (``MuxWriter``; the report says so)."""
    named = None if out is None or _is_folder(out) else out.suffix.lower().lstrip(".")
    if named is not None and named not in FORMATS:
        raise OutputError(f"{out}: unknown output extension; name a .{' / .'.join(FORMATS)} file or give --format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise OutputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if named is not None and named != fmt:
            raise OutputError(f"{out}: the extension says {named}, --format says {fmt}")
        return fmt
    if named is not None:
        return named
    ext = source.suffix.lower().lstrip(".")
    if video_codec is None:
        return ext if ext in ("mkv", "mov") else "mp4"
    order = [ext] if ext in ("mkv", "mov") else []
    order += (["mp4"] if video_codec in MP4_VIDEO_CODECS else []) + ["mkv", "mov"]
    return next((f for f in dict.fromkeys(order) if can_copy_video(source, f)), "mp4")


def written_format(final: Path, options: RunOptions) -> str:
    """Return the format ``final`` is written in: its extension, or for standard output --format (default mkv)."""
    return options.fmt or "mkv" if final == PIPE else final.suffix.lower().lstrip(".")


def output_rate_hz(fmt: str, input_rate_hz: int) -> int:
    """Return the full-band output's sample rate: the input's, unless the output's codec cannot take it (AAC: the
    nearest rate it has above, else its highest, 96 kHz); lossless formats keep any rate."""
    if fmt not in VIDEO_FORMATS or input_rate_hz in AAC_RATES_HZ:
        return input_rate_hz
    above = [r for r in AAC_RATES_HZ if r >= input_rate_hz]
    return min(above) if above else max(AAC_RATES_HZ)


def output_path(source: Path, out: Path | None, fmt: str) -> Path:
    """Return ``<stem>.binaural.<fmt>`` beside the input, or inside ``out`` when it is a folder."""
    name = f"{source.stem}.binaural.{fmt}"
    if len(os.fsencode(name)) > NAME_MAX and (out is None or _is_folder(out)):
        raise OutputError(
            f"{source}: its output's name would be {len(os.fsencode(name))} bytes long (the file system takes "
            f"{NAME_MAX}): name the output with -o"
        )
    if out is None:
        return source.with_name(name)
    if _is_folder(out):
        return out / name
    return out


def _is_folder(out: Path) -> bool:
    return out.is_dir() or str(out).endswith(("/", "\\"))


class Binauralizer:
    """Turns the sound of videos binaural with one loaded model and backend."""

    def __init__(self, backend: Backend, reason: str = "", alone_ms_per_window: float | None = None) -> None:
        """``alone_ms_per_window``: the backend's time per window measured alone (the tuner's), for the report."""
        self.backend = backend
        self.reason = reason
        self.alone_ms_per_window = alone_ms_per_window
        self.config: ModelConfig = backend.info.config
        self.model_sha256: str = backend.info.checkpoint_sha256

    @classmethod
    def load(cls, model: str | Path | None = None, options: LoadOptions | None = None, **fields) -> Binauralizer:
        """Return a Binauralizer for an exported folder, .onnx, .plan (or a checkpoint with backend='torch').

        ``options`` (or its fields as keywords: ``backend``, ``precision``, ``batch_size``, ``threads``) say
        how; ``precision='auto'`` picks a reduced precision only where the export measured it accurate enough.
        """
        if options is not None and fields:
            raise OptionError("give LoadOptions or its fields as keywords, not both")
        return cls(*load_backend(None if model is None else Path(model), options or LoadOptions(**fields)))

    def mirrors(self, options: RunOptions) -> bool:
        """Whether a run with ``options`` mirrors every other window (``RunOptions.mirror``; None: as the model)."""
        return self.backend.info.mirror_tta if options.mirror is None else options.mirror

    def window_plan(self, options: RunOptions) -> WindowPlan:
        return WindowPlan.for_config(self.config, options.hop_samples)

    def plan_output(
        self, path: str | Path, out: str | Path | None, options: RunOptions, info: MediaInfo | None = None
    ) -> Path:
        """Return where ``process`` writes ``path`` (the input is probed, unless ``info`` is given, when the
        format follows its video codec); raise SameFileError when that is the input itself."""
        source = Path(path)
        target = None if out is None else Path(out)
        if info is None and options.fmt is None:
            info = probe(source)
        codec = None if info is None else info.video_codec
        final = output_path(source, target, output_format(source, options.fmt, codec, target))
        if same_file(source, final):
            raise SameFileError(f"{source}: the output would overwrite the input itself; choose another -o")
        return final

    def process(
        self,
        path: str | Path,
        out: str | Path | None = None,
        options: RunOptions | None = None,
        progress: Callable[[float, float], None] | None = None,
        info: MediaInfo | None = None,
    ) -> RunReport:
        """Binauralise one media file (``-``: a stream on standard input, read in one pass; ``out`` ``-``: written
        to standard output); return its report (status ok or skipped; errors raise).

        ``progress(done_s, wall_s)`` is called after each batch; ``info``: the input's probe, when the caller
        already has it (a file is probed once)."""
        options = options or RunOptions()
        started = time.perf_counter()
        target = None if out is None else Path(out)
        media = _open_media(Path(path), info, options, target == PIPE)
        try:
            return self._process(media, target, options, progress, started)
        finally:
            if media.single is not None:
                media.single.close()

    def _process(
        self, media: MediaInput, out: Path | None, options: RunOptions, progress: Callable | None, started: float
    ) -> RunReport:
        if media.single is not None and out is None:
            raise OptionError("reading standard input: name the output (a file, or - for standard output)")
        final = PIPE if out == PIPE else self.plan_output(media.path, out, options, media.info)
        report = RunReport(str(media.path), str(final), "ok", backend=self.backend.name, model_sha256=self.model_sha256)
        report.tta, report.full_band = options.tta, options.full_band
        report.mirror, report.resize = self.mirrors(options), options.resize
        report.input_rate_hz = media.info.audio_rate_hz
        if final != PIPE and final.exists() and not options.overwrite:
            report.status = "skipped"
            return report
        plan = self.window_plan(options)
        fmt = written_format(final, options)
        rate = output_rate_hz(fmt, media.info.audio_rate_hz) if options.full_band else self.config.sample_rate_hz
        sink, cpu = None, time.process_time()
        try:
            sink = self._sink(media, final, rate, options, report.times)
            seconds = _in_seconds(progress, self.config.sample_rate_hz, started)
            batching, store, visual_rate = self._batching(plan, options)
            live = _live_control(options)
            result = self._stream(media, (batching, live), store, sink, report.times, seconds)
            report.live = None if live is None else live.summary()
            result.visual_rate = visual_rate
            cut_short = _cut_short(media, result.total_samples / self.config.sample_rate_hz)
            if cut_short is not None and final != PIPE:
                raise cut_short
            sink.close()  # standard output: what was computed of a cut-off stream is sent, then the error said
        except BaseException:
            _abandon(sink, final)
            raise
        if cut_short is not None:
            raise cut_short
        report.times.settle(time.process_time() - cpu)  # the process's CPU-seconds of this file, split by stage
        report.backend_alone_ms_per_window = self.alone_ms_per_window
        report.first_backend_call_s = result.first_call_s
        report.hop_samples, report.output_rate_hz, report.clip = plan.hop_samples, rate, sink.guard.report
        report.video_note = getattr(sink.guard.writer, "reencoded", None) or ""
        report.audio_start_s = media.info.audio_start_s
        report.duration_s = result.total_samples / self.config.sample_rate_hz
        report.windows, report.batches = result.windows, result.batches
        report.crops_computed, report.crops_shared = result.crops_computed, result.crops_shared
        report.crops_reused, report.visual_rate = result.crops_reused, result.visual_rate
        report.wall_s = time.perf_counter() - started
        return report

    def _sink(self, media: MediaInput, final: Path, rate: int, options: RunOptions, times: StageTimes) -> OutputSink:
        """Return the output side of a run: writer behind the clip guard; full-band combiner when asked, with the
        path of the original-rate audio into it (``sink.original``)."""
        fmt, start = written_format(final, options), media.info.audio_start_s
        source = media.video_source(copied=fmt in VIDEO_FORMATS)

        def writer():
            return open_writer(final, source, rate, fmt, WriteMode(start, options.live), times)

        mode = options.clip_mode
        if mode == "rescale" and (final == PIPE or media.single is not None):
            mode = "clamp"  # rescaling writes the output again, from the input's picture: neither a pipe can do
        guard = ClipGuard(writer, mode, final, fmt not in ("flac",), lossy=fmt in VIDEO_FORMATS)
        try:
            if not options.full_band:
                return OutputSink(guard, times)
            original = OriginalAudio(None if rate == media.info.audio_rate_hz else rate)
            return OutputSink(guard, times, FullBandCombiner(self.config.sample_rate_hz, rate, original), original)
        except BaseException:
            guard.abort()
            raise

    def _stream(
        self, media: MediaInput, how: tuple[Batching, LiveControl | None], store: FeatureStore | None,
        sink: OutputSink, times: StageTimes, progress: Callable[[int], None] | None,
    ) -> ConsumeResult:  # fmt: skip
        """Decode (on a producer thread), run each batch, hand the output to ``sink``; return the totals.
        ``how``: the batching, and the live control (None: full batches, as fast as the machine goes)."""
        batching, live = how
        items = windows_from(media, batching, times, sink.original, live)
        runner = WindowRunner(self.backend.run, self.config.window_samples, store)
        if live is None:
            return consume(threaded(items), runner, sink.put, times, progress)
        rate, most = self.config.sample_rate_hz, self.backend.max_batch
        batches = live_batches(items, live, most, rate, batching.share_identical)
        return consume(batches, runner, sink.put, times, progress)

    def _batching(self, plan: WindowPlan, options: RunOptions) -> tuple[Batching, FeatureStore | None, str]:
        """Return (how windows become engine calls, the feature store of the adaptive rate, the rate in words)."""
        tracker, store, rate = self._visual_rate(options)
        batch, share = self.backend.max_batch, options.share_identical_crops
        picture = picture_size(self.config, options.tta) if options.resize == Resize.fast.value else None
        batching = Batching(plan, self.config, batch, options.tta, share, tracker, self.mirrors(options), picture)
        return batching, store, rate

    def _visual_rate(self, options: RunOptions) -> tuple[CropTracker | None, FeatureStore | None, str]:
        """Return (tracker, feature store, words) for the run's visual rate; (None, None, ...) for the exact
        rate, or where this backend can only run the whole graph (the words say why)."""
        rate = options.adaptive_rate()
        if rate is None:
            return None, None, VisualRate.exact.value
        try:
            runner = self.backend.split()
        except (BackendUnavailableError, ModelMetadataError) as exc:
            return None, None, f"exact ({exc})"
        return CropTracker(rate, self.config.fps, options.tta), FeatureStore(runner), VisualRate.adaptive.value

    def process_arrays(
        self, audio: np.ndarray, frames: Sequence[np.ndarray], options: RunOptions | None = None
    ) -> np.ndarray:
        """Return binaural [2, N] at the model rate for audio at the model rate and RGB frames at 10 fps.

        ``audio`` is stereo [2, N] or mono [N] (mono x is used as 2x, as a mono track would be); ``frames[i]``
        is the picture at time i / fps, uint8 [H, W, 3]; the last frame repeats if the video is shorter.
        """
        options = options or RunOptions()
        audio = np.asarray(audio, np.float32)
        stereo = np.stack([audio, audio]) if audio.ndim == 1 else audio
        if stereo.ndim != 2 or stereo.shape[0] != 2:
            raise OptionError(f"audio must be [N] or [2, N], got {audio.shape}")
        if not len(frames):
            raise OptionError("at least one frame is needed")
        times = StageTimes()
        batching, store, _ = self._batching(self.window_plan(options), options)
        items = produce(iter([stereo]), _checked_frames(frames), batching, times)
        pieces: list[np.ndarray] = []
        consume(items, WindowRunner(self.backend.run, self.config.window_samples, store), pieces.append, times)
        return np.concatenate(pieces, axis=1)


def _checked_frames(frames: Sequence[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """(i, frame) of ``process_arrays``'s frames, each checked to be a uint8 RGB picture as it is taken."""
    for i, frame in enumerate(frames):
        shape, dtype = getattr(frame, "shape", None), getattr(frame, "dtype", None)
        if dtype != np.uint8 or shape is None or len(shape) != 3 or shape[2] != 3 or 0 in shape:
            raise OptionError(f"frames[{i}] must be a uint8 RGB picture [H, W, 3], got {dtype} {shape}")
        yield i, frame


def _abandon(sink: OutputSink | None, final: Path) -> None:
    """A run that ends early: stop the writing and remove its temporaries. The sink removes what it knows of;
    then every temporary of ``final`` this process made goes too — a signal that lands between a file's creation
    and the object that would own it (a writer half built, a sink not yet returned) leaves one the sink never
    saw."""
    try:
        if sink is not None:
            sink.abort()
    finally:
        if final != PIPE:
            remove_partials_of(final, writer_id())


def _live_control(options: RunOptions) -> LiveControl | None:
    """Return the control of a live run (its level changes go to the ``ccstereo.runtime.live`` logger), else None."""
    return LiveControl(options.live_budget_s) if options.live else None


def _open_media(path: Path, info: MediaInfo | None, options: RunOptions, to_pipe: bool) -> MediaInput:
    """Return the input: a file (probed once, unless ``info`` is given), or ``-``: standard input, read in one
    pass (``to_pipe``: into standard output, where a cut-off stream ends the output instead of failing it)."""
    if path == PIPE:
        import sys

        from ccstereo.runtime.single_pass import open_single_pass

        return open_single_pass(Path("-"), sys.stdin.buffer, options.max_apart_s, to_pipe, options.live)
    if options.live:
        raise OptionError("--live reads a stream from standard input: give - as the input")
    return open_input(path, info)


def _cut_short(media: MediaInput, decoded_s: float) -> MediaError | None:
    """Return why the input ended early (a pipe cut off mid-stream, audio shorter than declared), else None."""
    if media.single is not None and media.single.error is not None:
        return media.single.error
    return _incomplete(media.path, media.info, decoded_s)


def _incomplete(source: Path, info, decoded_s: float) -> MediaError | None:
    """Return a MediaError when the audio ended before its own stream's declared end (other streams may be
    longer or shorter: that is a legitimate file, not a truncated one), else None."""
    declared = info.audio_duration_s
    if declared and decoded_s < declared - max(TRUNCATION_TOLERANCE_S, 0.05 * declared):
        return MediaError(
            f"{source}: truncated: {decoded_s:.2f} s of audio decoded, its audio stream declares {declared:.2f} s"
        )
    return None


def _in_seconds(
    progress: Callable[[float, float], None] | None, rate_hz: int, started: float
) -> Callable[[int], None] | None:
    """Adapt a ``progress(done_s, wall_s)`` callback to the consumer's count of model-rate samples."""
    if progress is None:
        return None
    return lambda samples: progress(samples / rate_hz, time.perf_counter() - started)
