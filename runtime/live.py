"""Live streaming (``ccs-run - --live``): each window runs as soon as its sound has arrived, in batches of whatever
is ready, so the delay stays bounded; a machine that falls behind real time degrades in a stated order instead
of letting the delay grow.

An output sample is final once every window covering it has run; the last of those starts at the sample and
ends one window (0.63 s) later, and windows start every hop (0.1 s). So the delay of live output is the window,
plus up to a hop, plus the compute of the batch the window ran in, plus the encoder's frame.

Degradation (each level keeps the ones before it; ``LEVELS`` names them), taken one step at a time while the
compute delay of a batch exceeds the budget and is not shrinking, undone one step at a time once the delay has
stayed under a third of the budget for ``RECOVER_S``:

1. one V-TTA crop: every window takes the centre crop of its picture;
2. the picture held longer: a window takes the previous window's picture while it is under ``HOLD_TICKS`` ticks
   old, so windows in a row compute the visual network once (identical crops are shared in a batch);
3. a doubled hop: half as many windows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ccstereo.runtime.frames import mirrored_window
from ccstereo.runtime.media import MediaError
from ccstereo.runtime.report import StageTimes
from ccstereo.runtime.stream import Batch, Batching, End, Pump, _Audio, _Frames, _unique

LEVELS = ("full", "one V-TTA crop", "picture held 0.3 s", "hop doubled")
HOLD_TICKS = 3  # level 2: a picture serves windows for up to this many 10 fps ticks
HOP_FACTOR = 2  # level 3: the hop is multiplied by this
LAG_BUDGET_S = 0.25  # compute delay of a batch (sound arrived -> its windows computed) before degrading
SETTLE_S = 1.0  # after a change of level, wait this long before the next step down
RECOVER_S = 10.0  # the delay stays under a third of the budget this long before a level is undone
WARMUP_S = 2.0  # no step in the first seconds of a run (the engine's first calls prepare their shapes)
_BINS_S = 0.01  # resolution of the delay histogram (memory stays flat for hours)
LOG = logging.getLogger(__name__)  # each change of level, as it happens (ccs-run prints it on standard error)


@dataclass
class Change:
    stream_s: float  # stream time of the batch that triggered it
    level: int  # the level entered
    lag_s: float


@dataclass
class LiveControl:
    """The degradation level the producer reads and the consumer sets from the compute delay it observes."""

    budget_s: float = LAG_BUDGET_S
    say: Callable[[str], None] = LOG.warning
    clock: Callable[[], float] = time.monotonic
    level: int = 0
    changes: list[Change] = field(default_factory=list)
    windows: list[int] = field(default_factory=lambda: [0] * len(LEVELS))  # windows computed at each level
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(1000, np.int64))
    _changed_at: float = float("-inf")
    _first_at: float | None = None
    _calm_since: float | None = None
    _reference: tuple[float, float] | None = None  # (time, delay) a second or more ago: is the delay shrinking?

    def observe(self, lag_s: float, stream_s: float) -> None:
        """Record the compute delay of a batch that just ran; step the level when it says so."""
        now = self.clock()
        self.histogram[min(int(lag_s / _BINS_S), len(self.histogram) - 1)] += 1
        self._first_at = now if self._first_at is None else self._first_at
        if now - self._first_at < WARMUP_S:
            return
        shrinking = self._reference is not None and lag_s < self._reference[1] - 0.05
        if self._reference is None or now - self._reference[0] >= SETTLE_S:
            self._reference = (now, lag_s)
        if lag_s > self.budget_s:
            self._calm_since = None
            if self.level < len(LEVELS) - 1 and now - self._changed_at >= SETTLE_S and not shrinking:
                self._step(+1, now, lag_s, stream_s)
        elif lag_s < self.budget_s / 3:
            self._calm_since = now if self._calm_since is None else self._calm_since
            if self.level > 0 and now - self._calm_since >= RECOVER_S and now - self._changed_at >= RECOVER_S:
                self._step(-1, now, lag_s, stream_s)
                self._calm_since = now
        else:
            self._calm_since = None

    def _step(self, by: int, now: float, lag_s: float, stream_s: float) -> None:
        self.level += by
        self._changed_at = now
        self.changes.append(Change(stream_s, self.level, lag_s))
        verb = "behind" if by > 0 else "keeping up"
        self.say(f"live: {verb} at {stream_s:.1f} s (compute delay {lag_s:.2f} s): {LEVELS[self.level]}")

    def summary(self) -> dict:
        """The delay figures and the degradations, for the report."""
        counts, levels = self.histogram, [c.level for c in self.changes]
        total = int(counts.sum())
        cumulative = np.cumsum(counts)

        def quantile(q: float) -> float | None:
            return None if not total else round(float((np.searchsorted(cumulative, q * total) + 1) * _BINS_S), 2)

        return {
            "compute_delay_p50_s": quantile(0.5),
            "compute_delay_p95_s": quantile(0.95),
            "compute_delay_max_s": quantile(1.0),
            "degradations": sum(c.level > before for before, c in zip([0, *levels], self.changes, strict=False)),
            "changes": [
                {"stream_s": round(c.stream_s, 2), "level": LEVELS[c.level], "lag_s": round(c.lag_s, 3)}
                for c in self.changes
            ],  # fmt: skip
            "windows_per_level": dict(zip(LEVELS, self.windows, strict=True)),
        }


def describe(summary: dict) -> str:
    """One line for a live run's ``LiveControl.summary``."""
    delay = f"compute delay p95 {summary['compute_delay_p95_s']} s, max {summary['compute_delay_max_s']} s"
    if not summary["degradations"]:
        return f"live: {delay}; no degradation"
    steps = ", ".join(f"{c['level']} at {c['stream_s']} s" for c in summary["changes"])
    per_level = ", ".join(f"{k} {v}" for k, v in summary["windows_per_level"].items() if v)
    return f"live: {delay}; degraded {summary['degradations']} times ({steps}); windows: {per_level}"


def produce_live(
    audio: Iterator[np.ndarray], frames: Iterator[tuple[int, np.ndarray]], batching: Batching, times: StageTimes,
    control: LiveControl,
) -> Iterator[Batch | End]:  # fmt: skip
    """Yield one window at a time, as soon as its sound has arrived, at the level ``control`` says; then End."""
    plan, config = batching.plan, batching.config
    crops, windows = _Frames(frames, config, batching.tta, times), _Audio(audio, plan, times)
    start, held, count = 0, None, 0
    while True:
        level = control.level
        step = plan.hop_samples * (HOP_FACTOR if level >= 3 else 1)
        window = windows.window_at(start, step)
        if window is None:
            break
        ready = time.monotonic()
        tick = plan.tick_at(start)
        if level >= 2 and held is not None and tick - held < HOLD_TICKS:
            tick = held
        held = tick
        flip = batching.mirror and mirrored_window(count)
        crop = crops.crop(tick, batching.tta and level < 1, flip)
        control.windows[level] += 1
        limit = windows.total if windows.eof else None
        flips = np.array([flip]) if batching.mirror else None
        yield Batch(
            [start], window[None], crop[None], np.zeros(1, np.int64), start + step, limit, ready_s=ready, mirrored=flips
        )
        windows.release_before(start + step)
        start, count = start + step, count + 1
    if windows.total == 0:
        raise MediaError("zero-length audio")
    yield End(windows.total)


def merge(batches: list[Batch], share: bool = True) -> Batch:
    """Return one batch of the windows of ``batches`` (in order), identical crops entering it once."""
    if len(batches) == 1:
        return batches[0]
    crops = [b.frames[i] for b in batches for i in b.frame_index]
    distinct, where = _unique(crops, share)
    last = batches[-1]
    return Batch(
        [s for b in batches for s in b.starts],
        np.concatenate([b.mono for b in batches]),
        np.stack(distinct),
        np.array(where, np.int64),
        last.next_start,
        last.limit,
        shared_crops=len(crops) - len(distinct),
        ready_s=batches[0].ready_s,
        mirrored=None if last.mirrored is None else np.concatenate([b.mirrored for b in batches]),
    )


def live_batches(
    items: Iterator[Batch | End], control: LiveControl, most: int, rate_hz: int, share: bool = True
) -> Iterator[Batch | End]:
    """Run the producer ``items`` on a thread; yield everything it has ready as one batch of at most ``most``
    windows (one window when the machine keeps up), and tell ``control`` each batch's compute delay."""
    pump = Pump(items, depth=4 * most, name="ccs-live-decode")
    try:
        while True:
            group = [pump.get()]
            while isinstance(group[-1], Batch) and len(group) < most and (item := pump.get_nowait()) is not None:
                group.append(item)
            if group[-1] is Pump.END:
                raise RuntimeError("the producer ended without its End marker")
            end = group.pop() if isinstance(group[-1], End) else None
            if group:
                batch = merge(group, share)  # type: ignore[arg-type]
                yield batch
                if batch.ready_s is not None:
                    control.observe(time.monotonic() - batch.ready_s, batch.starts[0] / rate_hz)
            if end is not None:
                yield end
                return
    finally:
        pump.stop()
