"""A seeded mutation fuzzer for ccs-run: valid mp4/mkv/mov/wav seeds made by ffmpeg, mutated bytes, the real CLI.

Every case must end in a valid output (exit 0, a decodable stereo file) or a clean one-line error that names
the file (exit 1), with no traceback, nothing partial left behind and within a time bound. Cases run many to
one ``ccs-run`` process (the CLI already isolates files from each other); a batch that crashes, hangs or prints
a traceback is re-run one case per process to pin the culprit, which is saved as a reproducer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccstereo.runtime.jobs import read_report
from ccstereo.testing.hostile import AAC, X264, ffmpeg, tone_src, video_src

# Outcomes; the first two are correct behaviour, every other one is a defect.
OK, CLEAN_ERROR = "ok", "clean-error"
DEFECTS = ("internal-error", "traceback", "crash", "hang", "leftover", "bad-output", "bad-exit")
CASE_TIMEOUT_S = 60.0


def make_seeds(folder: Path) -> list[Path]:
    """Write the valid seed files (short, small: the fuzzer's cost is the model's cost per case)."""
    folder.mkdir(parents=True, exist_ok=True)
    v, a = video_src(1.0, "160x96", 10), tone_src(1.0, 44100)
    specs = {
        "seed.mp4": (*v, *a, *X264, *AAC, "-movflags", "+faststart"),
        "seed.mkv": (*v, *a, "-c:v", "ffv1", "-c:a", "flac"),
        "seed.mov": (*v, *tone_src(1.0, 16000), "-c:v", "mjpeg", "-c:a", "pcm_s16le"),
        "seed.wav": (*a, "-c:a", "pcm_s16le"),
    }
    paths = []
    for name, args in specs.items():
        path = folder / name
        if not path.exists():
            ffmpeg(*args, str(path))
        paths.append(path)
    return paths


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Return ``data`` with 1-3 random mutations and a description of them."""
    buf = bytearray(data)
    steps = []
    for _ in range(int(rng.integers(1, 4))):
        n = len(buf)
        if n < 2:
            break
        kind = str(rng.choice(["truncate", "flip", "header", "run", "insert", "delete", "duplicate"]))
        at = int(rng.integers(0, n))
        size = int(rng.integers(1, min(512, n) + 1))
        if kind == "truncate":
            del buf[at:]
        elif kind == "flip":  # a few random bytes anywhere
            for pos in rng.integers(0, n, int(rng.integers(1, 17))):
                buf[int(pos)] = int(rng.integers(0, 256))
        elif kind == "header":  # random bytes in the first KiB, where the container describes its streams
            for pos in rng.integers(0, min(n, 1024), int(rng.integers(1, 9))):
                buf[int(pos)] = int(rng.integers(0, 256))
        elif kind == "run":
            buf[at : at + size] = bytes([int(rng.choice([0x00, 0xFF]))]) * len(buf[at : at + size])
        elif kind == "insert":
            buf[at:at] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        elif kind == "delete":
            del buf[at : at + size]
        else:
            buf[at:at] = bytes(buf[at : at + size])
        steps.append(f"{kind}@{at}" + ("" if kind in ("truncate", "flip", "header") else f"+{size}"))
    return bytes(buf), ", ".join(steps)


@dataclass
class CaseResult:
    name: str
    seed_file: str
    mutation: str
    outcome: str
    seconds: float
    detail: str = ""


@dataclass
class FuzzReport:
    results: list[CaseResult] = field(default_factory=list)

    def table(self) -> Counter:
        return Counter(r.outcome for r in self.results)

    def defects(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome in DEFECTS]

    def slowest(self) -> CaseResult | None:
        return max(self.results, key=lambda r: r.seconds, default=None)


def _output_ok(path: Path) -> str:
    """Return '' when ``path`` is a decodable stereo output with some audio, else what is wrong."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return "no audio stream in the output"
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            if stream.codec_context.channels != 2 or samples == 0:
                return f"output has {stream.codec_context.channels} channels, {samples} samples"
    except Exception as exc:  # noqa: BLE001 - any failure to read back is the finding
        return f"output unreadable: {exc}"
    return ""


def _ccs_run(files: list[Path], out_dir: Path, model: Path | None, timeout_s: float) -> tuple[int | None, str, list]:
    report = out_dir / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "ccstereo.runtime.cli",
        *map(str, files),
        "-o",
        str(out_dir),
        "--quiet",
        "--report",
        str(report),
        "--overwrite",
    ]
    if model is not None:
        cmd += ["--model", str(model)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, err, []
    entries = read_report(report) if report.is_file() else []
    return done.returncode, done.stderr, entries


def _partials(*folders: Path) -> list[str]:
    return sorted(p.name for f in folders if f.is_dir() for p in f.iterdir() if ".partial-" in p.name)


def run_cases(
    cases: list[tuple[str, Path, str, str]], work: Path, model: Path | None = None, batch: int = 25, jobs: int = 1
) -> FuzzReport:
    """Run (name, input, seed file, mutation) cases through ccs-run, ``jobs`` processes at a time; return every
    outcome in the order of ``cases``."""
    from concurrent.futures import ThreadPoolExecutor

    groups = [cases[i : i + batch] for i in range(0, len(cases), batch)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = pool.map(lambda k: _run_group(groups[k], work / f"out{k}", model, single=False), range(len(groups)))
        return FuzzReport([result for results in done for result in results])


def _run_group(group, out_dir: Path, model: Path | None, single: bool) -> list[CaseResult]:
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _judge_group(group, out_dir, model, single)
    finally:
        for made in out_dir.iterdir():
            made.unlink()
        out_dir.rmdir()


def _judge_group(group, out_dir: Path, model: Path | None, single: bool) -> list[CaseResult]:
    files = [path for _, path, _, _ in group]
    t0 = time.perf_counter()
    code, stderr, entries = _ccs_run(files, out_dir, model, CASE_TIMEOUT_S * (1 if single else 0.2 * len(group) + 1))
    wall = time.perf_counter() - t0
    broken = code is None or code not in (0, 1) or "Traceback" in stderr or len(entries) != len(group)
    if broken and not single:  # pin the culprit: one process per case
        return [r for case in group for r in _run_group([case], out_dir / case[0], model, single=True)]
    if code is None:
        name, path, seed, mutation = group[0]
        return [CaseResult(name, seed, mutation, "hang", wall, f"no exit within {CASE_TIMEOUT_S:.0f} s")]
    if broken:
        name, path, seed, mutation = group[0]
        outcome = "traceback" if "Traceback" in stderr else "crash"
        return [CaseResult(name, seed, mutation, outcome, wall, stderr.strip()[-800:])]
    leftovers = _partials(out_dir, *{f.parent for f in files})
    results = []
    for (name, path, seed, mutation), entry in zip(group, entries, strict=True):
        outcome, detail = _judge(path, entry, stderr, code, single)
        results.append(CaseResult(name, seed, mutation, outcome, float(entry.get("wall_s", 0.0)), detail))
    if leftovers:
        for r in results:
            r.outcome, r.detail = "leftover", f"partial files left: {leftovers}"
    return results


def _judge(path: Path, entry: dict, stderr: str, code: int, single: bool) -> tuple[str, str]:
    if entry.get("status") in ("ok", "skipped"):
        if single and code != 0:
            return "bad-exit", f"exit {code} for a file that succeeded"
        problem = _output_ok(Path(entry["output"]))
        return ("bad-output", problem) if problem else (OK, "")
    if single and code != 1:
        return "bad-exit", f"exit {code} for a failed file (expected 1)"
    lines = [line for line in stderr.splitlines() if line.startswith("error: ") and str(path) in line]
    if len(lines) != 1:
        return "bad-exit", f"{len(lines)} error lines name the file"
    if entry.get("internal"):
        return "internal-error", entry.get("error", "")
    return CLEAN_ERROR, entry.get("error", "")


def generate(
    seeds: list[Path], n: int, seed: int, folder: Path, first_index: int = 0
) -> list[tuple[str, Path, str, str]]:
    """Write ``n`` mutated files (round robin over the seeds) and return the cases."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    originals = [(s, s.read_bytes()) for s in seeds]
    cases = []
    for k in range(n):
        source, data = originals[k % len(originals)]
        mutated, how = mutate(data, rng)
        path = folder / f"case{first_index + k:06d}{source.suffix}"
        path.write_bytes(mutated)
        cases.append((path.stem, path, source.name, how))
    return cases
