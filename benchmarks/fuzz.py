"""Mutation fuzzing of ccs-run over valid mp4/mkv/mov/wav seeds made by ffmpeg (long runs; the suite runs a
CI-sized batch of the same fuzzer).

    python benchmarks/fuzz.py --cases 10000 --seed 1 [--work /tmp/fuzz] [--crashes fuzz-crashes] [--json out.json]

Prints the outcome table (ok / clean-error are correct; anything else is a defect), the slowest case and every
defect; each defect's input is copied to --crashes with a line of how it was made. Exit 1 if any defect.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from ccstereo.testing.bench import cpu_name
from ccstereo.testing.fuzz import DEFECTS, generate, make_seeds, run_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ccs-fuzz"))
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--chunk", type=int, default=500, help="cases written to disk at a time")
    parser.add_argument("--model", type=Path, default=None, help="model for ccs-run (default: bundled)")
    parser.add_argument("--jobs", type=int, default=2, help="ccs-run processes at a time")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    seeds = make_seeds(args.work / "seeds")
    started = time.perf_counter()
    results = []
    for first in range(0, args.cases, args.chunk):
        n = min(args.chunk, args.cases - first)
        folder = args.work / "cases"
        shutil.rmtree(folder, ignore_errors=True)
        cases = generate(seeds, n, args.seed * 1_000_003 + first, folder, first_index=first)
        report = run_cases(cases, args.work, args.model, jobs=args.jobs)
        for result in report.defects():
            _save_reproducer(args.crashes, folder, result)
        results += report.results
        done = first + n
        print(f"{done}/{args.cases} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - started
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in ("ok", "clean-error", *DEFECTS)}
    slowest = max(results, key=lambda r: r.seconds)
    print(f"cases: {len(results)}, seed {args.seed}, wall {wall:.0f} s, CPU: {cpu_name()}\n")
    print("| outcome | cases |\n|---|---|")
    for outcome, count in counts.items():
        print(f"| {outcome} | {count} |")
    print(
        f"\nslowest: {slowest.name} ({slowest.seed_file}; {slowest.mutation}) {slowest.seconds:.2f} s, "
        f"{slowest.outcome}"
    )
    defects = [r for r in results if r.outcome in DEFECTS]
    for r in defects:
        print(f"DEFECT {r.outcome}: {r.name} ({r.seed_file}; {r.mutation}): {r.detail[:300]}")
    errors: dict[str, int] = {}
    for r in results:
        if r.outcome == "clean-error":
            key = r.detail.split(": ", 1)[-1].split(" (")[0][:70]
            errors[key] = errors.get(key, 0) + 1
    print("\nmost common clean errors:")
    for key, count in sorted(errors.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {count:6d}  {key}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cases": len(results),
                    "seed": args.seed,
                    "wall_s": wall,
                    "counts": counts,
                    "defects": [r.__dict__ for r in defects],
                },
                indent=2,
            )
        )
    return 1 if defects else 0


def _save_reproducer(folder: Path, cases: Path, result) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in cases.glob(f"{result.name}.*"):
        shutil.copy(path, folder / path.name)
    with open(folder / "README.txt", "a") as notes:
        notes.write(f"{result.name}: {result.outcome}; from {result.seed_file} by {result.mutation}: {result.detail}\n")


if __name__ == "__main__":
    sys.exit(main())
