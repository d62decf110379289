"""Measured choice of the CPU engine and its settings (``--backend auto --precision auto`` without a GPU).

On first use of an exported folder on a machine, every usable candidate — onnxruntime fp32, and with OpenVINO installed
OpenVINO fp32, bf16 (where the CPU has native BF16) and int8 (where the folder has ``model.int8.onnx``) — runs the
folder's verification windows (``runtime.verification``): its accuracy check on THIS CPU; then its calls alone are timed
on windows of the same clip as a run makes them, the candidates taking turns (``_timed_in_turns``: the reduced
precisions first; a candidate whose first pass is clearly slower than the fastest accurate one is not timed twice,
onnxruntime fp32 apart: the speed-up is said against it). The fastest candidate that passes the auto gate (>= 35 dB vs
the shipped fp32 output, every paper metric within 2 %) is kept. Then, unless ``--batch-size`` / ``--threads`` were
given, that engine is timed at the batch sizes (windows per call) and thread counts worth trying here on windows of the
same clip, each batch with crops of its own as on real footage, the settings taking turns too (the one the probe timed
included: timings drift, the same engine and batch 0.91-1.22x apart a few seconds later on a 2-core Zen 4), and the
fastest setting is kept. The choice is cached in the user cache folder under a key made of the model files' sha256, the
CPU's model name and flags, and the versions of the libraries that run it (``tuning_cache``) — so a second run does not
measure again, and a changed model file, CPU or library does; processes that miss the cache together measure one at
a time (``tuning_cache.measuring_alone``), the others taking the first one's choice. ``--tune`` measures again;
``--no-tune`` uses the flag rules of ``choose``. The tuner only supplies evidence: ``choose`` picks, ``select`` builds
the run's engine once from the returned choice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ccstereo.runtime import verification
from ccstereo.runtime.backends.choose import DEFAULT_BATCH, Candidate, Known, build, choose, cpu_candidates
from ccstereo.runtime.backends.protocol import Backend
from ccstereo.runtime.backends.timing import (
    BATCH_SIZES,
    LOSES,
    TIMING_WINDOWS,
    Passes,
    Setting,
    Trial,
    check_here,
    thread_counts,
)
from ccstereo.runtime.backends.tuning_cache import (
    Kept,
    cache_dir,
    cache_key,
    measuring_alone,
    read_cache,
    write_cache,
)
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.model_info import read_onnx_info
from ccstereo.runtime.verification import CpuAccuracy, Shipped

# Where the probe says what it does as it goes (``ccs-run`` shows it on standard error unless --quiet): a first run
# spends seconds here before any file is touched, and should not spend them in silence.
LOG = logging.getLogger("ccstereo.runtime.tuning")
PROBE_BUDGET_S = 15.0  # no candidate or setting is started once the probe has taken this long
# A later setting replaces an earlier one (the default is first) only if this much faster. Settings differ by less
# than their timings' noise on the CPUs measured, and a small batch's gain alone does not survive a run: on a 2-core
# Zen 4, batch 8 timed 2.1 % faster than 32 alone and was then 3.5 % slower over 60 s of real footage (three sets of
# three interleaved rounds, by median: +3.3 %, -0.4 %, +7.5 %; `benchmarks/batch_sizes.py`). 0.98 let noise choose.
NOISE = 0.95


def replaces(ms: float, fastest_ms: float) -> bool:
    """Whether a setting timed at ``ms`` per window replaces the fastest so far (timed at ``fastest_ms``)."""
    return ms < NOISE * fastest_ms


@dataclass
class Tuned:
    """The measured choice: what to build (``choose.build``), and the evidence behind it. Nothing built here
    leaves the tuner: the run's engine is built once from this."""

    candidate: Candidate
    kept: Kept
    reason: str
    trials: list[Trial]
    cached: bool
    settings: list[Setting] = field(default_factory=list)

    @property
    def batch(self) -> int:
        return self.kept.batch

    @property
    def threads(self) -> int | None:
        return self.kept.threads


def tune(folder: Path, batch: int | None, threads: int | None, remeasure: bool, log=None) -> Tuned:
    """Return the fastest accurate CPU engine for ``folder`` here, at its fastest batch size and thread count
    (``batch`` / ``threads`` None: measured; given: kept): from the cache, or measured now, saying each step to
    ``log`` (default: the ``LOG`` logger at INFO).

    Raises ModelMetadataError when the folder ships no usable verification file (nothing to measure with)."""
    shipped_path = folder / verification.FILE_NAME
    if not shipped_path.is_file():
        raise ModelMetadataError(f"{folder}: no {verification.FILE_NAME} (exported before measured selection)")
    found = timed_candidates(folder)
    key = cache_key(folder, found, threads, batch)
    entry = cache_dir() / "tuning" / f"{key}.json"
    cached = None if remeasure else read_cache(entry, found)
    how = "measured here before"
    if cached is None:
        with measuring_alone(entry, log or LOG.info) as waited:
            cached = read_cache(entry, found) if waited and not remeasure else None  # the other one's choice
            if cached is None:
                return _measure(folder, shipped_path, found, (batch, threads), entry, log)
            how = "measured here by another process while this one waited"
    chosen, kept, words = cached
    return Tuned(chosen, kept, f"{words} ({how}; --tune measures again)", [], True)


def _measure(folder: Path, shipped_path: Path, found: list[Candidate], asked: tuple, entry: Path, log) -> Tuned:
    """Measure and cache the choice for ``folder`` (``asked``: the batch size and thread count given, or None)."""
    batch, threads = asked
    shipped = verification.load(shipped_path, read_onnx_info(folder / "model.onnx").config)
    probe = _Probe(folder, shipped, log or LOG.info)
    probe.say(
        f"tuning: timing the engines {folder} can run on this CPU (once per model and machine, "
        f"{PROBE_BUDGET_S:g} s at most; --no-tune skips it)"
    )
    trials, best = _probe(probe, found, batch or DEFAULT_BATCH, threads)
    settings, picked = _settings(probe, best, batch, threads)
    words = _words(trials, best[0]) + _setting_words(settings, picked)
    if picked is not None:
        kept = Kept(picked.batch, picked.threads, picked.ms_per_window)
    else:
        kept = Kept(batch or DEFAULT_BATCH, threads, best[0].ms_per_window)
    write_cache(entry, best[0].candidate, kept, words, [t.to_dict() for t in trials])
    return Tuned(best[0].candidate, kept, words, trials, False, settings)


def timed_candidates(folder: Path) -> list[Candidate]:
    """The candidates worth timing here: bf16 only where the CPU computes it natively (emulated, it is slower than
    fp32 and auto would never take it)."""
    from ccstereo.runtime.cpu_features import native_bf16

    return [c for c in cpu_candidates(folder) if c.precision != "bf16" or native_bf16()]


@dataclass
class _Probe:
    """One measurement: the folder, its shipped outputs, where progress is said, and the clock of the budget."""

    folder: Path
    shipped: Shipped
    log: Callable[[str], None]
    started: float = field(default_factory=time.perf_counter)

    def spent(self, expected_s: float = 0.0) -> bool:
        return time.perf_counter() - self.started + expected_s > PROBE_BUDGET_S

    def say(self, line: str) -> None:
        self.log(line)


def _probe(probe: _Probe, found: list[Candidate], batch: int, threads: int | None) -> tuple[list[Trial], tuple]:
    """Check every candidate (while the budget lasts), then time them in turns (``_timed_in_turns``). Return the
    trials and the one ``choose`` takes, with the engine that was timed for it (for timing its settings)."""
    folder, order = probe.folder, sorted(found, key=lambda c: not c.reduced)  # stable: fp32 in the order found
    untried: dict[Candidate, Trial] = {}
    checked: dict[Candidate, tuple[Backend, CpuAccuracy, bool]] = {}
    for candidate in order:
        if probe.spent():
            untried[candidate] = Trial(
                candidate, None, None, False, f"not tried: the probe's {PROBE_BUDGET_S:g} s were spent"
            )
            continue
        try:
            backend = build(folder, candidate, batch, threads)
            accuracy, usable = check_here(backend, candidate, probe.shipped)
        except (BackendUnavailableError, ModelMetadataError) as exc:
            untried[candidate] = Trial(candidate, None, None, False, str(exc))
            continue
        checked[candidate] = (backend, accuracy, usable)
        probe.say(f"tuning: {candidate.label}: {accuracy.words()}{'' if usable else ' (fails the accuracy gate)'}")
    timed = _timed_in_turns(probe, checked)
    if timed:
        said = (f"{c.label} {ms:.1f} ms/window{' (one pass)' if note else ''}" for c, (ms, note) in timed.items())
        probe.say("tuning: " + ", ".join(said))
    trials = [untried.get(c) or Trial(c, timed[c][0], checked[c][1], checked[c][2], timed[c][1]) for c in order]
    engines = {c: b for c, (b, _, usable) in checked.items() if usable}
    if not engines:
        raise BackendUnavailableError(
            f"{folder}: no engine reproduces the shipped fp32 outputs on this CPU: "
            + "; ".join(f"{t.candidate.label}: {t.accuracy.words() if t.accuracy else t.note}" for t in trials)
        )
    choice = choose(("auto", "auto"), found, Known({t.candidate: t.evidence() for t in trials}), None, folder)
    trial = next(t for t in trials if t.candidate == choice.candidate)
    return trials, (trial, engines[choice.candidate])


def _timed_in_turns(
    probe: _Probe, engines: dict[Candidate, tuple[Backend, CpuAccuracy, bool]]
) -> dict[Candidate, tuple[float, str]]:
    """Return each engine's best ms per window and a note: every engine's first pass, then, in the same order, a
    second pass for the accurate ones whose first pass was within ``timing.LOSES`` of the fastest accurate first
    pass (and for onnxruntime fp32, the baseline every speed-up is said against) while the budget lasts. Taking
    turns, every engine's passes spread over the same seconds: a slow spell of the machine (timings drift by up
    to 1.2x within seconds here) costs each engine at most one of its passes instead of deciding between them."""
    timers = {c: Passes(b.run, probe.shipped.vset, b.max_batch, c.label) for c, (b, _, _) in engines.items()}
    first = {c: timer.one() for c, timer in timers.items()}
    accurate = [first[c] for c, (_, _, usable) in engines.items() if usable]
    bound = LOSES * min(accurate) if accurate else float("inf")
    notes = {}
    for c, timer in timers.items():
        if not (_baseline(c) or (engines[c][2] and first[c] <= bound)):
            notes[c] = f"one pass: over {LOSES:g}x the fastest"
        elif probe.spent(TIMING_WINDOWS * timer.ms / 1000):
            notes[c] = f"one pass: the probe's {PROBE_BUDGET_S:g} s were spent"
        else:
            timer.one()
    return {c: (timer.ms, notes.get(c, "")) for c, timer in timers.items()}


def _settings(
    probe: _Probe, best: tuple, batch: int | None, threads: int | None
) -> tuple[list[Setting], Setting | None]:
    """Time the chosen engine at every batch size and thread count not given, the settings taking turns as the
    candidates do (``_timed_in_turns``); return (what was timed, the fastest; None when nothing was to be chosen).
    Engines are timed, never changed."""
    sizes, counts = [batch] if batch else list(BATCH_SIZES), [threads] if threads else thread_counts()
    trial, backend = best
    if len(sizes) * len(counts) == 1:
        return [], None
    timers: dict[tuple[int, int], Passes | None] = {}
    for count in counts:  # the first turn: one pass of each setting
        engine = backend if count == counts[0] else None
        for size in sizes:  # started only if its expected time (3 passes at the probe's rate) fits the budget
            if probe.spent(3 * TIMING_WINDOWS * (trial.ms_per_window or 0) / 1000):
                timers[(size, count)] = None
                continue
            engine = engine or build(probe.folder, trial.candidate, size, count)
            timers[(size, count)] = timer = Passes(engine.run, probe.shipped.vset, size, f"batch {size}/{count}")
            timer.one()
    for timer in timers.values():  # the second turn, in the same order, while the budget lasts
        if timer is not None and not probe.spent(TIMING_WINDOWS * timer.ms / 1000):
            timer.one()
    settings: list[Setting] = []
    fastest: Setting | None = None
    for (size, count), timer in timers.items():
        if timer is None:
            settings.append(Setting(size, count, None, f"not tried: the probe's {PROBE_BUDGET_S:g} s were spent"))
            continue
        settings.append(setting := Setting(size, count, timer.ms))
        probe.say(f"tuning: {trial.candidate.label} batch {size}, {count} threads: {timer.ms:.1f} ms/window")
        if fastest is None or replaces(timer.ms, fastest.ms_per_window or 0):
            fastest = setting
    return settings, fastest


def _setting_words(settings: list[Setting], chosen: Setting | None) -> str:
    if chosen is None:
        return "" if not settings else f"; batch {DEFAULT_BATCH} ({settings[0].note})"
    others = ", ".join(
        f"batch {s.batch} / {s.threads} threads {s.ms_per_window:.1f}"
        for s in settings
        if s is not chosen and s.ms_per_window is not None
    )
    return f"; at batch {chosen.batch}, {chosen.threads} threads: {chosen.ms_per_window:.1f} ms/window timed alone" + (
        f" ({others})" if others else ""
    )


def _baseline(candidate: Candidate) -> bool:
    """Whether ``candidate`` is the engine the chosen one's speed-up is said against: onnxruntime fp32."""
    return candidate.backend == "onnxruntime" and candidate.precision == "fp32"


def _words(trials: list[Trial], chosen: Trial) -> str:
    base = next((t for t in trials if _baseline(t.candidate) and t.ms_per_window), None)
    speed = ""
    if base is not None and chosen is not base and base.ms_per_window and chosen.ms_per_window:
        speed = f", {base.ms_per_window / chosen.ms_per_window:.2f}x faster than onnxruntime fp32 here"
    others = ", ".join(
        f"{t.candidate.label} {t.ms_per_window:.1f} ms{'' if t.usable else ' (fails the accuracy gate)'}"
        + (" (one pass)" if "one pass" in t.note else "")
        for t in trials
        if t is not chosen and t.ms_per_window
    )
    accuracy = chosen.accuracy.words() if chosen.accuracy else ""
    return f"tuned: {chosen.candidate.label} {chosen.ms_per_window:.1f} ms/window{speed}; {accuracy} on this CPU" + (
        f"; also measured: {others}" if others else ""
    )
