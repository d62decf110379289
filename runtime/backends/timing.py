"""Measuring an engine the way a run uses it: its accuracy and speed on the shipped verification windows
(``check_here``, ``Passes``), the thread counts and batch sizes worth trying, and calls shaped as a run's (each batch
with crops of its own, as on footage whose every window has a new picture)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ccstereo.runtime import verification
from ccstereo.runtime.backends.choose import Candidate, Evidence
from ccstereo.runtime.backends.precision_policy import AUTO_MIN_SNR_DB, auto_may_pick
from ccstereo.runtime.backends.protocol import Backend
from ccstereo.runtime.cpu_features import usable_cpus
from ccstereo.runtime.verification import CpuAccuracy, Shipped

BATCH_SIZES = (32, 16, 8)  # tried for the chosen engine when --batch-size is not given (the default first)
TIMING_WINDOWS = 32  # windows per timed pass of a setting (the largest batch size tried)
# A candidate whose first timed pass is this much slower than the fastest accurate candidate's first pass is not
# timed again. Timings drift (the same engine and batch measured 0.91-1.22x apart a few seconds later on a 2-core
# Zen 4), so the margin is wider than the drift; engines that lose by more still do by far (Zen 4: the fp32 engines
# 2.2-2.6x OpenVINO int8), and their second pass cost ~0.4 s of every first run each.
LOSES = 1.5


def physical_cores() -> int:
    """Return the number of physical cores among the CPUs this process may use (CPUs sharing a core through SMT
    count once); the number of those CPUs where the topology is unknown."""
    allowed = usable_cpus()
    siblings = set()
    for cpu in allowed:
        try:
            siblings.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            continue
    return len(siblings) or len(allowed)


def thread_counts() -> list[int]:
    """Return the thread counts worth timing: every CPU this process may use, and one per physical core among
    them where they differ."""
    logical = len(usable_cpus())
    return sorted({logical, min(logical, physical_cores())}, reverse=True)


def timing_batches(vset, batch: int, count: int = TIMING_WINDOWS) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return ``count`` windows of ``vset`` (repeated as needed) cut into calls of ``batch`` windows, each window
    with a crop of its own (a copy of the crop ``vset`` pairs it with): at the default hop of 0.1 s every window of
    footage has its own picture, so a run's batch computes one crop per window. (The shipped windows are 0.063 s
    apart and share crops; timing them as they are would compute fewer crops per window than a run does.)"""
    k = np.arange(count) % len(vset.mono)
    crops, mono = vset.crops_u8[vset.frame_index[k]], vset.mono[k]
    return [
        (crops[lo : lo + batch], mono[lo : lo + batch], np.arange(len(mono[lo : lo + batch]), dtype=np.int64))
        for lo in range(0, count, batch)
    ]


class Passes:
    """Timed passes of one engine over ``timing_batches(vset, batch)``: the first call untimed (allocations at this
    shape), then one pass at a time, so that the passes of several engines can take turns. ``ms``: the best pass so
    far, in ms per window."""

    def __init__(self, run: Callable, vset, batch: int, name: str = "") -> None:
        self.run, self.calls, self.name = run, timing_batches(vset, batch), name
        self.ms, self.count = float("inf"), 0

    def one(self) -> float:
        """Time one more pass; return its ms per window."""
        if not self.count:
            self.run(*self.calls[0])
        t0 = time.perf_counter()
        for call in self.calls:
            self.run(*call)
        took = 1000 * (time.perf_counter() - t0) / TIMING_WINDOWS
        self.ms, self.count = min(self.ms, took), self.count + 1
        return took


def time_setting(run: Callable, vset, batch: int, passes: int = 2) -> float:
    """Return the best of ``passes`` timings, in ms per window, of ``run`` on ``timing_batches(vset, batch)``."""
    timer = Passes(run, vset, batch)
    for _ in range(passes):
        timer.one()
    return timer.ms


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    ms_per_window: float | None
    accuracy: CpuAccuracy | None
    usable: bool
    note: str = ""

    def to_dict(self) -> dict:
        measured = {} if self.accuracy is None else asdict(self.accuracy)
        return {
            **asdict(self.candidate),
            "ms_per_window": self.ms_per_window,
            "usable": self.usable,
            "note": self.note,
        } | measured

    def evidence(self) -> Evidence:
        """This trial as the chooser's evidence (an fp32 engine is judged by its SNR alone: it must reproduce fp32)."""
        if self.accuracy is None:
            return Evidence(None, None, "not measured here", None, self.note)
        worst = self.accuracy.worst_metric_change if self.candidate.reduced else None
        return Evidence(self.accuracy.snr_db, worst, "on this CPU", self.ms_per_window, self.accuracy.words())


@dataclass(frozen=True)
class Setting:
    """A batch size and thread count of the chosen engine, timed on ``TIMING_WINDOWS`` windows."""

    batch: int
    threads: int
    ms_per_window: float | None
    note: str = ""


def check_here(backend: Backend, candidate: Candidate, shipped: Shipped) -> tuple[CpuAccuracy, bool]:
    """Check ``backend`` against the shipped fp32 outputs on this CPU; return its accuracy and whether auto may take
    it. Its time is not taken here: the check's comparison (paper metrics of two clips) costs a fixed ~0.1 s, as
    much as the engine's own work on 16 windows, so engines 1.3x apart timed by it within 3 % of each other (Zen 4:
    OpenVINO int8 10.0-10.3 and bf16 10.2-10.3 ms per window, 4.9 and 6.5 alone) — ``Passes`` times the calls."""
    vset = shipped.vset
    backend.run(vset.crops_u8, vset.mono[:2], vset.frame_index[:2])  # first-call allocations
    accuracy, _ = verification.check(backend.run, shipped, backend.max_batch)
    if candidate.reduced:
        return accuracy, auto_may_pick(accuracy.snr_db, accuracy.worst_metric_change)
    return accuracy, accuracy.snr_db >= AUTO_MIN_SNR_DB  # an fp32 engine that does not reproduce fp32 is broken
