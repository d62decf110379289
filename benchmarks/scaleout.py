"""What Ray costs on one machine: single-process ccs-run vs ccs-run --ray with 1 and 2 workers, same files.

    python benchmarks/scaleout.py [--clips 20] [--seconds 10] [--model DIR] [--workdir DIR] [--json out.json]

The clips are cut from ccs-synth scenes (different content each). Rows, one after the other in one run:
single-process ``ccs-run`` (every core), ``--ray-address`` of a Ray cluster started here beforehand
(``ray start --head --node-ip-address=127.0.0.1 --num-cpus=N``, as a cluster is used) with 1 worker of all cores and
with 2 workers of half the cores each, and ``--ray`` alone (Ray started and stopped by the run itself, 1 worker).
Outputs are model-band wav; each row writes into its own folder. All rows run ``--rounds`` times, interleaved
(this host's timings move by 10 % between runs); overhead = the row's best wall time / the single process's best
- 1. Two cores cap any speed-up here: the point is overhead and that the outputs are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ccstereo.testing.bench import synthetic_mp4

RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
RAY = str(Path(sys.executable).with_name("ray"))


def clips(work: Path, count: int, seconds: float) -> list[Path]:
    """Return ``count`` different scenes under names of their own (ccs-synth names every clip 000001.mp4)."""
    out = []
    (work / "clips").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mp4, _ = synthetic_mp4(work / "scenes", seconds, seed=500 + i)
        named = work / "clips" / f"clip{i:02d}.mp4"
        if not named.is_file():
            shutil.copy(mp4, named)
        out.append(named)
    return out


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed: {result.stderr[-2000:]}")
    if result.stdout.strip():
        raise RuntimeError(f"something printed on stdout: {result.stdout[:500]}")
    return wall


def _cluster(cores: int, env: dict) -> tuple[str, list[str]]:
    """Start a one-node Ray on 127.0.0.1 as a cluster is used (``ray start --head``); return (address, stop)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cores}"]
    subprocess.run(
        [*head, "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env, capture_output=True
    )
    return f"127.0.0.1:{port}", [RAY, "stop", "--force"]


def one_round(base: list[str], work: Path, cores: int, env: dict, rows: dict[str, list[float]]) -> None:
    """Each row once, in order: single process; a running cluster with 1 and 2 workers; --ray (cluster stopped)."""

    def row(i: int, name: str, extra: list[str]) -> None:
        wall = timed([*base, "-o", str(_fresh(work / f"out{i}")), *extra], env)
        rows.setdefault(name, []).append(wall)
        print(f"{name}: {wall:.1f} s", file=sys.stderr)

    row(0, "single process (ccs-run)", ["--threads", str(cores)])
    address, stop = _cluster(cores, env)
    try:
        row(1, "--ray-address, 1 worker", ["--ray-address", address, "--workers", "1", "--cpus-per-worker", str(cores)])
        half = ["--workers", "2", "--cpus-per-worker", str(cores / 2)]
        row(2, "--ray-address, 2 workers", ["--ray-address", address, *half])
    finally:
        subprocess.run(stop, capture_output=True, env=env)
    row(3, "--ray (Ray started by the run), 1 worker", ["--ray", "--workers", "1", "--cpus-per-worker", str(cores)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all rows, interleaved; the best is kept")
    parser.add_argument("--model", type=Path, help="exported folder (default: the bundled model)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccs-scaleout-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = clips(work, args.clips, args.seconds)
    cores = os.cpu_count() or 1
    model = [] if args.model is None else ["--model", str(args.model)]
    engine = ["--backend", "onnxruntime", "--precision", "fp32", "--no-tune", "--format", "wav", "--model-band"]
    base = [*RUN, *map(str, inputs), *model, *engine, "-q", "--overwrite"]
    # Ray >= 2.59 starts clusters with token authentication: the nodes and the drivers share this run's token
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        one_round(base, work, cores, env, rows)
    diffs = [
        float(np.max(np.abs(sf.read(work / "out0" / p.name)[0] - sf.read(work / f"out{i}" / p.name)[0])))
        for i in (1, 2, 3)
        for p in (work / "out0").glob("*.wav")
    ]
    same = max(diffs) == 0.0
    single = min(rows["single process (ccs-run)"])
    media_h = len(inputs) * args.seconds / 3600
    print(
        f"\n{len(inputs)} clips of {args.seconds:g} s, {cores} cores, {args.rounds} interleaved round(s), best kept\n"
    )
    print("| run | best wall s | vs single process (best vs best) | every round (s) | media hours per wall hour |")
    print("|---|---|---|---|---|")
    for name, walls in rows.items():
        best, every = min(walls), ", ".join(f"{w:.1f}" for w in walls)
        print(f"| {name} | {best:.1f} | {best / single - 1:+.1%} | {every} | {media_h / (best / 3600):.1f} |")
    print(
        f"\noutputs of every row equal to the single process's, sample for sample: {same} (max diff {max(diffs):.3g})"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "same_outputs": same, "cores": cores}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
