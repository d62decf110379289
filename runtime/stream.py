"""The streaming core: audio + frames in, batches of windows out (producer), one backend call per batch,
overlap-add and hand-off of finished samples (consumer).

The producer decodes and preprocesses the next batches in a thread while the backend runs the current one;
a bounded queue keeps memory flat.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.runtime.frames import model_crop
from ccstereo.runtime.fullband import OriginalAudio
from ccstereo.runtime.media import MediaError, MediaInput
from ccstereo.runtime.overlap_add import StreamingOverlapAdd
from ccstereo.runtime.report import StageTimes
from ccstereo.runtime.windows import WindowPlan

QUEUE_DEPTH = 2


@dataclass
class Batch:
    starts: list[int]
    mono: np.ndarray  # [B, window] float32 (L + R)
    frames: np.ndarray  # [F, h, w, 3] uint8, distinct in this batch
    frame_index: np.ndarray  # [B] int64
    next_start: int  # start of the first window not in this batch
    limit: int | None  # the input's length once known: nothing past it is emitted
    shared_crops: int = 0  # crops of distinct ticks whose pixels equal another's: computed once, not again


@dataclass
class End:
    total_samples: int


class _Frames:
    """Crops per tick from a tick-ordered frame iterator; the last frame repeats past the end of the video."""

    def __init__(self, ticks: Iterator[tuple[int, np.ndarray]], config: ModelConfig, tta: bool, times: StageTimes):
        self.ticks, self.config, self.tta, self.times = ticks, config, tta, times
        self.tick: int = -1
        self.image: np.ndarray | None = None
        self.exhausted = False
        self.cache: dict[int, np.ndarray] = {}

    def crop(self, tick: int) -> np.ndarray:
        if tick in self.cache:
            return self.cache[tick]
        t0 = time.perf_counter()
        while self.tick < tick and not self.exhausted:
            try:
                self.tick, self.image = next(self.ticks)
            except StopIteration:
                self.exhausted = True
        t1 = time.perf_counter()
        if self.image is None:
            raise MediaError("no video frame could be decoded")
        crop = model_crop(self.image, tick + 1, self.config, self.tta)
        self.times.decode_s += t1 - t0
        self.times.preprocess_s += time.perf_counter() - t1
        self.cache = {t: c for t, c in self.cache.items() if t >= tick - 1}
        self.cache[tick] = crop
        return crop


def produce(
    audio: Iterator[np.ndarray],
    frames: Iterator[tuple[int, np.ndarray]],
    plan: WindowPlan,
    config: ModelConfig,
    batch_size: int,
    tta: bool,
    times: StageTimes,
    share_identical: bool = True,
) -> Iterator[Batch | End]:
    """Yield batches of windows as soon as their audio (stereo [2, n] model-rate chunks) is decoded, then End
    with the total length.

    ``share_identical``: crops whose pixels are identical (a still picture, repeated frames) enter the batch
    once and every window that uses them points at that one, so the visual network runs once per distinct
    picture; the result is the same to the bit (tests/test_visual_reuse.py)."""
    crops = _Frames(frames, config, tta, times)
    w = plan.window_samples
    buf, base, total, eof = np.zeros(0, np.float32), 0, 0, False
    k = 0
    while True:
        starts: list[int] = []
        monos: list[np.ndarray] = []
        ticks: list[int] = []
        while len(starts) < batch_size:
            start = plan.start(k)
            while not eof and total < start + w:
                t0 = time.perf_counter()
                chunk = next(audio, None)
                times.decode_s += time.perf_counter() - t0
                if chunk is None:
                    eof = True
                    break
                buf = np.concatenate([buf, chunk[0] + chunk[1]])
                total += chunk.shape[1]
            if eof and (total == 0 or k >= plan.count(total)):
                break
            window = buf[start - base : start - base + w]
            if len(window) < w:  # the zero-padded tail
                window = np.concatenate([window, np.zeros(w - len(window), np.float32)])
            starts.append(start)
            monos.append(window)
            ticks.append(plan.tick(k))
            k += 1
        if starts:
            distinct = sorted(set(ticks))
            unique, where = _unique([crops.crop(t) for t in distinct], share_identical)
            position = dict(zip(distinct, where, strict=True))
            index = np.array([position[t] for t in ticks], np.int64)
            limit = total if eof else None
            mono = np.stack(monos).astype(np.float32)
            shared = len(distinct) - len(unique)
            yield Batch(starts, mono, np.stack(unique), index, plan.start(k), limit, shared)
            drop = min(plan.start(k), total) - base
            buf, base = buf[drop:], base + drop
        if eof and (total == 0 or k >= plan.count(total)):
            if total == 0:
                raise MediaError("zero-length audio")
            yield End(total)
            return


def _unique(crops: list[np.ndarray], share: bool) -> tuple[list[np.ndarray], list[int]]:
    """Return (distinct crops, position of each given crop among them); identical pixels count once.

    Crops are matched by a hash of their bytes and then compared in full, so only truly equal crops are shared.
    """
    if not share:
        return crops, list(range(len(crops)))
    unique: list[np.ndarray] = []
    where: list[int] = []
    by_hash: dict[bytes, list[int]] = {}
    for crop in crops:
        candidates = by_hash.setdefault(hashlib.blake2b(crop.tobytes(), digest_size=16).digest(), [])
        match = next((j for j in candidates if np.array_equal(unique[j], crop)), None)
        if match is None:
            match = len(unique)
            candidates.append(match)
            unique.append(crop)
        where.append(match)
    return unique, where


def windows_from(
    media: MediaInput,
    plan: WindowPlan,
    config: ModelConfig,
    batch_size: int,
    tta: bool,
    times: StageTimes,
    original: OriginalAudio | None = None,
    share_identical: bool = True,
) -> Iterator[Batch | End]:
    """Yield the batches of windows of a media input (``produce`` over its audio and frame readers); its
    original-rate audio goes to ``original`` when given (full-band output)."""
    chunks = media.audio(config.sample_rate_hz, keep_original=original is not None)
    audio = original.split(chunks) if original is not None else (chunk.model for chunk in chunks)
    return produce(audio, media.frames(config.fps), plan, config, batch_size, tta, times, share_identical)


def threaded(items: Iterator, depth: int = QUEUE_DEPTH) -> Iterator:
    """Run ``items`` in a producer thread behind a bounded queue; re-raise its exceptions here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    sentinel = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(sentinel)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, name="ccs-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is sentinel:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass
class ConsumeResult:
    total_samples: int
    windows: int
    batches: int
    crops_computed: int = 0  # crops the backend's visual network ran on
    crops_shared: int = 0  # crops it did not run on because an identical one was in the same batch


def consume(
    items: Iterator[Batch | End],
    run: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    window: int,
    on_model: Callable[[np.ndarray], None],
    times: StageTimes,
    progress: Callable[[int], None] | None = None,
) -> ConsumeResult:
    """Run each batch through ``run`` and pass finished model-rate samples to ``on_model``."""
    ola = StreamingOverlapAdd(2, window)
    result = ConsumeResult(0, 0, 0)
    for item in items:
        if isinstance(item, End):
            t0 = time.perf_counter()
            tail = ola.pop(item.total_samples)
            times.overlap_add_s += time.perf_counter() - t0
            on_model(tail)
            result.total_samples = item.total_samples
            return result
        t0 = time.perf_counter()
        out = run(item.frames, item.mono, item.frame_index)
        t1 = time.perf_counter()
        for start, block in zip(item.starts, out, strict=True):
            ola.add(start, block)
        ready = ola.pop(item.next_start if item.limit is None else min(item.next_start, item.limit))
        times.backend_s += t1 - t0
        times.overlap_add_s += time.perf_counter() - t1
        result.windows += len(item.starts)
        result.batches += 1
        result.crops_computed += len(item.frames)
        result.crops_shared += item.shared_crops
        on_model(ready)
        if progress is not None:
            progress(item.next_start)
    raise RuntimeError("the producer ended without its End marker")
