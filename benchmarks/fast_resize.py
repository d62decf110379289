"""``ccs-run --resize exact`` (the default: RGB conversion, then the official loader's Pillow bicubic) against
``--resize fast`` (FFmpeg converts and resizes in one step): time, the CPU-seconds of colour conversion and
resizing, and how far the fast output lies from the exact one.

    python benchmarks/fast_resize.py [--sizes 1920x1080 3840x2160] [--rounds 2] [--model DIR] [--json out.json]

Clips: every real clip of ``compare.py --clip real`` (real footage, 640x272 to 1280x720, with real recordings as
their sound; fetched once by ``ccstereo.testing.real_media``), and FFmpeg's testsrc2 pattern at each ``--sizes``
(8 s, 30 fps, H.264) with the bundled sample's sound: a synthetic picture of sharp colour edges, where the two
conversions differ most (picture PSNR ~36 dB against 41-48 dB on the real clips). Each run alone in its own
process, exact and fast alternating, the engine as tuned here; outputs written as wav so the comparison holds no
AAC: the SNR of the fast output against the exact one, and of their left-minus-right differences (what carries
the direction).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import soundfile as sf

from ccstereo.runtime.verification import snr_db
from ccstereo.testing.bench import cpu_name, sizes_parser

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample.mp4"


def pattern_clip(work: Path, size: str) -> Path:
    out = work / f"pattern-{size}.mp4"
    source = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-i", str(SAMPLE)]
    codecs = ["-map", "0:v", "-map", "1:a", "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30"]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *source, *codecs, "-c:a", "copy", str(out)], check=True)
    return out


def one_run(clip: Path, resize: str, work: Path, model: str | None) -> dict:
    out, report = work / f"{clip.stem}-{resize}.wav", work / "report.json"
    cmd = ["ccs-run", str(clip), "-o", str(out), "--overwrite", "-q", "--resize", resize, "--report", str(report)]
    started = time.perf_counter()
    subprocess.run([*cmd, *(["--model", model] if model else [])], check=True)
    wall = time.perf_counter() - started
    entry = json.loads(report.read_text())["files"][0]
    cpu = entry["times"]["cpu_s"]
    return {"process_s": wall, "file_s": entry["wall_s"], "picture_cpu_s": cpu["colour"] + cpu["resize_crop"],
            "out": str(out)}  # fmt: skip


def apart(fast: Path, exact: Path) -> tuple[float, float]:
    """SNR (dB) of the fast output against the exact one, and of their left-minus-right differences."""
    a, b = sf.read(fast, dtype="float64")[0], sf.read(exact, dtype="float64")[0]
    return snr_db(a, b), snr_db(a[:, 0] - a[:, 1], b[:, 0] - b[:, 1])


def _span(runs: list[dict], key: str) -> str:
    return " / ".join(f"{run[key]:.2f}" for run in runs)


def main() -> None:
    args = sizes_parser(__doc__, ["1920x1080", "3840x2160"]).parse_args()
    from ccstereo.testing.real_media import real_clips

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = {f"{name} (real)": mp4 for name, mp4, _ in real_clips(work / "real")}
        clips |= {f"testsrc2 {size}": pattern_clip(work, size) for size in args.sizes}
        one_run(next(iter(clips.values())), "exact", work, args.model)  # tunes once (cache), not timed
        print(f"CPU: {cpu_name()}\n")
        print("| clip | resize | process wall | file wall | colour + resize CPU-s | fast vs exact: SNR, L-R SNR |")
        print("|---|---|---|---|---|---|")
        for name, clip in clips.items():
            runs: dict[str, list[dict]] = {"exact": [], "fast": []}
            for _ in range(args.rounds):
                for resize in runs:
                    runs[resize].append(one_run(clip, resize, work, args.model))
            snr, side = apart(Path(runs["fast"][-1]["out"]), Path(runs["exact"][-1]["out"]))
            for resize, r in runs.items():
                gap = "ref" if resize == "exact" else f"{snr:.1f} dB, {side:.1f} dB"
                print(f"| {name} | {resize} | {_span(r, 'process_s')} s | {_span(r, 'file_s')} s | "
                      f"{_span(r, 'picture_cpu_s')} | {gap} |")  # fmt: skip
            rows.append({"clip": name, "runs": runs, "snr_db": snr, "side_snr_db": side})
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
