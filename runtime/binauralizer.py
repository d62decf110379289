"""The Binauralizer Python API: load a model once, binauralise files or arrays.

``ccs-run`` is a thin CLI over this class. The runtime never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.runtime.backend import Backend
from ccstereo.runtime.backends import load_backend
from ccstereo.runtime.clipping import CLIP_MODES, ClipGuard
from ccstereo.runtime.errors import OptionError
from ccstereo.runtime.fullband import FullBandCombiner
from ccstereo.runtime.media import (
    AudioChunk,
    MediaError,
    MediaInfo,
    audio_start_s,
    iter_audio,
    iter_tick_frames,
    probe,
)
from ccstereo.runtime.report import RunReport, StageTimes
from ccstereo.runtime.stream import ConsumeResult, OrderedWorker, consume, produce, threaded
from ccstereo.runtime.windows import WindowPlan
from ccstereo.runtime.writers import (
    FORMATS,
    MP4_VIDEO_CODECS,
    OutputError,
    SameFileError,
    open_writer,
    same_file,
)

TRUNCATION_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class RunOptions:
    """Per-run options shared by the API and the CLI."""

    hop_samples: int | None = None  # None: the model's default (0.1 s)
    tta: bool = True
    full_band: bool = True
    fmt: str | None = None  # None: a container that can carry the input's video (see output_format)
    overwrite: bool = False
    clip_mode: str = "rescale"  # rescale | clamp | none (see runtime/clipping.py)

    def __post_init__(self) -> None:
        if self.hop_samples is not None and self.hop_samples < 1:
            raise OptionError(f"hop of {self.hop_samples} samples must be at least 1")
        if self.fmt is not None and self.fmt not in FORMATS:
            raise OptionError(f"unknown output format {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.clip_mode not in CLIP_MODES:
            raise OptionError(f"unknown clip mode {self.clip_mode!r}; choose one of {', '.join(CLIP_MODES)}")


def output_format(source: Path, fmt: str | None, video_codec: str | None = None, out: Path | None = None) -> str:
    """Return the output format: ``fmt``; else the extension of an output file named by ``out``; else the
    input's own mkv/mov container, mp4 for video codecs mp4 carries, or Matroska (which carries any codec:
    vp8, theora, ...), so the video is always a stream copy."""
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
    if ext in ("mkv", "mov"):
        return ext
    if video_codec is None or video_codec in MP4_VIDEO_CODECS:
        return "mp4"
    return "mkv"


def output_path(source: Path, out: Path | None, fmt: str) -> Path:
    """Return ``<stem>.binaural.<fmt>`` beside the input, or inside ``out`` when it is a folder."""
    name = f"{source.stem}.binaural.{fmt}"
    if out is None:
        return source.with_name(name)
    if _is_folder(out):
        return out / name
    return out


def _is_folder(out: Path) -> bool:
    return out.is_dir() or str(out).endswith(("/", "\\"))


class Binauralizer:
    """Turns the sound of videos binaural with one loaded model and backend."""

    def __init__(self, backend: Backend, reason: str = "") -> None:
        self.backend = backend
        self.reason = reason
        self.config: ModelConfig = backend.info.config  # type: ignore[attr-defined]
        self.model_sha256: str = backend.info.checkpoint_sha256  # type: ignore[attr-defined]

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        backend: str = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
        precision: str = "auto",
    ) -> Binauralizer:
        """Return a Binauralizer for an exported folder, .onnx, .plan (or a checkpoint with backend='torch').

        ``precision``: 'auto' picks OpenVINO bf16 on a BF16 CPU when the export measured it accurate enough,
        'fp32' forces full precision, 'bf16' requires it.
        """
        path = None if model is None else Path(model)
        chosen, reason = load_backend(path, backend, batch_size, threads, precision)
        return cls(chosen, reason)

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
        """Binauralise one media file; return its report (status ok or skipped; errors raise).

        ``info``: the input's probe, when the caller already has it (it is read once per file)."""
        options = options or RunOptions()
        source = Path(path)
        started = time.perf_counter()
        info = info or probe(source)
        final = self.plan_output(source, out, options, info)
        fmt = final.suffix.lower().lstrip(".")
        report = RunReport(
            str(source),
            str(final),
            "ok",
            backend=self.backend.name,
            model_sha256=self.model_sha256,
            tta=options.tta,
            full_band=options.full_band,
        )
        if final.exists() and not options.overwrite:
            report.status = "skipped"
            return report
        cfg = self.config
        plan = self.window_plan(options)
        report.hop_samples = plan.hop_samples
        rate = info.audio_rate_hz if options.full_band else cfg.sample_rate_hz
        report.output_rate_hz = rate
        times = report.times
        origin = audio_start_s(source)
        guard = ClipGuard(
            lambda: open_writer(final, source, rate, fmt, origin), options.clip_mode, final, fmt not in ("flac",)
        )
        try:
            result = self._stream(source, info, origin, rate, plan, options, guard.write, times, started, progress)
            t0 = time.perf_counter()
            guard.commit()
            times.encode_s += time.perf_counter() - t0
        except BaseException:
            guard.abort()
            raise
        report.clip = guard.report
        report.audio_start_s = origin
        report.duration_s = result.total_samples / cfg.sample_rate_hz
        report.windows, report.batches = result.windows, result.batches
        report.wall_s = time.perf_counter() - started
        return report

    def _stream(self, source, info, origin, rate, plan, options, write, times, started, progress) -> ConsumeResult:
        """Decode, run and hand every finished output block to ``write``; return the totals."""
        cfg = self.config
        items = produce(
            iter_audio(source, cfg.sample_rate_hz, options.full_band, info.audio_duration_s),
            iter_tick_frames(source, cfg.fps, origin),
            plan,
            cfg,
            self.backend.max_batch,
            options.tta,
            times,
        )
        write = _timed(write, times)
        combiner = FullBandCombiner(cfg.sample_rate_hz, rate) if options.full_band else None

        def on_model(block: np.ndarray) -> None:
            if combiner is None:
                write(block)
            else:
                combiner.push_model(block)
                write(combiner.pop())

        def on_original(block: np.ndarray) -> None:
            if combiner is not None:
                combiner.push_original(block)

        def on_progress(samples: int) -> None:
            if progress is not None:
                progress(samples / cfg.sample_rate_hz, time.perf_counter() - started)

        # Combining and encoding run on their own thread, in order, while the backend runs the next batch.
        worker = OrderedWorker()
        try:
            result = consume(
                threaded(items),
                self.backend.run,
                cfg.window_samples,
                lambda block: worker.submit(on_model, block),
                lambda block: worker.submit(on_original, block),
                times,
                on_progress,
            )
            if combiner is not None:
                worker.submit(lambda: write(combiner.finish()))
            worker.close()
        except BaseException:
            worker.abort()
            raise
        _check_complete(source, info, result.total_samples / cfg.sample_rate_hz)
        return result

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
        chunks: Iterator[AudioChunk] = iter([AudioChunk(stereo, None)])
        ticks = iter(enumerate(frames))
        items = produce(
            chunks, ticks, self.window_plan(options), self.config, self.backend.max_batch, options.tta, times
        )
        pieces: list[np.ndarray] = []
        consume(items, self.backend.run, self.config.window_samples, pieces.append, lambda _: None, times)
        return np.concatenate(pieces, axis=1)


def _check_complete(source: Path, info, decoded_s: float) -> None:
    """Raise MediaError when the audio ended before its own stream's declared end (other streams may be
    longer or shorter: that is a legitimate file, not a truncated one)."""
    declared = info.audio_duration_s
    if declared and decoded_s < declared - max(TRUNCATION_TOLERANCE_S, 0.05 * declared):
        raise MediaError(
            f"{source}: truncated: {decoded_s:.2f} s of audio decoded, its audio stream declares {declared:.2f} s"
        )


def _timed(fn: Callable[[np.ndarray], None], times: StageTimes) -> Callable[[np.ndarray], None]:
    def wrapper(block: np.ndarray) -> None:
        t0 = time.perf_counter()
        fn(block)
        times.encode_s += time.perf_counter() - t0

    return wrapper
