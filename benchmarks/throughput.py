"""ccs-run end to end on inputs of growing length: time should be linear and memory flat.

    python benchmarks/throughput.py [--lengths 10 60 600] [--model DIR] [--precision auto] [--json out.json]

Each length runs alone in its own process (mp4 in, mp4 out); printed: wall time, real-time factor, the stage
breakdown of the run report (decode, preprocess, backend, overlap-add, encode) and peak RSS; then the CPU-seconds
per stage and the backend's ms per window in the run against the tuner's figure for it running alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ccstereo.testing.bench import calibration_videos, export_once, full_size_checkpoint, peak_rss_mib, run_isolated


def make_input(work: Path, seconds: int) -> Path:
    """A long input quickly: H.264 480x240 at 10 fps with a moving block, AAC 44.1 kHz panned tone."""
    from ccstereo.testing.media import panned_tone, write_mp4

    path = work / f"input-{seconds}s.mp4"
    if not path.is_file():
        write_mp4(path, seconds=seconds, fps=10, rate=44100, audio=panned_tone(seconds, 44100), width=480, height=240)
    return path


def child(model: Path, mp4: Path, precision: str) -> dict:
    from ccstereo.runtime.binauralizer import Binauralizer, RunOptions

    engine = Binauralizer.load(model, precision=precision)
    report = engine.process(mp4, mp4.with_name(mp4.stem + ".binaural.mp4"), RunOptions(overwrite=True))
    return {**report.to_dict(), "rss_mib": peak_rss_mib()}


def cpu_table(rows: list[dict]) -> str:
    """CPU-seconds per stage, and the backend's ms per window in the run vs alone (the tuner's figure)."""
    from ccstereo.runtime.report import CPU_STAGES

    head = "| input | CPU s | " + " | ".join(CPU_STAGES) + " | backend ms/window in run | alone (tuner) |"
    lines = [head, "|" + "---|" * (len(CPU_STAGES) + 4)]
    for r in rows:
        cpu = r["times"]["cpu_s"]
        alone = r.get("backend_alone_ms_per_window")
        lines.append(
            f"| {r['duration_s']:.0f} s | {sum(cpu.values()):.2f} | "
            + " | ".join(f"{cpu.get(k, 0.0):.2f}" for k in CPU_STAGES)
            + f" | {r['backend_ms_per_window']:.2f} | {'-' if alone is None else f'{alone:.2f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 60, 600])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.child, args.precision)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="ccs-throughput-"))
    model = args.model or export_once(full_size_checkpoint(work, None), work / "export", calibration_videos(work))
    rows = []
    for seconds in args.lengths:
        mp4 = make_input(work, seconds)
        rows.append(run_isolated([__file__, "--child", str(mp4), "--model", str(model), "--precision", args.precision]))
    lines = [
        "| input | wall s | real-time factor | decode | preprocess | backend | overlap-add | encode | "
        "peak RSS MiB | backend |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["times"]
        lines.append(
            f"| {r['duration_s']:.0f} s | {r['wall_s']:.1f} | {r['wall_s'] / r['duration_s']:.3f} | "
            f"{t['decode_s']:.1f} | {t['preprocess_s']:.1f} | {t['backend_s']:.1f} | "
            f"{t['overlap_add_s']:.2f} | {t['encode_s']:.1f} | {r['rss_mib']:.0f} | {r['backend']} |"
        )
    lines.append("")
    lines.append("Stages overlap (decode and preprocessing on a producer thread, encoding on a writer thread): their")
    lines.append("sum exceeds the wall time.")
    lines += ["", cpu_table(rows)]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
