"""Live latency: an ffmpeg-made stream with a click every second goes into ``ccs-run - --live -o - --format wav``
at real time (``ffmpeg -re``); each click's delay is the wall time it came out of ccs-run's standard output minus
the wall time it went in. Also: ccs-run's RSS (second minute vs last minute) and the degradations it reported.

    python benchmarks/live_latency.py [--minutes 5] [--hogs 1] [--cpus 0] [--json out.json] [-- CCS-RUN OPTIONS]

``--hogs N``: N other processes keep a core busy each for the whole run (a throttled machine). ``--cpus 0``:
ccs-run and the hogs are confined to those CPUs (``sched_setaffinity``; the producer and the consumer are not), so
``--cpus 0 --hogs 1`` leaves ccs-run half of one core: a machine that cannot keep up, for real. The figures are
this machine's: the CPU is printed with them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ccstereo.atomic import write_text
from ccstereo.testing.bench import cpu_name
from ccstereo.testing.live import click_source, confine, rss_drift, run_live

HOG = "while True: pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--hogs", type=int, default=0, help="busy processes beside ccs-run (one core each)")
    parser.add_argument("--cpus", help="confine ccs-run and the hogs to these CPUs, e.g. 0 or 0,1")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ccstereo-live")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("ccs_args", nargs="*", help="more ccs-run options (after --)")
    args = parser.parse_args()
    seconds = args.minutes * 60
    args.work.mkdir(parents=True, exist_ok=True)
    source = args.work / f"clicks-{seconds:.0f}s.mkv"
    if not source.is_file():
        click_source(source, seconds)
    cpus = {int(c) for c in args.cpus.split(",")} if args.cpus else None
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], preexec_fn=confine(cpus)) for _ in range(args.hogs)]
    try:
        started = time.perf_counter()
        run = run_live(source, args.ccs_args, seconds, cpus)
    finally:
        for hog in hogs:
            hog.kill()
    figures = {
        "cpu": cpu_name(),
        "stream_s": seconds,
        "hogs": args.hogs,
        "cpus": sorted(cpus) if cpus else "all",
        "ccs_args": args.ccs_args,
        **run.summary(),
        "rss": rss_drift(run.rss_mb),
        "exit": run.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "ccs_stderr": run.stderr.strip().splitlines()[-6:],
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        write_text(args.json, json.dumps(figures, indent=1))
    return 0 if run.returncode == 0 and not run.missing else 1


if __name__ == "__main__":
    sys.exit(main())
