"""OpenVINO's graph rewrites (``runtime/backends/openvino_graph.py``: the inverse STFT in 160-sample blocks, an
int8 graph's ReLUs ahead of their quantisation) against the graph as exported, side by side: the engine alone,
then ccs-run end to end.

    python benchmarks/graph_rewrites.py [--model DIR] [--seconds 60] [--rounds 5] [--precision auto] [--json F]

Engine alone: ``OpenVINOBackend`` as the runtime builds it (two streams, every precision this CPU and model offer),
compiled with and without the rewrites, timed in interleaved rounds on 32-window batches of the model's verification
windows (one crop per window, as a run at the default hop computes); median ms per window, and the SNR of the new
output against the old. End to end: ``ccs-run CLIP --model DIR`` as a user runs it (its own choice of engine), once
as shipped and once with the rewrites switched off in that process, each with a cache folder of its own (warmed by a
first run that is not counted), interleaved; median process wall, the report's engine ms per window in the run and
alone, and the SNR between the two forms' outputs (written as float wav by the warm-up runs; an AAC encoder's own
decisions would swamp the difference). Real footage as in ``startup.py`` (every real clip looped
to ``--seconds``). Default model: the bundled one.
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

import numpy as np

from ccstereo.runtime.verification import snr_db
from ccstereo.testing.bench import cpu_name

BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "default"
# ccs-run with the rewrites switched off: the same entry point, each rewrite replaced by one that rewrites nothing
_OLD = (
    "import sys; import ccstereo.runtime.backends.openvino as o; o.block_overlap_add = lambda model: 0; "
    "o.relu_before_quantize = lambda model: 0; "
    "from ccstereo.runtime.entry import ccs_run; sys.argv[0] = 'ccs-run'; sys.exit(ccs_run())"
)
FORMS = ("exported", "rewritten")


def engine_alone(model: Path, rounds: int) -> list[dict]:
    import ccstereo.runtime.backends.openvino as ovb
    from ccstereo.runtime.backends.choose import Candidate, build
    from ccstereo.runtime.cpu_features import native_bf16

    z = np.load(model / "verification.npz")
    frames = z["frames"][np.arange(32) % len(z["frames"])]
    mono = z["mono"][np.arange(32) % len(z["mono"])]
    index = np.arange(32, dtype=np.int64)
    wanted = [("model.onnx", "fp32")] + ([("model.onnx", "bf16")] if native_bf16() else [])
    wanted += [("model.int8.onnx", "int8")] if (model / "model.int8.onnx").is_file() else []
    rows = []
    for file, precision in wanted:
        backends = {}
        for form in FORMS:
            rewrites = ovb.block_overlap_add, ovb.relu_before_quantize
            if form == "exported":
                ovb.block_overlap_add = ovb.relu_before_quantize = lambda m: 0
            try:
                backends[form] = build(model, Candidate("openvino", precision, file), batch=32, keep=False)
            finally:
                ovb.block_overlap_add, ovb.relu_before_quantize = rewrites
        outputs = {form: b.run(frames, mono, index) for form, b in backends.items()}
        times: dict[str, list[float]] = {form: [] for form in backends}
        for _ in range(rounds):
            for form, backend in backends.items():
                started = time.perf_counter()
                backend.run(frames, mono, index)
                times[form].append((time.perf_counter() - started) / 32 * 1000)
        exported, rewritten = (float(np.median(times[f])) for f in FORMS)
        rows.append(
            {
                "engine": backends["rewritten"].name,
                "exported_ms": exported,
                "rewritten_ms": rewritten,
                "ratio": rewritten / exported,
                "snr_db": snr_db(outputs["rewritten"], outputs["exported"]),
            }
        )
    return rows


def one_run(form: str, model: Path, mp4: Path, work: Path, extra: list[str], suffix: str = ".mp4") -> dict:
    out, report = work / f"{form}{suffix}", work / f"{form}.json"
    args = [str(mp4), "-o", str(out), "--model", str(model), "--overwrite", "--quiet", "--report", str(report)]
    args += extra
    cmd = [str(Path(sys.executable).with_name("ccs-run"))] if form == "rewritten" else [sys.executable, "-c", _OLD]
    env = {**os.environ, "CCSTEREO_CACHE_DIR": str(work / f"cache-{form}")}
    started = time.perf_counter()
    done = subprocess.run(cmd + args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ccs-run ({form}) failed: {done.stderr.strip()[-500:]}")
    entry = json.loads(report.read_text())["files"][0]
    return {
        "process_s": wall,
        "engine": entry["engine"],
        "run_ms": entry["backend_ms_per_window"],
        "alone_ms": entry["backend_alone_ms_per_window"],
    }


def end_to_end(model: Path, mp4: Path, rounds: int, work: Path, extra: list[str]) -> dict:
    import soundfile

    for form in FORMS:  # tunes and compiles into its own cache; its float wav is the compared output
        one_run(form, model, mp4, work, extra, suffix=".wav")
    outputs = [soundfile.read(work / f"{form}.wav", dtype="float32")[0] for form in FORMS]
    runs: dict[str, list[dict]] = {form: [] for form in FORMS}
    for _ in range(rounds):
        for form in runs:
            runs[form].append(one_run(form, model, mp4, work, extra))
    result: dict = {"options": extra, "snr_db": snr_db(outputs[1], outputs[0])}
    for form, done in runs.items():
        result[form] = {
            "engine": done[-1]["engine"],
            "process_s": [r["process_s"] for r in done],
            "median_s": float(np.median([r["process_s"] for r in done])),
            "run_ms": float(np.median([r["run_ms"] for r in done])),
            "alone_ms": done[-1]["alone_ms"],
        }
    result["ratio"] = result["rewritten"]["median_s"] / result["exported"]["median_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=BUNDLED)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--precision", default="auto", help="ccs-run's --precision for both forms (auto: its own choice)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_name()}; model: {args.model}")
    alone = engine_alone(args.model, max(args.rounds * 4, 10))
    print("\n| engine (alone, batch 32) | exported ms/window | rewritten ms/window | ratio | SNR vs exported |")
    print("|---|---|---|---|---|")
    for r in alone:
        times = f"{r['exported_ms']:.2f} | {r['rewritten_ms']:.2f} | {r['ratio']:.3f}"
        print(f"| {r['engine']} | {times} | {r['snr_db']:.1f} dB |")
    from ccstereo.testing.real_media import long_real_clip, real_clips

    with tempfile.TemporaryDirectory(prefix="ccs-rewrites-") as tmp:
        work = Path(tmp)
        clip = real_clips(work / "real")[0][1] if args.seconds <= 10 else long_real_clip(work / "real", args.seconds)
        whole = end_to_end(args.model, clip, args.rounds, work, ["--precision", args.precision])
    print(f"\nccs-run --precision {args.precision}, {args.seconds:g} s of real footage, {args.rounds} rounds:")
    print("| form | engine | process s (each) | median s | engine ms/window in the run | alone (tuner) |")
    print("|---|---|---|---|---|---|")
    for form in FORMS:
        r = whole[form]
        each = " / ".join(f"{s:.2f}" for s in r["process_s"])
        alone = "-" if r["alone_ms"] is None else f"{r['alone_ms']:.2f}"  # not tuned: an engine was asked for
        print(f"| {form} | {r['engine']} | {each} | {r['median_s']:.2f} | {r['run_ms']:.2f} | {alone} |")
    print(f"rewritten / exported: {whole['ratio']:.3f}; SNR of the outputs (float wav): {whole['snr_db']:.1f} dB")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "alone": alone, "end_to_end": whole}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
