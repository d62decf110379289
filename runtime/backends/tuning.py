"""Measured choice of the CPU engine and its settings (``--backend auto --precision auto`` without a GPU).

On first use of an exported folder on a machine, every usable candidate — onnxruntime fp32, and with OpenVINO
installed OpenVINO fp32, bf16 (where the CPU has native BF16) and int8 (where the folder has ``model.int8.onnx``)
— runs the folder's verification windows (``runtime.verification``): that run is its accuracy check on THIS CPU
and, repeated, its timing. The fastest candidate that passes the auto gate (>= 35 dB vs the shipped fp32 output,
every paper metric within 2 %) is kept. Then, unless ``--batch-size`` / ``--threads`` were given, that engine is
timed at the batch sizes (windows per call) and thread counts worth trying here on windows of the same clip, each
batch with crops of its own as on real footage, and the fastest setting is kept. The choice is cached in the user
cache folder under a key made of the model files' sha256, the CPU's model name and flags, and the versions of the
libraries that run it — so a second run does not measure again, and a changed model file, CPU or library does.
``--tune`` measures again; ``--no-tune`` uses the flag rules of ``select``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ccstereo.atomic import write_text
from ccstereo.runtime import verification
from ccstereo.runtime.backends.choose import DEFAULT_BATCH, Candidate, Evidence, Known, build, choose, cpu_candidates
from ccstereo.runtime.backends.precision_policy import AUTO_MIN_SNR_DB, auto_may_pick
from ccstereo.runtime.backends.protocol import Backend
from ccstereo.runtime.cpu_features import overridden_flags
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.model_info import read_onnx_info
from ccstereo.runtime.verification import CpuAccuracy, Shipped

PROBE_BUDGET_S = 15.0  # no candidate or setting is started once the probe has taken this long
CACHE_VERSION = 3  # 3: OpenVINO fp32 is spelled fp32 (was f32)
BATCH_SIZES = (32, 16, 8)  # tried for the chosen engine when --batch-size is not given (the default first)
TIMING_WINDOWS = 32  # windows per timed pass of a setting (the largest batch size tried)
NOISE = 0.98  # a later setting replaces an earlier one (the default is first) only if this much faster


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    ms_per_window: float | None
    accuracy: CpuAccuracy | None
    usable: bool
    note: str = ""

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


def physical_cores() -> int:
    """Return the number of physical cores (CPUs sharing a core through SMT count once); os.cpu_count() if unknown."""
    siblings = set()
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology/thread_siblings_list"):
        try:
            siblings.add(path.read_text().strip())
        except OSError:
            continue
    return len(siblings) or os.cpu_count() or 1


def thread_counts() -> list[int]:
    """Return the thread counts worth timing: every logical CPU, and one per physical core where they differ."""
    logical = os.cpu_count() or 1
    return sorted({logical, min(logical, physical_cores())}, reverse=True)


def timing_batches(vset, batch: int, count: int = TIMING_WINDOWS) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return ``count`` windows of ``vset`` (repeated as needed) cut into calls of ``batch`` windows, each call with
    only the crops its windows use, and repeated windows with copies of their crops: every call computes as many
    crops as the runtime's batches do on footage whose every window has a new picture."""
    copies = -(-count // len(vset.mono))
    crops = np.concatenate([vset.crops_u8] * copies)
    index = np.concatenate([vset.frame_index + i * len(vset.crops_u8) for i in range(copies)])[:count]
    mono = np.concatenate([vset.mono] * copies)[:count]
    calls = []
    for lo in range(0, count, batch):
        used = np.unique(index[lo : lo + batch])
        calls.append((crops[used], mono[lo : lo + batch], np.searchsorted(used, index[lo : lo + batch])))
    return calls


def cache_dir() -> Path:
    """Return the user cache folder: $CCSTEREO_CACHE_DIR, else $XDG_CACHE_HOME/ccstereo, else ~/.cache/ccstereo."""
    if os.environ.get("CCSTEREO_CACHE_DIR"):
        return Path(os.environ["CCSTEREO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccstereo"


def machine() -> dict[str, str]:
    """Return what a measurement depends on besides the model: CPU model and flags, library versions."""
    import numpy
    import onnxruntime

    import ccstereo

    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.machine(), platform.processor()):
                cpu = value.strip()
            if key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    try:
        import openvino

        ov_version = openvino.__version__
    except ImportError:
        ov_version = "absent"
    return {
        "cpu": cpu,
        "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest(),
        "cores": str(os.cpu_count()),
        "policy_flags": _overridden(),  # $CCSTEREO_CPU_FLAGS changes the candidates
        "onnxruntime": onnxruntime.__version__,
        "openvino": ov_version,
        "numpy": numpy.__version__,
        "ccstereo": ccstereo.__version__,
    }


def _overridden() -> str:
    forced = overridden_flags()
    return "as probed" if forced is None else " ".join(sorted(forced)) or "none"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(folder: Path, found: list[Candidate], threads: int | None, batch: int | None) -> str:
    files = {name: _sha256(folder / name) for name in sorted({c.file for c in found} | {verification.FILE_NAME})}
    what = {"files": files, "machine": machine(), "threads": threads, "batch": batch, "v": CACHE_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def measure(backend: Backend, candidate: Candidate, shipped: Shipped) -> Trial:
    """Check ``backend`` against the shipped fp32 outputs and time it on the same windows (best of two)."""
    vset = shipped.vset
    backend.run(vset.crops_u8, vset.mono[:2], vset.frame_index[:2])  # first-call allocations, not timed
    t0 = time.perf_counter()
    accuracy, _ = verification.check(backend.run, shipped, backend.max_batch)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    verification.check(backend.run, shipped, backend.max_batch)
    ms = 1000 * min(first, time.perf_counter() - t0) / len(vset.mono)
    if candidate.reduced:
        usable = auto_may_pick(accuracy.snr_db, accuracy.worst_metric_change)
    else:
        usable = accuracy.snr_db >= AUTO_MIN_SNR_DB  # an fp32 engine that does not reproduce fp32 is broken
    return Trial(candidate, ms, accuracy, usable)


@dataclass
class Tuned:
    """The measured choice: what to build (``choose.build``), and the evidence behind it. Nothing built here
    leaves the tuner: the run's engine is built once from this."""

    candidate: Candidate
    batch: int
    threads: int | None
    reason: str
    trials: list[Trial]
    cached: bool
    settings: list[Setting] = field(default_factory=list)


def tune(folder: Path, batch: int | None, threads: int | None, remeasure: bool, log=None) -> Tuned:
    """Return the fastest accurate CPU engine for ``folder`` here, at its fastest batch size and thread count
    (``batch`` / ``threads`` None: measured; given: kept): from the cache, or measured now.

    Raises ModelMetadataError when the folder ships no usable verification file (nothing to measure with)."""
    shipped_path = folder / verification.FILE_NAME
    if not shipped_path.is_file():
        raise ModelMetadataError(f"{folder}: no {verification.FILE_NAME} (exported before measured selection)")
    found = cpu_candidates(folder)
    key = cache_key(folder, found, threads, batch)
    entry = cache_dir() / "tuning" / f"{key}.json"
    if not remeasure:
        cached = _read_cache(entry, found)
        if cached is not None:
            chosen, size, count, words = cached
            return Tuned(chosen, size, count, f"{words} (measured here before; --tune measures again)", [], True)
    started = time.perf_counter()
    shipped = verification.load(shipped_path, read_onnx_info(folder / "model.onnx").config)
    trials, best = _probe(folder, found, shipped, batch or DEFAULT_BATCH, threads, log, started)
    settings, picked = _settings(folder, best, shipped, batch, threads, started, log)
    words = _words(trials, best[0]) + _setting_words(settings, picked)
    kept = (picked.batch, picked.threads) if picked else (batch or DEFAULT_BATCH, threads)
    _write_cache(entry, best[0].candidate, kept, words, trials)
    return Tuned(best[0].candidate, kept[0], kept[1], words, trials, False, settings)


def _probe(folder, found, shipped, batch, threads, log, started) -> tuple[list[Trial], tuple[Trial, Backend]]:
    """Measure every candidate (while the budget lasts); return the trials and the one ``choose`` takes, with the
    engine that was timed for it (for timing its settings)."""
    trials: list[Trial] = []
    engines: dict[Candidate, Backend] = {}
    for candidate in found:
        if time.perf_counter() - started > PROBE_BUDGET_S:
            spent = f"not tried: the probe's {PROBE_BUDGET_S:g} s were spent"
            trials.append(Trial(candidate, None, None, False, spent))
            continue
        try:
            backend = build(folder, candidate, batch, threads)
            trial = measure(backend, candidate, shipped)
        except (BackendUnavailableError, ModelMetadataError) as exc:
            trials.append(Trial(candidate, None, None, False, str(exc)))
            continue
        trials.append(trial)
        if log is not None and trial.accuracy is not None:
            log(f"tuning: {candidate.label}: {trial.ms_per_window:.1f} ms/window, {trial.accuracy.words()}")
        if trial.usable:
            engines[candidate] = backend
        del backend
    if not engines:
        raise BackendUnavailableError(
            f"{folder}: no engine reproduces the shipped fp32 outputs on this CPU: "
            + "; ".join(f"{t.candidate.label}: {t.accuracy.words() if t.accuracy else t.note}" for t in trials)
        )
    choice = choose(("auto", "auto"), found, Known({t.candidate: t.evidence() for t in trials}), None, folder)
    trial = next(t for t in trials if t.candidate == choice.candidate)
    return trials, (trial, engines[choice.candidate])


def time_setting(run: Callable, vset, batch: int, passes: int = 2) -> float:
    """Return the best of ``passes`` timings, in ms per window, of ``run`` on ``timing_batches(vset, batch)``."""
    calls = timing_batches(vset, batch)
    run(*calls[0])  # first-call allocations at this shape, not timed
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        for call in calls:
            run(*call)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / TIMING_WINDOWS


def _settings(folder, best, shipped, batch, threads, started, log) -> tuple[list[Setting], Setting | None]:
    """Time the chosen engine at every batch size and thread count not given; return (what was timed, the
    fastest; None when nothing was to be chosen). Engines are timed, never changed."""
    sizes, counts = [batch] if batch else list(BATCH_SIZES), [threads] if threads else thread_counts()
    trial, backend = best
    if len(sizes) * len(counts) == 1:
        return [], None
    settings: list[Setting] = []
    fastest: Setting | None = None
    for count in counts:
        engine = backend if count == counts[0] else None
        for size in sizes:  # started only if its expected time (3 passes at the probe's rate) fits the budget
            expected = 3 * TIMING_WINDOWS * (trial.ms_per_window or 0) / 1000
            if time.perf_counter() - started + expected > PROBE_BUDGET_S:
                settings.append(Setting(size, count, None, f"not tried: the probe's {PROBE_BUDGET_S:g} s were spent"))
                continue
            engine = engine or build(folder, trial.candidate, size, count)
            ms = time_setting(engine.run, shipped.vset, size)
            setting = Setting(size, count, ms)
            settings.append(setting)
            if log is not None:
                log(f"tuning: {trial.candidate.label} batch {size}, {count} threads: {ms:.1f} ms/window")
            if fastest is None or ms < NOISE * (fastest.ms_per_window or 0):
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


def _words(trials: list[Trial], chosen: Trial) -> str:
    base = next((t for t in trials if t.candidate.precision == "fp32" and t.ms_per_window), None)
    speed = ""
    if base is not None and chosen is not base and base.ms_per_window and chosen.ms_per_window:
        speed = f", {base.ms_per_window / chosen.ms_per_window:.2f}x faster than onnxruntime fp32 here"
    others = ", ".join(
        f"{t.candidate.label} {t.ms_per_window:.1f} ms{'' if t.usable else ' (fails the accuracy gate)'}"
        for t in trials
        if t is not chosen and t.ms_per_window
    )
    accuracy = chosen.accuracy.words() if chosen.accuracy else ""
    return f"tuned: {chosen.candidate.label} {chosen.ms_per_window:.1f} ms/window{speed}; {accuracy} on this CPU" + (
        f"; also measured: {others}" if others else ""
    )


def _read_cache(entry: Path, found: list[Candidate]) -> tuple[Candidate, int, int | None, str] | None:
    """Return (candidate, batch, threads, words) from a cache entry, or None when absent, unreadable or not a
    candidate now."""
    try:
        data = json.loads(entry.read_text())
        chosen = Candidate(**data["chosen"])
        batch, threads = int(data["batch"]), data["threads"]
        words = str(data["words"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    threads_ok = threads is None or (isinstance(threads, int) and threads > 0)
    if chosen not in found or not 1 <= batch <= 4096 or not threads_ok:
        return None
    return chosen, batch, threads, words


def _write_cache(entry: Path, chosen: Candidate, kept: tuple[int, int | None], words: str, trials: list[Trial]) -> None:
    """Write the choice atomically; an unwritable cache folder only means measuring again next time."""
    data = {
        "chosen": asdict(chosen),
        "batch": kept[0],
        "threads": kept[1],
        "words": words,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trials": [
            {**asdict(t.candidate), "ms_per_window": t.ms_per_window, "usable": t.usable, "note": t.note}
            | ({} if t.accuracy is None else asdict(t.accuracy))
            for t in trials
        ],
    }
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text(entry, json.dumps(data, indent=2))
    except OSError:  # WriteError included
        pass
