"""Measured choice of the CPU engine (``--backend auto --precision auto`` without a GPU).

On first use of an exported folder on a machine, every usable candidate — onnxruntime fp32, and with OpenVINO
installed OpenVINO f32, bf16 (where the CPU has native BF16) and int8 (where the folder has ``model.int8.onnx``)
— runs the folder's verification windows (``runtime.verification``): that run is its accuracy check on THIS CPU
and, repeated, its timing. The fastest candidate that passes the auto gate (>= 35 dB vs the shipped fp32 output,
every paper metric within 2 %) is kept, and the choice is cached in the user cache folder under a key made of
the model files' sha256, the CPU's model name and flags, and the versions of the libraries that run it — so a
second run does not measure again, and a changed model file, CPU or library does. ``--tune`` measures again;
``--no-tune`` uses the flag rules of ``select``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ccstereo.runtime import verification
from ccstereo.runtime.backends.precision_policy import AUTO_MIN_SNR_DB, auto_may_pick
from ccstereo.runtime.backends.protocol import Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.model_info import read_onnx_info
from ccstereo.runtime.verification import CpuAccuracy, Shipped

PROBE_BUDGET_S = 15.0  # no candidate is started once the probe has taken this long
CACHE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    backend: str  # onnxruntime | openvino
    precision: str  # fp32 (onnxruntime) | f32 | bf16 | int8 (OpenVINO)
    file: str  # the graph it runs, in the exported folder

    @property
    def label(self) -> str:
        return f"{'OpenVINO' if self.backend == 'openvino' else 'onnxruntime'} {self.precision}"

    @property
    def reduced(self) -> bool:
        return self.precision in ("bf16", "int8")


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    ms_per_window: float | None
    accuracy: CpuAccuracy | None
    usable: bool
    note: str = ""


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
        "onnxruntime": onnxruntime.__version__,
        "openvino": ov_version,
        "numpy": numpy.__version__,
        "ccstereo": ccstereo.__version__,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def candidates(folder: Path) -> list[Candidate]:
    """Return the engines worth timing for ``folder`` on this machine, the fp32 baseline first."""
    from ccstereo.runtime.backends.openvino import openvino_bf16_capable

    found = [Candidate("onnxruntime", "fp32", "model.onnx")]
    try:
        import openvino  # noqa: F401
    except ImportError:
        return found
    if (folder / "model.int8.onnx").is_file():
        found.append(Candidate("openvino", "int8", "model.int8.onnx"))
    if openvino_bf16_capable():
        found.append(Candidate("openvino", "bf16", "model.onnx"))
    found.append(Candidate("openvino", "f32", "model.onnx"))
    return found


def cache_key(folder: Path, found: list[Candidate], threads: int | None, batch: int) -> str:
    files = {name: _sha256(folder / name) for name in sorted({c.file for c in found} | {verification.FILE_NAME})}
    what = {"files": files, "machine": machine(), "threads": threads, "batch": batch, "v": CACHE_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def build(folder: Path, candidate: Candidate, batch: int, threads: int | None) -> Backend:
    path = folder / candidate.file
    if candidate.backend == "onnxruntime":
        from ccstereo.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, "cpu", batch, threads)
    from ccstereo.runtime.backends.openvino import OpenVINOBackend

    return OpenVINOBackend(path, candidate.precision, batch, threads)


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
    backend: Backend
    reason: str
    trials: list[Trial]
    cached: bool


def tune(folder: Path, batch: int, threads: int | None, remeasure: bool, log=None) -> Tuned:
    """Return the fastest accurate CPU engine for ``folder`` here: from the cache, or measured now.

    Raises ModelMetadataError when the folder ships no usable verification file (nothing to measure with)."""
    shipped_path = folder / verification.FILE_NAME
    if not shipped_path.is_file():
        raise ModelMetadataError(f"{folder}: no {verification.FILE_NAME} (exported before measured selection)")
    found = candidates(folder)
    key = cache_key(folder, found, threads, batch)
    entry = cache_dir() / "tuning" / f"{key}.json"
    if not remeasure:
        cached = _read_cache(entry, found)
        if cached is not None:
            chosen, words = cached
            again = f"{words} (measured here before; --tune measures again)"
            return Tuned(build(folder, chosen, batch, threads), again, [], True)
    shipped = verification.load(shipped_path, read_onnx_info(folder / "model.onnx").config)
    trials, best = _probe(folder, found, shipped, batch, threads, log)
    words = _words(trials, best[0])
    _write_cache(entry, best[0].candidate, words, trials)
    return Tuned(best[1], words, trials, False)


def _probe(folder, found, shipped, batch, threads, log) -> tuple[list[Trial], tuple[Trial, Backend]]:
    started = time.perf_counter()
    trials: list[Trial] = []
    best: tuple[Trial, Backend] | None = None
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
        faster = best is None or (trial.ms_per_window or 0) < (best[0].ms_per_window or 0)
        if trial.usable and faster:
            best = (trial, backend)
        del backend
    if best is None:
        raise BackendUnavailableError(
            f"{folder}: no engine reproduces the shipped fp32 outputs on this CPU: "
            + "; ".join(f"{t.candidate.label}: {t.accuracy.words() if t.accuracy else t.note}" for t in trials)
        )
    return trials, best


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


def _read_cache(entry: Path, found: list[Candidate]) -> tuple[Candidate, str] | None:
    """Return (candidate, words) from a cache entry, or None when absent, unreadable or not a candidate now."""
    try:
        data = json.loads(entry.read_text())
        chosen = Candidate(**data["chosen"])
        words = str(data["words"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return (chosen, words) if chosen in found else None


def _write_cache(entry: Path, chosen: Candidate, words: str, trials: list[Trial]) -> None:
    """Write the choice atomically; an unwritable cache folder only means measuring again next time."""
    data = {
        "chosen": asdict(chosen),
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
        part = entry.with_name(f".{entry.name}.{os.getpid()}.part")
        part.write_text(json.dumps(data, indent=2))
        part.replace(entry)
    except OSError:
        pass
