"""A still-image video (one picture over real music, as podcasts and music uploads are) against the same video
with imperceptible per-frame noise, which defeats exact sharing of identical crops.

    python benchmarks/still_image.py [--seconds 60] [--checkpoint best_model.pth] [--workdir DIR] [--json out.json]

The videos: a frame of Big Buck Bunny (real footage, fetched from PyPI by ccstereo.testing.real_media) looped with
ffmpeg at 10 fps and encoded with x264 -tune stillimage, under ``--seconds`` of real recordings: losslessly
(-qp 0: every decoded frame is the same picture), at x264's default quality (as cover-art uploads are: x264 keeps
refining a static picture, so decoded frames differ by a few levels), and with ffmpeg's temporal noise
(``noise=alls=3:allf=t``, new every frame). Rows, each alone in its own process, full-size model, onnxruntime
fp32, mp4 in -> mp4 out; exact rows share identical crops (the default), adaptive rows reuse features at 2 grey
levels / 2 s. SNR is against the same video's exact row; the lossless still is also run with every crop computed,
whose output must be equal to the bit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ccstereo.testing.bench import benchmark_parser, export_once, full_size_checkpoint, run_isolated, snr_db
from ccstereo.testing.real_media import fetch, real_recording


def make_videos(work: Path, seconds: float) -> tuple[Path, Path, Path]:
    """Return (x264 lossless still, x264 default-quality still, x264 still with per-frame noise) videos."""
    media = fetch(work / "real")
    cover, music = work / "cover.png", work / f"music-{seconds:g}.wav"
    if not cover.is_file():
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "2", "-i", str(media / "bigbuckbunny.mp4")]
        subprocess.run([*cmd, "-frames:v", "1", str(cover)], check=True)
    if not music.is_file():
        real_recording(media, seconds, music)
    videos = []
    kinds = (
        ("lossless", "format=yuv420p", ["-qp", "0"]),
        ("still", "format=yuv420p", []),
        ("noisy", "noise=alls=3:allf=t,format=yuv420p", []),
    )
    for name, vf, quality in kinds:
        out = work / f"{name}-{seconds:g}.mp4"
        if not out.is_file():
            cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i", str(cover)]
            cmd += ["-i", str(music), "-map", "0:v", "-map", "1:a", "-vf", vf, "-c:v", "libx264", *quality]
            cmd += ["-tune", "stillimage", "-c:a", "aac", "-b:a", "192k", "-t", str(seconds), str(out)]
            subprocess.run(cmd, check=True)
        videos.append(out)
    return videos[0], videos[1], videos[2]


def child(model: Path, mp4: Path, out: Path, share: bool, adaptive: bool) -> dict:
    from ccstereo.runtime.binauralizer import Binauralizer, RunOptions

    engine = Binauralizer.load(model, backend="onnxruntime", precision="fp32")
    rate = dict(visual_rate="adaptive", visual_threshold=2.0, visual_max_stale_s=2.0) if adaptive else {}
    options = RunOptions(overwrite=True, share_identical_crops=share, **rate)
    report = engine.process(mp4, out, options)
    wav = out.with_suffix(".modelband.wav")
    engine.process(
        mp4, wav, RunOptions(overwrite=True, full_band=False, fmt="wav", share_identical_crops=share, **rate)
    )
    keys = ("wall_s", "windows", "crops_computed", "crops_shared", "crops_reused", "duration_s")
    times = {k: round(v, 2) for k, v in report.to_dict()["times"].items()}
    return {**{k: getattr(report, k) for k in keys}, "times": times, "wav": str(wav)}


def main() -> int:
    parser = benchmark_parser(__doc__, 60.0)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, mp4, out, share, adaptive = args.child
        print(json.dumps(child(Path(model), Path(mp4), Path(out), share == "1", adaptive == "1")))
        return 0
    import soundfile as sf

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccs-still-"))
    work.mkdir(parents=True, exist_ok=True)
    model = export_once(full_size_checkpoint(work, args.checkpoint), work / "export")
    lossless, still, noisy = make_videos(work, args.seconds)
    me = str(Path(__file__).resolve())
    plan = {
        "still, x264 lossless, exact (identical crops once)": (lossless, "1", "0"),
        "still, x264 lossless, every crop computed": (lossless, "0", "0"),
        "noisy, exact": (noisy, "1", "0"),
        "still, x264 default quality, exact": (still, "1", "0"),
        "still, x264 default quality, adaptive 2 levels / 2 s": (still, "1", "1"),
        "noisy, adaptive 2 levels / 2 s": (noisy, "1", "1"),
    }
    refs = {"still, x264 lossless": 0, "noisy": 2, "still, x264 default": 3}
    rows = {}
    for i, (name, (mp4, share, adaptive)) in enumerate(plan.items()):
        out = work / f"row{i}.binaural.mp4"
        rows[name] = run_isolated([me, "--child", str(model), str(mp4), str(out), share, adaptive])
        print(f"{name}: {rows[name]['wall_s']:.2f} s", file=sys.stderr)
    wav = {name: sf.read(r["wav"], always_2d=True)[0].T for name, r in rows.items()}
    names = list(plan)
    identical = bool(np.array_equal(wav[names[0]], wav[names[1]]))
    noisy_s = rows[names[2]]["wall_s"]
    print(f"{args.seconds:g} s still-image video, full-size model, onnxruntime fp32, one process per row\n")
    print(
        "| video, visual rate | seconds | crops computed | shared | reused | speed-up vs noisy exact | SNR vs its "
        "exact (dB) | decode s | preprocess s | backend s | encode s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ref = wav[names[next(i for prefix, i in refs.items() if name.startswith(prefix))]]
        snr, t = snr_db(wav[name], ref), r["times"]
        print(
            f"| {name} | {r['wall_s']:.2f} | {r['crops_computed']} / {r['windows']} | {r['crops_shared']} | "
            f"{r['crops_reused']} | {noisy_s / r['wall_s']:.2f}x | {snr:.1f} | {t['decode_s']} | {t['preprocess_s']} "
            f"| {t['backend_s']} | {t['encode_s']} |"
        )
    print(f"\nlossless still: exact == every crop computed, to the bit: {identical}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "bit_identical": identical}, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
