"""Real-scene check of one or more models: does a real object on the left / right come out on its side, does a
sound nobody sees stay centred, does a mirrored picture give the ear-swapped sound?

Scenes: ``ccs-synth --kind real-eval`` — photographed objects, backgrounds, footage and recordings that training
never used (the "eval" side of ``ccstereo.synth.real_assets``), rendered with a head the default model was not
trained on (``kemar-ssr``: TU Berlin's KEMAR measurement, Debian SSR), plus each scene mirrored (picture flipped,
truth's ears swapped). Every model runs through the runtime's own streaming inference (``process_arrays``:
windows at the 0.1 s hop, V-TTA) on onnxruntime fp32, so the models are compared, not the engines.

    python benchmarks/real_scenes.py OLD_MODEL_DIR NEW_MODEL_DIR [--clips 40] [--seed 9100] [--json out.json]

Measures (0.5 s segments carrying sound): direction accuracy where the truth's |ILD| >= 1 dB (all, truth on the
left, truth on the right), ILD correlation with the truth, STFT distance of model and of the mono copy (and the
share of off-centre clips, both orientations, where the model's is the smaller), the mean |ILD| of the model on
scenes whose truth is centred (and on ``--centred`` more such scenes, by what the picture shows: nothing, or
objects that make no sound), and the mirror correlation (ILD of the mirrored picture's output against minus the
original's). Then the same per kind of scene (how many objects sound, how many silent ones are in the picture,
footage or a still picture behind them, moving or still, room or not, the background, and bands of the truth's
|ILD|) and each model's five worst clips with their background: where a model fails, not only how often; and how
often the side stays when each scene's pictures get another scene's sound (near 100 %: the picture alone decides,
the sound does not say which object it is); and, for scenes with one sounding object, how often the truth itself
and the output are on the side the picture shows (rooms: a narrow-band sound's reflections can make the truth's
louder ear the other one, which no model that follows the picture can match).

More sets, each from sources training never saw: ``--centred N`` (sound straight ahead), ``--cards N`` (objects as
photo cards), ``--unseen-footage N`` (over Kivy's city clip, footage unlike every training clip) and ``--lone N``:
over that clip, objects that all sound and nothing else in the picture, half of them photo cards — the kind of scene
the independent check of issue 24 is made of.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccstereo.atomic import write_text
from ccstereo.config import ModelConfig
from ccstereo.metrics import direction_scores, peak_normalize, picture_side_scores, segment_ild_db, stft_distance
from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
from ccstereo.synth.dataset import write_dataset
from ccstereo.synth.scene import azimuth_deg
from ccstereo.testing.bench import MIRROR_CHOICES
from ccstereo.train.data import load_clip


def _scenes(work: Path, clips: int, seed: int, head: str, tag: str = "", **mix: object) -> Path:
    """Render (once) ``clips`` real-eval scenes of 8 s; ``mix``: ``write_dataset``'s scene-mix options."""
    data = work / f"real-eval{tag}-{seed}-{clips}-{head}"
    if not (data / "metadata.json").is_file():
        write_dataset(data, clips, 8.0, seed, head, mp4=False, log=lambda _m: None, kind="real-eval", **mix)
    return data


def card_scenes(work: Path, clips: int, seed: int, head: str) -> Path:
    """The --cards set of the main set's ``seed`` (its own: seed + 2): every object a photo card, none centred."""
    return _scenes(work, clips, seed + 2, head, "-cards", centred_share=0.0, card_share=1.0)


def lone_scenes(work: Path, clips: int, seed: int, head: str) -> Path:
    """The --lone set of the main set's ``seed`` (its own: seed + 4): over the held-out city clip, every pasted
    object sounds and nothing else is pasted, half of them photo cards."""
    from ccstereo.synth.real_assets import held_out_footage

    mix = {"centred_share": 0.0, "card_share": 0.5, "footage_share": 1.0, "max_silent": 0}
    return _scenes(work, clips, seed + 4, head, "-lone", footage=held_out_footage(), **mix)


def _centred_scenes(engine: Binauralizer, data: Path, options: RunOptions) -> tuple[dict, tuple[float, float]]:
    """Mean |ILD| in dB of the output on scenes whose sound is straight ahead: all, and split by what the picture
    shows (no object / objects that make no sound; footage / a still picture) -> (mean, scenes); and the mean STFT
    distance to the truth of the output and of the mono copy over all of them (a centred truth is nearly its own
    mono copy: whatever the model adds is error)."""
    meta = json.loads((data / "metadata.json").read_text())
    groups: dict[str, list[float]] = {}
    stft: list[tuple[float, float]] = []
    for cid in sorted(meta["clips"]):
        clip, scene = load_clip(data, cid, ModelConfig()), meta["clips"][cid]
        out = engine.process_arrays(clip.audio, clip.frames, options)
        ild, energy = segment_ild_db(out)
        value = float(np.mean(np.abs(ild[energy > 1e-4 * energy.max()])))
        shown = "silent objects shown" if scene["objects"] else "no object shown"
        for key in ("all", shown, "over footage" if scene["footage"] else "over a picture"):
            groups.setdefault(key, []).append(value)
        stft.append(_stft_pair(out, clip.audio.astype(np.float64)))
    model_stft, mono_stft = np.mean(stft, axis=0)
    return {k: (float(np.mean(v)), len(v)) for k, v in groups.items()}, (float(model_stft), float(mono_stft))


def _kinds(scene: dict) -> list[str]:
    """The groups a scene belongs to, for the breakdown: what makes a scene hard."""
    sounding = [o for o in scene["objects"] if o["sounding"]]
    silent = len(scene["objects"]) - len(sounding)
    moving = any(abs(o["azimuth_start_deg"] - o["azimuth_end_deg"]) > 1 for o in sounding)
    alone = ["one sounding object and nothing else"] if len(scene["objects"]) == len(sounding) == 1 else []
    if len(sounding) == 1 and scene["footage"]:
        alone.append("one sounding object over footage")  # the "real objects on real footage"
    return [
        *alone,
        f"{len(sounding)} sounding object(s)",
        f"{min(silent, 2)}{'+' if silent >= 2 else ''} silent object(s)",
        "over footage" if scene["footage"] else "over a picture",
        "moving" if moving else "still",
        "room" if scene["room"] else "no room",
        f"background {scene['background']}",
    ]


@dataclass
class _Group:
    """One kind of scene's tallies over both orientations: decided segments (all, truth left, truth right) and
    those whose side agrees, the ILD series, and the off-centre clips whose output is nearer the truth than the
    mono copy is (STFT distance)."""

    agree: dict = field(default_factory=lambda: {"all": 0, "left": 0, "right": 0})
    count: dict = field(default_factory=lambda: {"all": 0, "left": 0, "right": 0})
    pred: list = field(default_factory=list)
    truth: list = field(default_factory=list)
    beats_mono: int = 0
    clips: int = 0

    def add(self, d: dict, beats_mono: bool | None) -> None:
        for side in self.count:
            self.agree[side] += d[side][0]
            self.count[side] += d[side][1]
        self.pred.append(d["ild_pred"])
        self.truth.append(d["ild_truth"])
        if beats_mono is not None:
            self.beats_mono += int(beats_mono)
            self.clips += 1

    def figures(self) -> dict:
        p = np.concatenate(self.pred) if self.pred else np.zeros(0)
        t = np.concatenate(self.truth) if self.truth else np.zeros(0)
        usable = len(p) > 2 and np.std(t) > 0 and np.std(p) > 0
        share = {k: (self.agree[k] / n if n else None) for k, n in self.count.items()}
        return {
            "direction": share,
            "segments": self.count["all"],
            "ild_correlation": float(np.corrcoef(p, t)[0, 1]) if usable else None,
            "beats_mono": self.beats_mono / self.clips if self.clips else None,
            "clips": self.clips,
        }


def _tally(by_kind: dict, kinds: list[str], d: dict, beats_mono: bool) -> None:
    """Add one output's direction scores, ILD series and STFT comparison to its scene's groups, and its direction
    to the truth-|ILD| bands (no correlation there: their truth is cut to a range)."""
    for kind in ["all", *kinds]:
        by_kind.setdefault(kind, _Group()).add(d, beats_mono)
    truth, agree = d["ild_truth"], np.sign(d["ild_pred"]) == np.sign(d["ild_truth"])
    for low, high in ((1, 3), (3, 6), (6, np.inf)):
        band = (np.abs(truth) >= low) & (np.abs(truth) < high)
        cut = {"all": (int((agree & band).sum()), int(band.sum())), "left": (0, 0), "right": (0, 0)}
        by_kind.setdefault(f"truth |ILD| {low}-{high:g} dB", _Group()).add(
            {**cut, "ild_pred": np.zeros(0), "ild_truth": np.zeros(0)}, None
        )


def _picture_side(tallies: dict, scene: dict, outputs: tuple) -> None:
    """Scenes with one sounding object: add both orientations' ``picture_side_scores`` (the object's azimuth from
    its box each tick; mirrored: negated) to the tallies of all such scenes, of those with or without a room, and of
    those whose object moves (more than 1 degree over the clip) or stays still."""
    if len(scene["boxes"][0]) != 1:
        return
    azimuths = np.array([float(azimuth_deg((b[0][0] + b[0][2]) / 2)) for b in scene["boxes"]])
    moving = float(np.ptp(azimuths)) > 1.0  # degrees, over the whole clip
    for (out, gt), sign in zip(outputs, (1.0, -1.0), strict=True):
        scores = picture_side_scores(out, gt, sign * azimuths)
        for group in ("all", "room" if scene["room"] else "no room", "moving" if moving else "still"):
            tally = tallies.setdefault(group, {k: [0, 0] for k in scores})
            for key, (agree, counted) in scores.items():
                tally[key][0] += agree
                tally[key][1] += counted


def _stft_pair(out: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """STFT distance to the truth of ``out`` and of the truth's mono copy (both peak-normalised)."""
    mono = np.repeat(truth.sum(0, keepdims=True) / 2, 2, axis=0)
    target = peak_normalize(truth)
    return stft_distance(peak_normalize(out), target), stft_distance(peak_normalize(mono), target)


def _score_model(engine: Binauralizer, data: Path, ids: list[str], meta: dict, options: RunOptions) -> dict:
    by_kind: dict[str, _Group] = {}
    flip_avg = _Group()  # (f(x) + ear-swapped f(mirrored x)) / 2: left/right symmetric, 2x compute
    worst: list[tuple[float, str]] = []
    centred, mirror_p, mirror_m, stft_model, stft_mono = [], [], [], [], []
    picture_side: dict[str, dict] = {}
    for cid in ids:
        clip = load_clip(data, cid, ModelConfig())
        truth = clip.audio.astype(np.float64)
        pred = engine.process_arrays(clip.audio, clip.frames, options)
        flipped = engine.process_arrays(clip.audio[::-1].copy(), clip.frames[:, :, ::-1].copy(), options)
        own = _stft_pair(pred, truth)  # model and mono copy vs truth; the headline: this orientation, every clip
        stft_model.append(own[0])
        stft_mono.append(own[1])
        a, _ = segment_ild_db(pred)
        b, energy = segment_ild_db(flipped)
        live = energy > 1e-4 * energy.max()
        mirror_p.append(a[live])
        mirror_m.append(-b[live])
        if meta["clips"][cid]["centred"]:
            centred.append(float(np.mean(np.abs(a[live]))))
            continue
        both = [0, 0]  # this scene, both orientations
        mirrored = truth[::-1].copy()
        _picture_side(picture_side, meta["clips"][cid], ((pred, truth), (flipped, mirrored)))
        for out, gt, (model, mono) in ((pred, truth, own), (flipped, mirrored, _stft_pair(flipped, mirrored))):
            d = direction_scores(out, gt)
            both = [both[0] + d["all"][0], both[1] + d["all"][1]]
            _tally(by_kind, _kinds(meta["clips"][cid]), d, model < mono)
        sym = 0.5 * (pred + flipped[::-1])
        for out, gt in ((sym, truth), (sym[::-1], mirrored)):
            flip_avg.add(direction_scores(out, gt), None)
        if both[1]:
            worst.append((both[0] / both[1], f"{cid} ({meta['clips'][cid]['background']})"))
    every = by_kind.pop("all")
    overall, p, t = every.figures(), np.concatenate(every.pred), np.concatenate(every.truth)
    return {
        "direction_accuracy": overall["direction"],
        "segments": dict(every.count),
        "ild_correlation": float(np.corrcoef(p, t)[0, 1]),
        "mean_ild_error_db": float(np.mean(np.abs(p - t))),
        "stft_model": float(np.mean(stft_model)),
        "stft_mono": float(np.mean(stft_mono)),
        "clips_beating_mono": overall["beats_mono"],
        "centred_clips": len(centred),
        "centred_mean_abs_ild_db": float(np.mean(centred)) if centred else None,
        "mirror_correlation": float(np.corrcoef(np.concatenate(mirror_p), np.concatenate(mirror_m))[0, 1]),
        "by_kind": {k: v.figures() for k, v in sorted(by_kind.items())},
        "worst_clips": [f"{name} {share:.0%}" for share, name in sorted(worst)[:5]],
        "flip_averaged": {k: flip_avg.figures()[k] for k in ("direction", "ild_correlation")},
        "picture_side": {g: {k: (a / n if n else None, n) for k, (a, n) in t.items()} for g, t in picture_side.items()},
    }


def _sound_swap(engine: Binauralizer, data: Path, ids: list[str], meta: dict, options: RunOptions) -> float:
    """Return the share of decided segments (own output |ILD| >= 1 dB) whose side stays when each off-centre
    scene's pictures get the next scene's sound: near 100 % means the side comes from the picture alone, and the
    sound does not pick which object it belongs to."""
    cfg, scenes = ModelConfig(), [c for c in ids if not meta["clips"][c]["centred"]]
    kept = counted = 0
    for index, cid in enumerate(scenes):
        clip, other = load_clip(data, cid, cfg), load_clip(data, scenes[(index + 1) % len(scenes)], cfg)
        n = min(clip.audio.shape[1], other.audio.shape[1])
        own, _ = segment_ild_db(engine.process_arrays(clip.audio[:, :n], clip.frames, options))
        swapped, energy = segment_ild_db(engine.process_arrays(other.audio[:, :n], clip.frames, options))
        decided = (energy > 1e-4 * energy.max()) & (np.abs(own) >= 1.0)
        kept += int(np.sum(np.sign(own[decided]) == np.sign(swapped[decided])))
        counted += int(decided.sum())
    return kept / max(counted, 1)


def _print_breakdown(results: dict) -> None:
    """Per kind of scene: direction (all / truth left / truth right), ILD correlation and the share of off-centre
    clips (both orientations) nearer the truth than their mono copy; then each model's worst clips."""
    print("\n| kind of scene (decided segments) | " + " | ".join(Path(m).name or m for m in results) + " |")
    print("|---" * (len(results) + 1) + "|")
    first = next(iter(results.values()))["by_kind"]
    for kind, figures in first.items():
        cells = []
        for model in results:
            f = results[model]["by_kind"][kind]
            d = f["direction"]
            text = _f(d["all"])
            if d["left"] is not None and d["right"] is not None:
                text += f" (L {d['left']:.0%} / R {d['right']:.0%})"
            if f["ild_correlation"] is not None:
                text += f", ILD corr {f['ild_correlation']:.2f}, beats mono {f['beats_mono']:.0%} of {f['clips']}"
            cells.append(text)
        print(f"| {kind} ({figures['segments']}) | " + " | ".join(cells) + " |")
    for model, r in results.items():
        print(f"worst clips of {model}: {', '.join(r['worst_clips'])}")
        print(f"{model}: side kept with another scene's sound {r['side_kept_with_another_scenes_sound']:.0%}")
        print(f"{model}: {_flip_averaged(r)}")
        print(f"{model}: {_picture_side_line(r)}")


def _picture_side_line(r: dict) -> str:
    """One sounding object, off centre: how often the truth, and the output, are on the side the picture shows."""
    parts = []
    for group in ("all", "no room", "room", "still", "moving"):
        t = r["picture_side"].get(group)
        if t:
            parts.append(
                f"{group} ({t['truth_vs_picture'][1]}): truth {_f(t['truth_vs_picture'][0])}, output "
                f"{_f(t['output_vs_picture'][0])} (output vs truth {_f(t['output_vs_truth'][0])})"
            )
    return "one sounding object >= 2 deg off centre, on the picture's side: " + ("; ".join(parts) or "-")


def _extra_sets(args: argparse.Namespace) -> dict[str, tuple[Path, str]]:
    """The scene sets beside the main one that were asked for: key -> (folder, title)."""
    sets = {}
    if args.cards:
        folder = card_scenes(args.work, args.cards, args.seed, args.head)
        sets["card_scenes"] = (folder, f"{args.cards} more scenes whose objects are photo cards (seed {args.seed + 2})")
    if args.unseen_footage:
        from ccstereo.synth.real_assets import held_out_footage

        seed, mix = args.seed + 3, {"centred_share": 0.0, "card_share": 0.5, "footage_share": 1.0}
        folder = _scenes(args.work, args.unseen_footage, seed, args.head, "-city", footage=held_out_footage(), **mix)
        title = f"{args.unseen_footage} more scenes over footage unlike any training clip's (Kivy's city clip"
        sets["unseen_footage_scenes"] = (folder, title + f", seed {seed}; half the objects photo cards)")
    if args.lone:
        folder = lone_scenes(args.work, args.lone, args.seed, args.head)
        title = f"{args.lone} more scenes shaped like the independent check: sounding objects and nothing else over"
        sets["lone_object_scenes"] = (folder, title + f" the held-out city footage (seed {args.seed + 4}; half cards)")
    return sets


def _flip_averaged(r: dict) -> str:
    """The flip-averaged output's figures: what left/right symmetry by construction would give."""
    d, corr = r["flip_averaged"]["direction"], r["flip_averaged"]["ild_correlation"]
    sides = f"{_f(d['all'])} (L {_f(d['left'])} / R {_f(d['right'])})"
    return f"flip-averaged (2x compute): {sides}, ILD corr {_f(corr, '.2f')}"


def _print_set(results: dict, key: str, title: str) -> None:
    """One more scene set's figures per model, both orientations."""
    print(f"\n{title}, both orientations:")
    print("| model | direction (all / left / right) | ILD corr | clips nearer than mono | one object over footage |")
    print("|---" * 5 + "|")
    for model, r in results.items():
        c = r[key]
        d, f = c["direction_accuracy"], c["by_kind"].get("one sounding object over footage")
        alone = "-"
        if f is not None and f["direction"]["all"] is not None:
            alone = f"{f['direction']['all']:.0%} ({f['segments']}), ILD corr {f['ild_correlation'] or 0:.2f}"
        print(
            f"| {model} | {_f(d['all'])} / {_f(d['left'])} / {_f(d['right'])} | {_f(c['ild_correlation'], '.2f')} | "
            f"{_f(c['clips_beating_mono'])} | {alone} |"
        )
        print(f"worst scenes of {model}: {', '.join(c['worst_clips'])}; {_flip_averaged(c)}")
        print(f"{model}: {_picture_side_line(c)}")


def _f(value: float | None, spec: str = ".0%") -> str:
    """A figure for the tables, or "-" where a set had nothing to measure it on (a small set: no centred clip, no
    segment on one side)."""
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="exported model folders (or .onnx files)")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--head", default="kemar-ssr", help="HRTF set the scenes are rendered with")
    parser.add_argument("--centred", type=int, default=20, help="extra scenes whose sound is straight ahead (seed+1)")
    parser.add_argument(
        "--cards", type=int, default=0, help="extra scenes whose objects are photo cards, none centred (seed+2)"
    )
    parser.add_argument(
        "--unseen-footage",
        type=int,
        default=0,
        help="extra scenes over a held-out footage clip unlike any training one, none centred (seed+3)",
    )
    parser.add_argument(
        "--lone",
        type=int,
        default=0,
        help="extra scenes over that clip whose objects all sound (no silent ones), half photo cards (seed+4)",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ccstereo-real-scenes")
    parser.add_argument("--threads", type=int, default=None, help="backend threads (default: the backend's)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--mirror",
        choices=list(MIRROR_CHOICES),
        default="auto",
        help="mirror test-time augmentation (RunOptions.mirror; auto: as each model says)",
    )
    parser.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=True, help="V-TTA five-crop (ccs-run --tta/--no-tta)"
    )
    args = parser.parse_args()
    started, options = time.perf_counter(), RunOptions(tta=args.tta, mirror=MIRROR_CHOICES[args.mirror])
    data = _scenes(args.work, args.clips, args.seed, args.head)
    meta = json.loads((data / "metadata.json").read_text())
    ids = sorted(meta["clips"])
    centred = None
    if args.centred:
        centred = _scenes(args.work, args.centred, args.seed + 1, args.head, "-centred", centred_share=1.0)
    extra = _extra_sets(args)
    print(f"{len(ids)} real-eval scenes (+ mirrored), head {args.head}, seed {args.seed}: {data}")
    results = {}
    for model in args.models:
        engine = Binauralizer.load(model, backend="onnxruntime", precision="fp32", threads=args.threads)
        results[model] = _score_model(engine, data, ids, meta, options)
        results[model]["side_kept_with_another_scenes_sound"] = _sound_swap(engine, data, ids, meta, options)
        if centred is not None:
            by_shown, stft = _centred_scenes(engine, centred, options)
            results[model]["centred_scenes"], results[model]["centred_scenes_stft_model_mono"] = by_shown, stft
        for key, (folder, _) in extra.items():
            more = json.loads((folder / "metadata.json").read_text())
            results[model][key] = _score_model(engine, folder, sorted(more["clips"]), more, options)
    if args.json:
        write_text(
            args.json, json.dumps({"head": args.head, "seed": args.seed, "clips": len(ids), **results}, indent=1)
        )
    header = (
        "| model | direction (all / left / right) | ILD corr | STFT model / mono | clips nearer than mono "
        "| centred |ILD| dB | mirror corr |"
    )
    print(header)
    print("|---" * 7 + "|")
    for model, r in results.items():
        d = r["direction_accuracy"]
        print(
            f"| {model} | {_f(d['all'])} / {_f(d['left'])} / {_f(d['right'])} | {_f(r['ild_correlation'], '.2f')} | "
            f"{r['stft_model']:.3f} / {r['stft_mono']:.3f} | {_f(r['clips_beating_mono'])} | "
            f"{_f(r['centred_mean_abs_ild_db'], '.2f')} "
            f"({r['centred_clips']} clips) | {_f(r['mirror_correlation'], '.2f')} |"
        )
    print(f"segments decided: {next(iter(results.values()))['segments']}; wall {time.perf_counter() - started:.0f} s")
    _print_breakdown(results)
    if centred is not None:
        print(f"\n{args.centred} more scenes with the sound straight ahead (seed {args.seed + 1}): mean |ILD| dB")
        for model, r in results.items():
            parts = ", ".join(f"{k} {v:.2f} ({n})" for k, (v, n) in r["centred_scenes"].items())
            model_stft, mono_stft = r["centred_scenes_stft_model_mono"]
            print(f"{model}: {parts}, stft model / mono {model_stft:.3f} / {mono_stft:.3f}")
    for key, (_, title) in extra.items():
        _print_set(results, key, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
