"""Batch sizes: what the tuner measures alone, the same beside media work, and what a real run takes at each.

    python benchmarks/batch_sizes.py [--tunes 3] [--rounds 3] [--seconds 60] [--model DIR] [--workdir DIR]
                                     [--json out.json]

The tuner times the chosen engine at every batch size alone and keeps the fastest (the default, 32, unless another
is 5 % faster: ``tuning.NOISE``). A run shares the CPUs with its media work. This script (1) tunes ``--tunes`` times
from an empty cache, then times that engine here at every batch size alone and beside a thread doing the official
loader's resize (Pillow, 640x360 -> 480x240) ``LOAD_DUTY`` of the time, and prints the batch each figure would pick
by the tuner's rule and the one the tuner kept; (2) runs
``ccs-run`` on real footage (every real clip looped to ``--seconds``, 640x360 H.264 with B-frames, real recordings)
with that engine forced at each batch size, in ``--rounds`` interleaved rounds, each a process of its own, and
prints the file wall and the engine's ms per window in the run. The outputs are compared: a window's result does not
depend on its batch, so every batch size must write the same file. Without ``--model`` the model is the official
architecture at full size with seeded random weights (exported, int8 calibrated on synthetic scenes).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ccstereo.testing.bench import cpu_name, work_and_model

LOAD_DUTY = 0.4  # media work beside the engine in a 60 s run of real footage on a 2-core Zen 4: 4.5 CPU-s in ~11 s


class ResizeLoad:
    """A thread resizing a 640x360 picture with Pillow (it lets go of the GIL) ``duty`` of its wall time."""

    def __init__(self, duty: float = LOAD_DUTY) -> None:
        self.duty, self.stop = duty, threading.Event()
        self.thread = threading.Thread(target=self.work, daemon=True)

    def work(self) -> None:
        from PIL import Image

        picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8))
        while not self.stop.is_set():
            t0 = time.perf_counter()
            picture.resize((480, 240))
            self.stop.wait((time.perf_counter() - t0) * (1.0 - self.duty) / self.duty)

    def __enter__(self) -> ResizeLoad:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.thread.join()


def tune_once(model: Path, cache: Path) -> dict:
    """One tuner measurement from an empty cache (the engine and the batch it keeps), then that engine timed here at
    every batch size alone and beside the resize load, as the tuner times (best of two passes each)."""
    os.environ["CCSTEREO_CACHE_DIR"] = str(cache)
    from ccstereo.runtime import verification
    from ccstereo.runtime.backends import tuning
    from ccstereo.runtime.backends.choose import build
    from ccstereo.runtime.backends.timing import BATCH_SIZES, time_setting
    from ccstereo.runtime.cpu_features import usable_cpus
    from ccstereo.runtime.model_info import read_onnx_info

    tuned = tuning.tune(model, None, None, remeasure=True)
    threads = tuned.kept.threads or len(usable_cpus())  # None: the probe's budget ran out before any setting
    shipped = verification.load(model / verification.FILE_NAME, read_onnx_info(model / "model.onnx").config)
    rows = []
    for batch in BATCH_SIZES:
        engine = build(model, tuned.candidate, batch, threads)
        alone = time_setting(engine.run, shipped.vset, batch)
        with ResizeLoad():
            beside = time_setting(engine.run, shipped.vset, batch)
        rows.append([batch, alone, beside])
        del engine
    return {
        "backend": tuned.candidate.backend,
        "precision": tuned.candidate.precision,
        "threads": threads,
        "kept_batch": tuned.batch,
        "settings": rows,
    }


def picked(settings: list, column: int) -> int:
    """The batch the tuner's rule (default first; a later one only if ``tuning.replaces``) picks by one column."""
    from ccstereo.runtime.backends.tuning import replaces

    best = None
    for row in settings:
        if best is None or replaces(row[column], best[column]):
            best = row
    assert best is not None
    return best[0]


def run_forced(model: Path, mp4: Path, work: Path, engine: dict, batch: int) -> dict:
    out, report = work / f"batch-{batch}.mp4", work / f"batch-{batch}.json"
    cmd = [str(Path(sys.executable).with_name("ccs-run")), str(mp4), "-o", str(out), "--model", str(model)]
    cmd += ["--backend", engine["backend"], "--precision", engine["precision"], "--batch-size", str(batch)]
    cmd += ["--overwrite", "--quiet", "--report", str(report)]
    if engine["threads"]:
        cmd += ["--threads", str(engine["threads"])]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CCSTEREO_CACHE_DIR": str(work)})
    if done.returncode != 0:
        raise RuntimeError(f"ccs-run failed: {done.stderr.strip()[-500:]}")
    entry = json.loads(report.read_text())["files"][0]
    return {"file_s": entry["wall_s"], "ms_per_window": entry["backend_ms_per_window"], "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tunes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from ccstereo.runtime.backends.timing import BATCH_SIZES
    from ccstereo.testing.real_media import long_real_clip

    work, model = work_and_model(args.workdir, args.model, "ccs-batch-sizes-")
    tunes = [tune_once(model, Path(tempfile.mkdtemp(prefix="cache-", dir=work))) for _ in range(args.tunes)]
    engine = tunes[0]
    print(f"CPU: {cpu_name()}; engine {engine['backend']} {engine['precision']}, {engine['threads']} threads")
    heads = " | ".join(f"batch {b}: alone / beside media (ms/window)" for b in BATCH_SIZES)
    print(f"\n| tune | {heads} | alone picks | beside media picks | the tuner kept |")
    print("|---" * (len(BATCH_SIZES) + 4) + "|")
    for i, t in enumerate(tunes, 1):
        cells = {row[0]: f"{row[1]:.2f} / {row[2]:.2f}" for row in t["settings"]}
        row = " | ".join(cells.get(b, "-") for b in BATCH_SIZES)
        print(f"| {i} | {row} | {picked(t['settings'], 1)} | {picked(t['settings'], 2)} | {t['kept_batch']} |")
    mp4 = long_real_clip(work / "real", args.seconds)
    runs: dict[int, list[dict]] = {b: [] for b in BATCH_SIZES}
    for _ in range(args.rounds):
        for b in BATCH_SIZES:
            runs[b].append(run_forced(model, mp4, work, engine, b))
    print(f"\n{args.seconds:g} s of real footage, each batch size forced, {args.rounds} interleaved rounds:\n")
    print("| batch | file wall s (each round) | median | engine ms/window in the run (median) |")
    print("|---|---|---|---|")
    for b in BATCH_SIZES:
        walls = [r["file_s"] for r in runs[b]]
        ms = statistics.median(r["ms_per_window"] for r in runs[b])
        print(f"| {b} | {', '.join(f'{w:.2f}' for w in walls)} | {statistics.median(walls):.2f} | {ms:.2f} |")
    first = runs[BATCH_SIZES[0]][-1]["out"]
    same = all(filecmp.cmp(first, runs[b][-1]["out"], shallow=False) for b in BATCH_SIZES)
    print(f"\noutputs of every batch size identical to the byte: {same}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "tunes": tunes, "runs": runs, "same": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
