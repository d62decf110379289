"""Quality of a model on a held-out synthetic set (unseen seed, a different measured HRTF set).

    python benchmarks/quality.py --seed 4242 --hrtf fabian --clips 40 [--model DIR] [--json out.json]
        [--precisions fp32 bf16 int8]

Renders the set with ccs-synth's generator, runs the model through the runtime API (Binauralizer) and prints
one table of stft, env, mag, phs, snr, spl and direction accuracy for: Mono-Mono (L = R = M/2), audio-only
(frames replaced by uniform grey), flipped visual (frames mirrored), the model without V-TTA, and with V-TTA.

Direction accuracy: over 0.5 s segments where the ground truth's |L - R level difference| exceeds 3 dB, the
share whose predicted level difference has the same sign.

With --precisions, a second table runs the V-TTA condition once per CPU precision and gives each one's binaural
SNR against fp32 (pooled over the set) and the relative change of every metric against fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ccstereo.testing.bench import MIRROR_CHOICES

METRICS = ("stft", "env", "mag", "phs", "snr", "spl")
SEGMENT_S, MIN_ILD_DB = 0.5, 3.0


def level_difference_db(x: np.ndarray, rate: int, segment_s: float = SEGMENT_S) -> np.ndarray:
    """Return 10 log10(E_L / E_R) per non-overlapping segment."""
    n = int(segment_s * rate)
    k = x.shape[1] // n
    e = np.mean(np.asarray(x[:, : k * n], np.float64).reshape(2, k, n) ** 2, axis=-1) + 1e-12
    return 10 * np.log10(e[0] / e[1])


def direction_hits(pred: np.ndarray, gt: np.ndarray, rate: int) -> tuple[int, int]:
    """Return (segments with the right sign, segments where |ILD| > 3 dB) of one clip."""
    g, p = level_difference_db(gt, rate), level_difference_db(pred, rate)
    strong = np.abs(g) > MIN_ILD_DB
    return int(np.sum(np.sign(p[strong]) == np.sign(g[strong]))), int(np.sum(strong))


def load_frames(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def evaluate_condition(pred: np.ndarray, gt: np.ndarray, rate: int) -> dict[str, float]:
    from ccstereo.metrics import evaluate, peak_normalize

    scores = evaluate(peak_normalize(pred.astype(np.float64)), peak_normalize(gt.astype(np.float64)), rate)
    return {k: scores[k] for k in METRICS}


def accumulate(sums: dict[str, float], hits: list[int], pred: np.ndarray, gt: np.ndarray, rate: int) -> None:
    """Add one clip's metrics to ``sums`` and its direction hits / segments to ``hits``."""
    for k, v in evaluate_condition(pred, gt, rate).items():
        sums[k] += v
    h, n = direction_hits(pred, gt, rate)
    hits[0] += h
    hits[1] += n


def run(args: argparse.Namespace) -> dict:
    import soundfile as sf

    from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
    from ccstereo.synth.dataset import write_dataset

    opts = RunOptions(mirror=MIRROR_CHOICES[args.mirror])
    by_precision = {p: Binauralizer.load(args.model, precision=p) for p in args.precisions}
    engine = Binauralizer.load(args.model)
    # the auto choice is one of the precisions when they are given: its V-TTA run is shared, not repeated
    same = next((p for p, e in by_precision.items() if e.backend.name == engine.backend.name), None)
    rate = engine.config.sample_rate_hz
    work = Path(tempfile.mkdtemp(prefix="ccs-quality-"))
    t0 = time.perf_counter()
    data = write_dataset(
        work / "heldout", args.clips, args.seconds, args.seed, args.hrtf, mp4=False, log=lambda _m: None
    )
    render_s = time.perf_counter() - t0
    conditions = ("Mono-Mono", "audio-only (grey frames)", "flipped visual", "model, no V-TTA", "model, V-TTA")
    sums = {c: {m: 0.0 for m in METRICS} for c in conditions}
    hits = {c: [0, 0] for c in conditions}
    psums = {p: {m: 0.0 for m in METRICS} for p in by_precision}
    phits = {p: [0, 0] for p in by_precision}
    energy = {p: [0.0, 0.0] for p in by_precision}  # (fp32 energy, error energy vs fp32)
    t0 = time.perf_counter()
    for cid in sorted(p.stem for p in (data / "binaural_audios").glob("*.wav")):
        gt, _ = sf.read(str(data / "binaural_audios" / f"{cid}.wav"), dtype="float32", always_2d=True)
        gt = gt.T
        frames = load_frames(data / "frames" / f"{cid}.mp4")
        mono = gt[0] + gt[1]
        grey = [np.full_like(frames[0], 128)]
        preds = {
            "Mono-Mono": np.stack([mono / 2, mono / 2]),
            "audio-only (grey frames)": engine.process_arrays(gt, grey, opts),
            "flipped visual": engine.process_arrays(gt, [np.ascontiguousarray(f[:, ::-1]) for f in frames], opts),
            "model, no V-TTA": engine.process_arrays(gt, frames, RunOptions(tta=False, mirror=opts.mirror)),
        }
        ppreds = {p: e.process_arrays(gt, frames, opts) for p, e in by_precision.items()}
        preds["model, V-TTA"] = ppreds[same] if same is not None else engine.process_arrays(gt, frames, opts)
        for cond, pred in preds.items():
            accumulate(sums[cond], hits[cond], pred, gt, rate)
        for p, pred in ppreds.items():
            accumulate(psums[p], phits[p], pred, gt, rate)
            ref = ppreds["fp32"].astype(np.float64)  # main() puts fp32 first whenever precisions are given
            energy[p][0] += float(np.sum(ref**2))
            energy[p][1] += float(np.sum((pred - ref) ** 2))
    table = {}
    for cond in conditions:
        row = {k: v / args.clips for k, v in sums[cond].items()}
        row["direction_acc"] = hits[cond][0] / max(1, hits[cond][1])
        table[cond] = row
    precisions = {}
    for p, e in by_precision.items():
        row = {k: v / args.clips for k, v in psums[p].items()}
        row["direction_acc"] = phits[p][0] / max(1, phits[p][1])
        ref_energy, err = energy[p]
        row["snr_vs_fp32_db"] = float("inf") if err == 0 else 10 * np.log10(ref_energy / err)
        precisions[p] = {"backend": e.backend.name, **row}
    for row in precisions.values():
        base = precisions["fp32"]
        row["worst_rel_change_vs_fp32"] = max(abs(row[k] - base[k]) / abs(base[k]) for k in METRICS)
    return {
        "model": str(args.model or "bundled default"),
        "precisions": precisions,
        "backend": engine.backend.name,
        "mirror": engine.mirrors(opts),
        "seed": args.seed,
        "hrtf": args.hrtf,
        "clips": args.clips,
        "seconds": args.seconds,
        "direction_segments": hits["model, V-TTA"][1],
        "render_s": round(render_s, 1),
        "inference_s": round(time.perf_counter() - t0, 1),
        "table": table,
    }


def markdown(result: dict) -> str:
    cols = [*METRICS, "direction_acc"]
    lines = [
        f"Held-out set: {result['clips']} clips x {result['seconds']} s, seed {result['seed']}, HRTF "
        f"{result['hrtf']}, backend {result['backend']}, mirror TTA {'on' if result.get('mirror') else 'off'} "
        f"({result['direction_segments']} segments with |ILD| > 3 dB)",
        "",
        "| condition | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for cond, row in result["table"].items():
        cells = [f"{row[c]:.1%}" if c == "direction_acc" else f"{row[c]:.4f}" for c in cols]
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    if result["precisions"]:
        lines += [
            "",
            "Model with V-TTA per CPU precision (SNR pooled over the set; change = largest relative change of a "
            "metric vs fp32):",
            "",
            "| precision | backend | SNR vs fp32 (dB) | " + " | ".join(cols) + " | change vs fp32 |",
            "|---" * (len(cols) + 4) + "|",
        ]
        for p, row in result["precisions"].items():
            cells = [f"{row[c]:.1%}" if c == "direction_acc" else f"{row[c]:.4f}" for c in cols]
            snr = row["snr_vs_fp32_db"]
            snr_text = "ref" if snr == float("inf") else f"{snr:.1f}"
            change = f"{row['worst_rel_change_vs_fp32']:.2%}"
            lines.append(f"| {p} | {row['backend']} | {snr_text} | " + " | ".join(cells) + f" | {change} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="exported folder or .onnx (default: bundled)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--hrtf", default="fabian")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--precisions", nargs="*", default=[], choices=["fp32", "bf16", "int8"])
    parser.add_argument(
        "--mirror",
        choices=list(MIRROR_CHOICES),
        default="auto",
        help="mirror test-time augmentation (auto: as the model says)",
    )
    args = parser.parse_args(argv)
    if args.precisions and "fp32" not in args.precisions:
        args.precisions = ["fp32", *args.precisions]
    result = run(args)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
