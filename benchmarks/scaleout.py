"""What Ray costs on one machine: single-process ccs-run vs ccs-run --ray with 1 and 2 workers, same files.

    python benchmarks/scaleout.py [--clips 20] [--seconds 10] [--model DIR] [--workdir DIR] [--json out.json]

The clips are cut from ccs-synth scenes (different content each). Rows, one after the other in one run:
single-process ``ccs-run`` (every core), ``--ray-address`` of a Ray cluster started here beforehand
(``ray start --head --node-ip-address=127.0.0.1 --num-cpus=N``, as a cluster is used) with 1 worker of all cores and
with 2 workers of half the cores each, and ``--ray`` alone (Ray started and stopped by the run itself, 1 worker).
Outputs are model-band wav; each row writes into its own folder. Overhead = row wall time / single-process wall
time - 1. Two cores cap any speed-up here: the point is overhead and that the outputs are the same.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Ray >= 2.59 starts clusters with token authentication: the nodes and the drivers share this run's token
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    head = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cores}"]
    subprocess.run(
        [*head, "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env, capture_output=True
    )
    address = f"127.0.0.1:{port}"
    rows = {}
    try:
        plan = {
            "single process (ccs-run)": ["--threads", str(cores)],
            "--ray-address, 1 worker": ["--ray-address", address, "--workers", "1", "--cpus-per-worker", str(cores)],
            "--ray-address, 2 workers": [
                "--ray-address",
                address,
                "--workers",
                "2",
                "--cpus-per-worker",
                str(cores / 2),
            ],
        }
        for i, (name, extra) in enumerate(plan.items()):
            folder = _fresh(work / f"out{i}")
            rows[name] = timed([*base, "-o", str(folder), *extra], env)
            print(f"{name}: {rows[name]:.1f} s", file=sys.stderr)
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)
    folder = _fresh(work / "out3")
    name = "--ray (Ray started by the run), 1 worker"
    rows[name] = timed([*base, "-o", str(folder), "--ray", "--workers", "1", "--cpus-per-worker", str(cores)], env)
    print(f"{name}: {rows[name]:.1f} s", file=sys.stderr)
    diffs = [
        float(np.max(np.abs(sf.read(work / "out0" / p.name)[0] - sf.read(work / f"out{i}" / p.name)[0])))
        for i in (1, 2, 3)
        for p in (work / "out0").glob("*.wav")
    ]
    same = max(diffs) == 0.0
    single = rows["single process (ccs-run)"]
    media_h = len(inputs) * args.seconds / 3600
    print(f"\n{len(inputs)} clips of {args.seconds:g} s, {cores} cores, one run\n")
    print("| run | wall s | vs single process | media hours per wall hour |")
    print("|---|---|---|---|")
    for name, wall in rows.items():
        print(f"| {name} | {wall:.1f} | {wall / single - 1:+.1%} | {media_h / (wall / 3600):.1f} |")
    print(
        f"\noutputs of every row equal to the single process's, sample for sample: {same} (max diff {max(diffs):.3g})"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "same_outputs": same, "cores": cores}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
