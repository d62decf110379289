"""The tuner's cache: one JSON file per (model files, machine, asked settings), in the user cache folder. The key
holds the model files' sha256, the CPU's model name and flags (and $CCSTEREO_CPU_FLAGS), the core count and the
versions of the libraries that run the model: a changed file, CPU or library measures again."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ccstereo.atomic import write_text
from ccstereo.runtime import verification
from ccstereo.runtime.backends.choose import Candidate
from ccstereo.runtime.cpu_features import overridden_flags, usable_cpus

CACHE_VERSION = 9  # 3: OpenVINO fp32 is spelled fp32 (was f32); 4: the kept setting's ms per window; 5: timed
# with one crop per window (as a run at the default hop computes), not the shipped windows' shared crops; 6: OpenVINO
# runs a batch as parts on two streams; 7: another setting than the default is kept only if 5 % faster (was 2 %);
# 8: OpenVINO runs the inverse STFT in its block form and int8 ReLUs before their quantisation
# (backends.openvino_graph), and candidates are timed by their engine calls alone, not by the accuracy check's whole
# time; 9: candidates and settings timed in turns (a choice a slow spell of the machine made is measured again)


# How long a tuner waits for another process measuring the same model on the same kind of machine before it measures
# too: several times a probe's budget (builds and compiles come on top of it; a slower machine takes longer).
LOCK_WAIT_S = 90.0
_LOCK_POLL_S = 0.1


@dataclass(frozen=True)
class Kept:
    """The setting kept for the chosen engine, and its time per window measured alone (None: not timed)."""

    batch: int
    threads: int | None
    ms_per_window: float | None = None


def cache_dir() -> Path:
    """Return the user cache folder: $CCSTEREO_CACHE_DIR, else $XDG_CACHE_HOME/ccstereo, else ~/.cache/ccstereo."""
    if os.environ.get("CCSTEREO_CACHE_DIR"):
        return Path(os.environ["CCSTEREO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccstereo"


def machine() -> dict[str, str]:
    """Return what a measurement depends on besides the model: CPU model and flags, library versions (read from
    the installed distributions: no engine is imported for it)."""
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
    return {
        "cpu": cpu,
        "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest(),
        "cores": str(len(usable_cpus())),  # the CPUs this process may use: a confined run times other figures
        "policy_flags": _overridden(),  # $CCSTEREO_CPU_FLAGS changes the candidates
        "onnxruntime": installed_version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
        "openvino": installed_version("openvino"),
        "numpy": installed_version("numpy"),
        "ccstereo": ccstereo.__version__,
    }


def installed_version(*distributions: str) -> str:
    """Return the installed version of the first of ``distributions`` found, or 'absent'.

    Read from the name of the distribution's ``NAME-VERSION.dist-info`` folder, searched along ``sys.path`` as
    ``importlib.metadata`` searches it (the first folder that holds one wins): ~0.1 ms, where importing
    ``importlib.metadata`` alone takes ~15 ms of every start. Anything else (an .egg-info, two candidates in one
    folder) is asked of ``importlib.metadata``."""
    for name in distributions:
        found = _dist_info_version(name)
        if found is None:
            found = _metadata_version(name)
        if found != "absent":
            return found
    return "absent"


def _dist_info_version(name: str) -> str | None:
    """The version in the name of ``name``'s one .dist-info folder in the first ``sys.path`` entry that has any
    metadata of it; 'absent' where no entry has; None where the folder names do not settle it."""
    import sys

    wanted = _normalised(name)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # missing folders, zip files
            continue
        mine = [(n, parts) for n in names if (parts := _name_and_version(n)) and _normalised(parts[0]) == wanted]
        if not mine:
            continue
        folder, (_, version) = mine[0]
        one = len(mine) == 1 and folder.endswith(".dist-info")
        return version if one and version and "-" not in version else None
    return "absent"


def _name_and_version(folder: str) -> tuple[str, str] | None:
    """(name, version) of a metadata folder (``Name-1.0.dist-info``, ``name.egg-info``: no version), else None."""
    for suffix in (".dist-info", ".egg-info"):
        if folder.endswith(suffix):
            name, _, version = folder[: -len(suffix)].partition("-")
            return name, version
    return None


def _normalised(name: str) -> str:
    """A distribution's name normalised as its metadata folders may spell it (PEP 503, with underscores)."""
    import re

    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def _overridden() -> str:
    forced = overridden_flags()
    return "as probed" if forced is None else " ".join(sorted(forced)) or "none"


def _sha256(path: Path) -> str:
    """Return the file's sha256, hashed once while its device, inode, size and times stay the same: per process,
    and across runs through a note in the user cache (the change time, which no user can set, is part of the
    key: a file written again is hashed again)."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, identity: tuple[int, ...]) -> str:
    note = cache_dir() / "hashes" / f"{hashlib.sha256(path.encode()).hexdigest()[:32]}.json"
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        known = json.loads(note.read_text())
        if known["path"] == path and tuple(known["identity"]) == identity and len(known["sha256"]) == 64:
            return str(known["sha256"])
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    with contextlib.suppress(OSError):  # WriteError included: an unwritable cache only hashes again next time
        note.parent.mkdir(parents=True, exist_ok=True)
        write_text(note, json.dumps({"path": path, "identity": list(identity), "sha256": digest.hexdigest()}))
    return digest.hexdigest()


def cache_key(folder: Path, found: list[Candidate], threads: int | None, batch: int | None) -> str:
    files = {name: _sha256(folder / name) for name in sorted({c.file for c in found} | {verification.FILE_NAME})}
    what = {"files": files, "machine": machine(), "threads": threads, "batch": batch, "v": CACHE_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def compiled_blob(graph: Path, precision: str, threads: int | None) -> Path:
    """Return where OpenVINO's compiled ``graph`` at ``precision`` and ``threads`` is kept on this machine: keyed
    like the tuner's choice (the file's sha256, the CPU and its flags, library versions), so a changed file, CPU or
    library compiles again."""
    # v 3: the graph is compiled with its inverse STFT in block form, an int8 graph's ReLUs ahead of their
    # quantisation (backends.openvino_graph)
    what = {"file": _sha256(graph), "precision": precision, "threads": threads, "machine": machine(), "v": 3}
    return (
        cache_dir() / "compiled" / f"{hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]}.blob"
    )


@contextlib.contextmanager
def measuring_alone(entry: Path, say: Callable[[str], None], wait_s: float = LOCK_WAIT_S) -> Iterator[bool]:
    """Hold the advisory lock beside cache ``entry`` while the block measures; yield whether another process held
    it first (its choice may be in the cache now).

    Several runs started at once on a machine with a cold cache (``parallel``, ``xargs -P``, Ray workers, an array
    job on nodes sharing a home folder) would otherwise all time the engines at the same time, each on cores the
    others keep busy: every figure distorted, the cached choice whichever finished last, the budget spent N times. With
    the lock one measures and the others wait for its choice. Where no lock can be had (no ``fcntl``, an unwritable
    cache folder) or the holder keeps it past ``wait_s``, the block runs without it. The lock file stays (removing it
    would let a third process lock a file the second no longer sees); the kernel releases the lock when its holder
    exits, however it exits."""
    try:
        import fcntl

        entry.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(entry.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield False
        return
    try:
        yield _lock(handle, fcntl, say, wait_s)
    finally:
        os.close(handle)  # releases the lock


def _lock(handle: int, fcntl, say: Callable[[str], None], wait_s: float) -> bool:
    """Take the lock on ``handle``; return whether someone else held it (waited for, or given up on after
    ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return told
        except BlockingIOError:
            pass
        except OSError:  # a file system without locks: measure unlocked
            return told
        if not told:
            say("tuning: another process is timing this model on this kind of machine; waiting for its choice")
            told = True
        if time.monotonic() > deadline:
            say(f"tuning: still busy after {wait_s:g} s; measuring here as well")
            return True
        time.sleep(_LOCK_POLL_S)


def read_cache(entry: Path, found: list[Candidate]) -> tuple[Candidate, Kept, str] | None:
    """Return (candidate, kept setting, words) from a cache entry, or None when absent, unreadable or not a
    candidate now."""
    try:
        data = json.loads(entry.read_text())
        chosen = Candidate(**data["chosen"])
        batch, threads, ms = int(data["batch"]), data["threads"], data["ms_per_window"]
        words = str(data["words"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    threads_ok = threads is None or (isinstance(threads, int) and threads > 0)
    ms_ok = ms is None or (isinstance(ms, (int, float)) and ms > 0)
    if chosen not in found or not 1 <= batch <= 4096 or not threads_ok or not ms_ok:
        return None
    return chosen, Kept(batch, threads, ms), words


def write_cache(entry: Path, chosen: Candidate, kept: Kept, words: str, trials: list[dict[str, Any]]) -> None:
    """Write the choice (and every trial, for people reading the cache) atomically; an unwritable cache folder only
    means measuring again next time."""
    data = {
        "chosen": asdict(chosen),
        "batch": kept.batch,
        "threads": kept.threads,
        "ms_per_window": kept.ms_per_window,
        "words": words,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trials": trials,
    }
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text(entry, json.dumps(_finite(data), indent=2, allow_nan=False))
    except OSError:  # WriteError included
        pass


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float written as its name ("inf": an engine equal to the shipped output to
    the sample): JSON has no infinity, and the cache is for people and their tools to read too."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
