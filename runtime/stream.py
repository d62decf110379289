"""The streaming core: audio + frames in, batches of windows out (producer), one backend call per batch,
overlap-add and hand-off of finished samples (consumer).

The producer decodes and preprocesses the next batches in a thread while the backend runs the current one;
a bounded queue keeps memory flat.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.runtime.frames import crop_resized, mirrored_window, resize_for_model
from ccstereo.runtime.fullband import OriginalAudio
from ccstereo.runtime.interrupts import Waitable
from ccstereo.runtime.media import MediaError, MediaInput
from ccstereo.runtime.overlap_add import StreamingOverlapAdd
from ccstereo.runtime.report import StageTimes, process_age_s
from ccstereo.runtime.visual_rate import CropTracker, FeatureStore, KeyPlan
from ccstereo.runtime.windows import WindowPlan

QUEUE_DEPTH = 2
# frames resized at once beside the decoding, where the process may use more than one CPU (< 2: one at a time, on
# the decoding thread; benchmarks/resolution.py compares the two)
RESIZE_WORKERS = 2


@dataclass
class Batch:
    starts: list[int]
    mono: np.ndarray  # [B, window] float32 (L + R)
    frames: np.ndarray  # [F, h, w, 3] uint8, distinct in this batch
    frame_index: np.ndarray  # [B] int64
    next_start: int  # start of the first window not in this batch
    limit: int | None  # the input's length once known: nothing past it is emitted
    shared_crops: int = 0  # crops of distinct ticks whose pixels equal another's: computed once, not again
    keys: KeyPlan | None = None  # adaptive visual rate: which features each window uses (frame_index unused)
    ready_s: float | None = None  # live: when the sound of its first window had arrived (time.monotonic)
    mirrored: np.ndarray | None = None  # [B] bool: the window's crop was mirrored, so its ears are swapped back


# what a window sees: its 10 fps tick, and whether mirrored (mirror test-time augmentation)
View = tuple[int, bool]


@dataclass
class End:
    total_samples: int


class _ResizeAhead:
    """The frames of a tick-ordered iterator, read ``2 x workers`` ahead of use, each wanted one's resize for the
    model started on a thread pool as it is read: Pillow lets go of the GIL while it resamples, so the resizes of
    the next frames run beside the decoding (a 1080p picture takes ~15 ms, a 4K one ~75 ms: more than the model's
    share of its tick). The result is the same function's, to the bit; a picture equal to the one before shares its
    resize. ``wanted``: the ticks the windows will ask for, ascending (a frame no window shows is not resized)."""

    def __init__(self, ticks: Iterator, config: ModelConfig, tta: bool, times: StageTimes, wanted: Iterator[int]):
        from concurrent.futures import ThreadPoolExecutor

        self.ticks, self.config, self.tta, self.times, self.wanted = ticks, config, tta, times, wanted
        self.next_wanted: int | None = next(wanted, None)
        self.pool = ThreadPoolExecutor(RESIZE_WORKERS, thread_name_prefix="ccs-resize")
        self.pending: deque = deque()
        self.futures: dict = {}  # tick -> the Future of its resized picture
        self.last: tuple | None = None  # (picture, Future) last sent to the pool

    def __iter__(self) -> _ResizeAhead:
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        while len(self.pending) < 2 * RESIZE_WORKERS and self._read():
            pass
        if not self.pending:
            self.pool.shutdown(wait=False)
            raise StopIteration
        return self.pending.popleft()

    def _read(self) -> bool:
        item = next(self.ticks, None)
        if item is None:
            return False
        tick, image = item
        while self.next_wanted is not None and self.next_wanted < tick:
            self.next_wanted = next(self.wanted, None)
        if self.next_wanted == tick:
            last = self.last
            if last is not None and _same_picture(last[0], image):
                self.futures[tick] = last[1]
            else:
                self.futures[tick] = self.pool.submit(self._resize, image)
                self.last = (image, self.futures[tick])
        self.pending.append(item)
        return True

    def _resize(self, image: np.ndarray) -> np.ndarray:
        with self.times.stage("resize_crop"):
            return resize_for_model(image, self.config, self.tta)

    def take(self, tick: int, tta: bool):
        """Return the resized picture of ``tick`` when it was started with ``tta``, else None (forgets older ticks)."""
        for old in [t for t in self.futures if t < tick]:
            del self.futures[old]
        future = self.futures.pop(tick, None) if tta == self.tta else None
        return None if future is None else future.result()


def mirrored(crop: np.ndarray) -> np.ndarray:
    """Return a uint8 [h, w, 3] picture mirrored left-right (whole pixels moved as one 3-byte item: 2.5x faster than
    numpy's per-byte reversed copy)."""
    pixels = np.ascontiguousarray(crop).view(np.dtype((np.void, crop.shape[-1] * crop.itemsize)))
    return np.ascontiguousarray(pixels[:, ::-1]).view(crop.dtype).reshape(crop.shape)


def _same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.array_equal(a, b))


def resize_ahead(wanted: Iterator[int]) -> Iterator[int] | None:
    """``wanted`` where this process may use more than one CPU (the resizes then run beside the decoding), else None:
    one CPU gains nothing from a pool."""
    from ccstereo.runtime.cpu_features import usable_cpus

    return wanted if RESIZE_WORKERS > 1 and len(usable_cpus()) > 1 else None


class _Frames:
    """Crops per tick from a tick-ordered frame iterator; the last frame repeats past the end of the video.

    A decoded picture equal to the previous one (a still image, a repeated frame) is not resized again. ``wanted``
    (the ticks the windows ask for): frames are read ahead and resized on a pool (``_ResizeAhead``)."""

    def __init__(
        self, ticks: Iterator[tuple[int, np.ndarray]], config: ModelConfig, tta: bool, times: StageTimes,
        wanted: Iterator[int] | None = None,
    ) -> None:  # fmt: skip
        self.ahead = None if wanted is None else _ResizeAhead(ticks, config, tta, times, wanted)
        ticks = ticks if self.ahead is None else self.ahead
        self.ticks, self.config, self.tta, self.times = ticks, config, tta, times
        self.tick: int = -1
        self.image: np.ndarray | None = None
        self.exhausted = False
        self.cache: dict[tuple[int, bool, bool], np.ndarray] = {}  # (tick, tta, flip) -> crop
        self.resized_from: np.ndarray | None = None
        self.resized: np.ndarray | None = None
        self.resized_tta = tta

    def crop(self, tick: int, tta: bool | None = None, flip: bool = False) -> np.ndarray:
        """Return the crop of ``tick`` (``tta``: V-TTA's crop of the tick, else the centre crop; None: as built),
        mirrored left-right when ``flip`` (mirror test-time augmentation)."""
        tta = self.tta if tta is None else tta
        if (tick, tta, flip) in self.cache:
            return self.cache[tick, tta, flip]
        with self.times.stage("decode"):  # the colour conversion inside counts as its own stage
            while self.tick < tick and not self.exhausted:
                try:
                    self.tick, self.image = next(self.ticks)
                except StopIteration:
                    self.exhausted = True
        if self.image is None:
            raise MediaError("no video frame could be decoded")
        with self.times.stage("resize_crop"):
            crop = crop_resized(self._resized(self.image, tta), tick + 1, self.config, tta)
            if flip:
                crop = mirrored(crop)
        self.cache = {key: c for key, c in self.cache.items() if key[0] >= tick - 1}
        self.cache[tick, tta, flip] = crop
        return crop

    def _resized(self, image: np.ndarray, tta: bool) -> np.ndarray:
        ready = None if self.ahead is None else self.ahead.take(self.tick, tta)
        if ready is not None:
            self.resized, self.resized_from, self.resized_tta = ready, image, tta
            return ready
        last = self.resized_from
        same = last is not None and _same_picture(last, image)
        if not same or self.resized is None or self.resized_tta != tta:
            self.resized = resize_for_model(image, self.config, tta)
        self.resized_from, self.resized_tta = image, tta
        return self.resized


class _Audio:
    """L+R windows of the plan from stereo [2, n] chunks, keeping only the samples later windows need."""

    def __init__(self, chunks: Iterator[np.ndarray], plan: WindowPlan, times: StageTimes) -> None:
        self.chunks, self.plan, self.times = chunks, plan, times
        self.buf, self.base, self.total, self.eof = np.zeros(0, np.float32), 0, 0, False

    def window(self, k: int) -> np.ndarray | None:
        """Return window ``k`` (zero-padded at the end), or None when the input has no window ``k``."""
        return self.window_at(self.plan.start(k), self.plan.hop_samples)

    def window_at(self, start: int, hop: int) -> np.ndarray | None:
        """Return the window starting at sample ``start`` (the next one ``hop`` later), or None past the end."""
        w = self.plan.window_samples
        while not self.eof and self.total < start + w:
            with self.times.stage("decode"):
                chunk = next(self.chunks, None)
            if chunk is None:
                self.eof = True
                break
            self.buf = np.concatenate([self.buf, chunk[0] + chunk[1]])
            self.total += chunk.shape[1]
        if self.done_at(start, hop):
            return None
        window = self.buf[start - self.base : start - self.base + w]
        if len(window) < w:  # the zero-padded tail
            window = np.concatenate([window, np.zeros(w - len(window), np.float32)])
        return window

    def done(self, k: int) -> bool:
        return self.done_at(self.plan.start(k), self.plan.hop_samples)

    def done_at(self, start: int, hop: int) -> bool:
        """Whether the input ended before a window at ``start`` (the official count: windows start while the
        previous one ended before the last sample; one window at least)."""
        return self.eof and (self.total == 0 or (start > 0 and start >= self.total - self.plan.window_samples + hop))

    def release_before(self, start: int) -> None:
        drop = min(start, self.total) - self.base
        self.buf, self.base = self.buf[drop:], self.base + drop


class _Distinct:
    """The distinct crops of a batch: matched by a hash of their bytes, then compared in full."""

    def __init__(self, share: bool) -> None:
        self.share = share
        self.unique: list[np.ndarray] = []
        self.where: dict[Hashable, int] = {}  # what the crop is of (a view, a position) -> index into unique
        self.by_hash: dict[bytes, list[int]] = {}

    def add(self, of: Hashable, crop: np.ndarray) -> None:
        match = None
        if self.share:
            candidates = self.by_hash.setdefault(hashlib.blake2b(crop.tobytes(), digest_size=16).digest(), [])
            match = next((j for j in candidates if np.array_equal(self.unique[j], crop)), None)
        if match is None:
            match = len(self.unique)
            self.unique.append(crop)
            if self.share:
                candidates.append(match)
        self.where[of] = match

    def __len__(self) -> int:
        return len(self.unique)


# The first batch of a file holds this many windows (at most): the engine starts on it while the next fills, and
# the first output comes sooner. A window's result does not depend on the batch it is computed in.
FIRST_BATCH = 4

# A batch of windows that share few distinct pictures (a still image) grows up to this many times the batch
# size while its distinct crops stay within the batch size: the visual network's share of a batch is what the
# batch size bounds, and fewer batches compute each still picture's crops fewer times.
GROW_WHILE_SHARED = 8


@dataclass(frozen=True)
class Batching:
    """How windows become engine calls: the window plan, windows per call, the crops of each tick (``tta``: the
    V-TTA crops) and their reuse.

    ``share_identical``: crops whose pixels are identical (a still picture, repeated frames) enter the batch
    once and every window that uses them points at that one, so the visual network runs once per distinct
    picture; the result is the same to the bit (tests/test_visual_reuse.py). ``tracker``: the adaptive visual
    rate (``runtime.visual_rate``): only crops it marks fresh are computed; batches carry each window's key.
    ``mirror``: mirror test-time augmentation (``RunOptions.mirror``). ``picture``: (width, height) FFmpeg resizes
    every picture to as it converts it (``RunOptions.resize`` fast), None: converted at its own size (exact)."""

    plan: WindowPlan
    config: ModelConfig
    batch_size: int
    tta: bool = True
    share_identical: bool = True
    tracker: CropTracker | None = None
    mirror: bool = False
    picture: tuple[int, int] | None = None  # RunOptions.resize fast: the decoder's pictures come at this size


def produce(
    audio: Iterator[np.ndarray], frames: Iterator[tuple[int, np.ndarray]], batching: Batching, times: StageTimes
) -> Iterator[Batch | End]:
    """Yield batches of windows as soon as their audio (stereo [2, n] model-rate chunks) is decoded, then End
    with the total length."""
    plan, config, batch_size, tracker = batching.plan, batching.config, batching.batch_size, batching.tracker
    wanted = resize_ahead(plan.tick(i) for i in itertools.count())
    crops, windows, k = _Frames(frames, config, batching.tta, times, wanted), _Audio(audio, plan, times), 0
    most = batch_size * (GROW_WHILE_SHARED if batching.share_identical and tracker is None else 1)
    size = grow = min(FIRST_BATCH, batch_size)  # a small first call: an early start
    while True:
        starts: list[int] = []
        monos: list[np.ndarray] = []
        views: list[View] = []
        crop_of: dict[View, np.ndarray] = {}
        distinct = _Distinct(batching.share_identical)
        while len(starts) < size or (len(distinct) < size and len(starts) < grow):
            window = windows.window(k)
            if window is None:
                break
            view = (plan.tick(k), batching.mirror and mirrored_window(k))
            if view not in crop_of:
                crop_of[view] = crops.crop(view[0], flip=view[1])
                distinct.add(view, crop_of[view])
            starts.append(plan.start(k))
            monos.append(window)
            views.append(view)
            k += 1
        if starts:
            limit, mono = windows.total if windows.eof else None, np.stack(monos).astype(np.float32)
            flips = np.array([v[1] for v in views]) if batching.mirror else None
            if tracker is None:
                index = np.array([distinct.where[v] for v in views], np.int64)
                shared = len(distinct.where) - len(distinct)
                yield Batch(
                    starts, mono, np.stack(distinct.unique), index, plan.start(k), limit, shared, mirrored=flips
                )
            else:
                frames_u8, keys = _adaptive_visual(views, crop_of, tracker, config)
                yield Batch(
                    starts, mono, frames_u8, keys.window_keys, plan.start(k), limit, keys.shared, keys, None, flips
                )
            windows.release_before(plan.start(k))
        size, grow = batch_size, most
        if windows.done(k):
            if windows.total == 0:
                raise MediaError("zero-length audio")
            yield End(windows.total)
            return


def _adaptive_visual(
    views: list[View], crop_of: dict[View, np.ndarray], tracker: CropTracker, config: ModelConfig
) -> tuple[np.ndarray, KeyPlan]:
    """Return (the crops to compute, the batch's key plan) as the tracker decides per distinct view."""
    new: list[np.ndarray] = []
    new_keys: list[int] = []
    key_of: dict[View, int] = {}
    reused = shared = 0
    for view in sorted(set(views)):
        crop = crop_of[view]
        decision = tracker.decide(view[0], crop, view[1])
        key_of[view] = decision.key
        if decision.fresh:
            new.append(crop)
            new_keys.append(decision.key)
        elif decision.exact:
            shared += 1
        else:
            reused += 1
    frames_u8 = np.stack(new) if new else np.zeros((0, config.crop_height, config.crop_width, 3), np.uint8)
    window_keys = np.array([key_of[v] for v in views], np.int64)
    return frames_u8, KeyPlan(new_keys, window_keys, tracker.live(), reused, shared)


def _unique(crops: list[np.ndarray], share: bool) -> tuple[list[np.ndarray], list[int]]:
    """Return (distinct crops, position of each given crop among them); identical pixels count once."""
    distinct = _Distinct(share)
    for i, crop in enumerate(crops):
        distinct.add(i, crop)
    return distinct.unique, [distinct.where[i] for i in range(len(crops))]


def windows_from(
    media: MediaInput, batching: Batching, times: StageTimes, original: OriginalAudio | None = None, live=None
) -> Iterator[Batch | End]:
    """Yield the batches of windows of a media input (``produce`` over its audio and frame readers); its
    original-rate audio goes to ``original`` when given (full-band output); ``live`` (a ``live.LiveControl``):
    one window at a time as its sound arrives (``live.produce_live``)."""
    keep, rate = original is not None, batching.config.sample_rate_hz
    chunks = media.audio(rate, keep_original=keep, original_rate_hz=original and original.rate_hz)
    audio = original.split(chunks) if original is not None else (chunk.model for chunk in chunks)
    if live is not None:
        from ccstereo.runtime.live import produce_live

        return produce_live(audio, media.frames(batching.config.fps, times, batching.picture), batching, times, live)
    return produce(audio, media.frames(batching.config.fps, times, batching.picture), batching, times)


class Pump:
    """A producer iterator on a thread of its own behind a bounded queue: ``get`` returns its items in order, then
    ``END``; an exception it raised is raised by ``get`` instead. ``stop`` ends the thread early."""

    END = object()

    def __init__(self, items: Iterator, depth: int = QUEUE_DEPTH, name: str = "ccs-decode") -> None:
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = Waitable(self._work, (items,), name=name)
        self.thread.start()

    def _work(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(self.END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)

    def _put(self, item) -> bool:
        while not self.stopping.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    @staticmethod
    def _unwrap(item):
        if isinstance(item, BaseException):
            raise item
        return item

    def get(self):
        """Return the next item (waiting for it), or ``END``."""
        return self._unwrap(self.q.get())

    def get_nowait(self):
        """Return the next item if one is ready, else None."""
        try:
            return self._unwrap(self.q.get_nowait())
        except queue.Empty:
            return None

    def stop(self) -> None:
        self.stopping.set()
        self.thread.wait(timeout=5)


def threaded(items: Iterator, depth: int = QUEUE_DEPTH) -> Iterator:
    """Run ``items`` in a producer thread behind a bounded queue; re-raise its exceptions here."""
    pump = Pump(items, depth)
    try:
        while (item := pump.get()) is not Pump.END:
            yield item
    finally:
        pump.stop()


@dataclass
class ConsumeResult:
    total_samples: int
    windows: int
    batches: int
    crops_computed: int = 0  # crops the backend's visual network ran on
    crops_shared: int = 0  # crops it did not run on because an identical one was in the same batch
    crops_reused: int = 0  # adaptive visual rate: crops whose features were taken from a similar earlier crop
    visual_rate: str = "exact"
    first_call_s: float | None = None  # seconds from the process's start to the first backend call


@dataclass(frozen=True)
class WindowRunner:
    """The model side of a run: the engine call for a batch (``store``: through the feature store, for the
    adaptive visual rate's batches) and the window length its outputs overlap-add at."""

    run: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    window: int
    store: FeatureStore | None = None

    def __call__(self, item: Batch) -> np.ndarray:
        if item.keys is None:
            out = self.run(item.frames, item.mono, item.frame_index)
        elif self.store is None:
            raise RuntimeError("an adaptive batch reached a consumer without a feature store")
        else:
            out = self.store.run(item.frames, item.mono, item.keys)
        return out if item.mirrored is None else swap_ears(out, item.mirrored)


def swap_ears(binaural: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Return binaural windows [B, 2, N] with left and right exchanged where ``mirrored`` [B] is true: a window
    computed on a mirrored picture is the mirror image of the scene's sound."""
    return np.where(mirrored[:, None, None], binaural[:, ::-1], binaural)


def consume(
    items: Iterator[Batch | End],
    runner: WindowRunner,
    on_model: Callable[[np.ndarray], None],
    times: StageTimes,
    progress: Callable[[int], None] | None = None,
) -> ConsumeResult:
    """Run each batch through ``runner`` and pass finished model-rate samples to ``on_model``."""
    ola = StreamingOverlapAdd(2, runner.window)
    result = ConsumeResult(0, 0, 0)
    for item in items:
        if isinstance(item, End):
            with times.stage("overlap_add"):
                tail = ola.pop(item.total_samples)
            on_model(tail)
            result.total_samples = item.total_samples
            return result
        if result.batches == 0:
            result.first_call_s = process_age_s()
        with times.stage("backend"):
            out = runner(item)
        with times.stage("overlap_add"):
            for start, block in zip(item.starts, out, strict=True):
                ola.add(start, block)
            ready = ola.pop(item.next_start if item.limit is None else min(item.next_start, item.limit))
        result.windows += len(item.starts)
        result.batches += 1
        result.crops_computed += len(item.frames)
        result.crops_shared += item.shared_crops
        result.crops_reused += item.keys.reused if item.keys is not None else 0
        on_model(ready)
        if progress is not None:
            progress(item.next_start)
    raise RuntimeError("the producer ended without its End marker")
