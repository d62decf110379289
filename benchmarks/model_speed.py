"""Two exported models side by side on the same file and engine: is the new default as fast as the old one?

    python benchmarks/model_speed.py OLD NEW [--media samples/sample.mp4 | --real-seconds 60] [--rounds 5]
                                     [--mirror-old auto|on|off] [--mirror-new auto|on|off]
                                     [--engines onnxruntime openvino openvino-int8 openvino-bf16 auto]

Both models are loaded once per engine (the engine and precision fixed, the same for both), or with ``auto`` as
``ccs-run`` loads each by default (its tuned choice, which may differ between the two: what a user gets), then the
file is binauralised OLD, NEW, OLD, NEW... ``--rounds`` times each, interleaved so that a machine that slows down or
speeds up during the run affects both alike; the figure is the ratio of the medians of the wall times (NEW / OLD;
< 1 is faster). Prints a markdown table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ccstereo.testing.bench import MIRROR_CHOICES, cpu_name

REPO = Path(__file__).resolve().parents[1]

ENGINES = {  # engine -> (precision, graph file)
    "onnxruntime": ("fp32", "model.onnx"),
    "openvino": ("fp32", "model.onnx"),
    "openvino-int8": ("int8", "model.int8.onnx"),
    "openvino-bf16": ("bf16", "model.onnx"),  # what ccs-run picks on AVX512-BF16 / AMX CPUs
    "auto": ("auto", ""),  # the folder as ccs-run loads it: the tuner's choice for each model
}


def time_pair(models: dict[str, tuple[Path, bool | None]], media: Path, engine: str, rounds: int, threads: int | None):
    """``models``: "old" and "new" -> (exported folder, RunOptions.mirror: None as the model says)."""
    from ccstereo.runtime.binauralizer import Binauralizer
    from ccstereo.runtime.options import RunOptions

    precision, graph = ENGINES[engine]
    backend = engine.split("-")[0]
    tune = None if engine == "auto" else False
    loaded = {
        name: Binauralizer.load(folder / graph, backend=backend, precision=precision, threads=threads, tune=tune)
        for name, (folder, _) in models.items()
    }
    options = {
        name: RunOptions(fmt="wav", overwrite=True, full_band=False, mirror=mirror)
        for name, (_, mirror) in models.items()
    }
    walls: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine_ in loaded.items():  # warm-up, untimed
            engine_.process(media, Path(tmp) / f"{name}.wav", options[name])
        for _ in range(rounds):
            for name, engine_ in loaded.items():
                started = time.perf_counter()
                engine_.process(media, Path(tmp) / f"{name}.wav", options[name])
                walls[name].append(time.perf_counter() - started)
    old_s, new_s = statistics.median(walls["old"]), statistics.median(walls["new"])
    names = {name: engine_.backend.name for name, engine_ in loaded.items()}
    return {
        "engine": names["new"] if names["new"] == names["old"] else f"{engine}: {names['old']} / {names['new']}",
        "old_s": old_s,
        "new_s": new_s,
        "ratio": new_s / old_s,
        "walls": walls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="exported model folder (model.onnx, model.int8.onnx)")
    parser.add_argument("new", type=Path)
    parser.add_argument("--media", type=Path, default=REPO / "samples" / "sample.mp4")
    parser.add_argument("--real-seconds", type=float, help="instead of --media: that long a clip of real footage")
    parser.add_argument("--rounds", type=int, default=5)
    default_engines = ["onnxruntime", "openvino", "openvino-int8"]
    parser.add_argument("--engines", nargs="+", default=default_engines, choices=list(ENGINES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    for side in ("old", "new"):  # the same folder twice with --mirror-old off --mirror-new on: what mirroring costs
        what = f"mirror test-time augmentation for {side.upper()} (auto: as the model says)"
        parser.add_argument(f"--mirror-{side}", choices=list(MIRROR_CHOICES), default="auto", help=what)
    args = parser.parse_args()
    models = {"old": (args.old, MIRROR_CHOICES[args.mirror_old]), "new": (args.new, MIRROR_CHOICES[args.mirror_new])}
    rows = []
    if args.real_seconds:
        from ccstereo.testing.real_media import long_real_clip

        args.media = long_real_clip(Path(tempfile.gettempdir()) / "ccstereo-real-clips", args.real_seconds)
    for engine in args.engines:
        try:
            rows.append(time_pair(models, args.media, engine, args.rounds, args.threads))
        except Exception as exc:  # noqa: BLE001 - an engine missing here: the other rows still stand
            print(f"{engine}: skipped ({' '.join(str(exc).split())[:200]})", file=sys.stderr)
    print(f"CPU: {cpu_name()}; {args.media.name}, median of {args.rounds} interleaved runs each\n")
    print("| engine | old s | new s | new / old |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['old_s']:.3f} | {r['new_s']:.3f} | {r['ratio']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
