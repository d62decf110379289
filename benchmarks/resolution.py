"""ccs-run on the same 8 s at growing picture sizes, with the model's resizes one at a time on the decoding thread
(as before 2026-12-05) and on a pool of two beside it (``stream.RESIZE_WORKERS``, the default where the process may
use more than one CPU): a 1080p or 4K picture takes 15-75 ms to resize the way the official loader does (Pillow
bicubic), more than the model's share of its tick.

    python benchmarks/resolution.py [--sizes 640x360 1920x1080 3840x2160] [--rounds 2] [--model DIR] [--json out]

Clips: FFmpeg's testsrc2 pattern at each size (30 fps, H.264) with the bundled sample's sound. Each row runs alone
in its own process, the two settings alternating; printed: process wall, the report's file wall, the CPU-seconds
of the resize stage, and whether the two outputs are identical to the byte (they must be).
"""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ccstereo.testing.bench import cpu_name, sizes_parser

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample.mp4"
RUN = "import runpy, sys; from ccstereo.runtime import stream; stream.RESIZE_WORKERS = int(sys.argv.pop(1)); "
RUN += "runpy.run_module('ccstereo.runtime.cli', run_name='__main__')"


def make_clip(work: Path, size: str) -> Path:
    out = work / f"clip-{size}.mp4"
    if not out.exists():
        pattern = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-i", str(SAMPLE)]
        codecs = ["-map", "0:v", "-map", "1:a", "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30"]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *pattern, *codecs, "-c:a", "copy", str(out)],
                       check=True)  # fmt: skip
    return out


def one_run(clip: Path, workers: int, work: Path, model: str | None) -> dict:
    out, report = work / f"{clip.stem}-{workers}.mp4", work / "report.json"
    cmd = [sys.executable, "-c", RUN, str(workers), str(clip), "-o", str(out), "--overwrite", "-q"]
    cmd += ["--report", str(report), *(["--model", model] if model else [])]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    entry = json.loads(report.read_text())["files"][0]
    return {"process_s": wall, "file_s": entry["wall_s"], "resize_cpu_s": entry["times"]["cpu_s"]["resize_crop"],
            "out": str(out)}  # fmt: skip


def _span(runs: list[dict], key: str) -> str:
    return " / ".join(f"{run[key]:.2f}" for run in runs)


def main() -> None:
    args = sizes_parser(__doc__, ["640x360", "1920x1080", "3840x2160"]).parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-c", RUN, "2", str(SAMPLE), "-o", str(work / "warm.mp4"), "-q"], check=True)
        print(f"CPU: {cpu_name()}\n")
        print("| picture | resizes | process wall | file wall | resize CPU-s | outputs |")
        print("|---|---|---|---|---|---|")
        for size in args.sizes:
            clip = make_clip(work, size)
            runs: dict[int, list[dict]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for workers in (1, 2):
                    runs[workers].append(one_run(clip, workers, work, args.model))
            same = filecmp.cmp(runs[1][-1]["out"], runs[2][-1]["out"], shallow=False)
            for workers, label in ((1, "one at a time"), (2, "pool of two")):
                r = runs[workers]
                print(f"| {size} | {label} | {_span(r, 'process_s')} s | {_span(r, 'file_s')} s | "
                      f"{_span(r, 'resize_cpu_s')} | {'identical' if same else 'DIFFERENT'} |")  # fmt: skip
                rows.append({"size": size, "workers": workers, "runs": r, "identical": same})
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
