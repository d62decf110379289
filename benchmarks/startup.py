"""ccs-run as a user starts it: the whole process, start-up included, on real footage.

    python benchmarks/startup.py [--seconds 10 60] [--runs 3] [--model DIR] [--workdir DIR] [--json out.json]

For each length, ``ccs-run CLIP -o OUT --report R`` runs ``--runs`` + 1 times, one after another, with one fresh
cache folder: the first run tunes and compiles (cold), the others find everything cached (warm). Printed per run:
the process wall (start to exit, measured here), the file wall (the report's), their ratio, the seconds from
process start to the first engine call (the report's ``first_backend_call_s``), and for the warm runs the bound
of the performance issue: 1.25 x (the engine's time alone for the run's windows, the tuner's ms/window) + 0.5 s.
Real footage: the interview clip for 10 s, every real clip looped for longer (``ccstereo.testing.real_media``).
Without ``--model`` the model is the official architecture at full size with seeded random weights. The runs keep
Python's bytecode cache as an installed package does (PYTHONDONTWRITEBYTECODE is dropped for them; the cold run
writes what is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ccstereo.testing.bench import cpu_name, work_and_model


def clip(work: Path, seconds: float) -> Path:
    from ccstereo.testing.real_media import long_real_clip, real_clips

    if seconds <= 10.0:
        return real_clips(work / "real")[0][1]
    return long_real_clip(work / "real", seconds)


def one_run(model: Path, mp4: Path, work: Path, cache: Path) -> dict:
    report = work / "report.json"
    cmd = [str(Path(sys.executable).with_name("ccs-run")), str(mp4), "-o", str(work / "out.mp4")]
    cmd += ["--model", str(model), "--overwrite", "--quiet", "--report", str(report)]
    # As an installed package runs: with its modules' bytecode cached (pip compiles it at install; an editable
    # install writes it on first import). PYTHONDONTWRITEBYTECODE, set on some machines (this project's CI machine
    # among them), made every start compile ~50 of our modules again: ~0.07 s of the first engine call.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"CCSTEREO_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ccs-run failed: {done.stderr.strip()[-500:]}")
    entry = json.loads(report.read_text())["files"][0]
    alone = entry.get("backend_alone_ms_per_window")
    bound = None if alone is None else 1.25 * entry["windows"] * alone / 1000 + 0.5
    return {
        "process_s": wall,
        "file_s": entry["wall_s"],
        "first_call_s": entry["first_backend_call_s"],
        "windows": entry["windows"],
        "engine": entry["engine"],
        "alone_ms_per_window": alone,
        "bound_s": bound,
        "cpu_s": entry["times"]["cpu_s"],
    }


def table(seconds: float, runs: list[dict]) -> str:
    lines = [
        f"{seconds:g} s of real footage, ccs-run default ({runs[-1]['engine']}), on {cpu_name()}",
        "",
        "| run | process s | file s | process / file | first engine call s | 1.25 x alone + 0.5 s | process / bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs):
        bound = r["bound_s"]
        versus = "-" if bound is None or i == 0 else f"{r['process_s'] / bound:.2f}"
        lines.append(
            f"| {'cold' if i == 0 else f'warm {i}'} | {r['process_s']:.2f} | {r['file_s']:.2f} | "
            f"{r['process_s'] / r['file_s']:.2f} | {r['first_call_s']:.3f} | "
            f"{'-' if bound is None else f'{bound:.2f}'} | {versus} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work, model = work_and_model(args.workdir, args.model, "ccs-startup-")
    results = {}
    for seconds in args.seconds:
        mp4 = clip(work, seconds)
        cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
        runs = [one_run(model, mp4, work, cache) for _ in range(args.runs + 1)]
        results[f"{seconds:g}"] = runs
        print(table(seconds, runs) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
