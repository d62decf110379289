"""Write synthetic scenes in the FAIR-Play layout, plus an mp4 per clip and the split lists.

Layout: ``binaural_audios/<id>.wav`` (16 kHz stereo), ``frames/<id>.mp4/000001.png ...`` (10 fps, 480x240),
``<id>.mp4`` (video + binaural audio), ``splits/split{1..5}/{train,val,test}.txt`` (5-split style, one clip
file name per line) and ``splits_h5/split{1..10}/{train,val,test}.h5`` (10-split style: dataset ``audio`` of
paths to the binaural wavs), and ``metadata.json`` describing every scene.
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from ccstereo.synth.hrtf import load_hrtf
from ccstereo.synth.scene import CENTRED_SHARE, FOOTAGE_SHARE, FPS, MAX_SILENT, render_scene


def clip_id(index: int) -> str:
    return f"{index + 1:06d}"


def write_clip_mp4(
    path: Path, frames: list[np.ndarray], audio: np.ndarray, rate_hz: int, seconds: float, crf: int = 18
) -> None:
    """Write 10 fps RGB frames as H.264 and ``audio`` [C, n] (C = 1 or 2) as AAC into an mp4."""
    import av

    layout = "mono" if audio.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.options = {"preset": "veryfast", "crf": str(crf)}
        sound = out.add_stream("aac", rate=rate_hz, layout=layout)
        for i, image in enumerate(frames[: int(round(seconds * FPS))]):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        for start in range(0, audio.shape[1], 1024):
            chunk = np.ascontiguousarray(audio[:, start : start + 1024], np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate_hz, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)


def write_splits(out: Path, ids: list[str], seed: int) -> None:
    import h5py

    rng = np.random.default_rng([seed, 7])
    for kind, count in (("splits", 5), ("splits_h5", 10)):
        for split in range(1, count + 1):
            order = list(rng.permutation(ids))
            n_test = max(1, len(ids) // 10)
            parts = {"test": order[:n_test], "val": order[n_test : 2 * n_test], "train": order[2 * n_test :]}
            folder = out / kind / f"split{split}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, members in parts.items():
                if kind == "splits":
                    (folder / f"{name}.txt").write_text("".join(f"{m}.mp4\n" for m in sorted(members)))
                else:
                    paths = [str(out / "binaural_audios" / f"{m}.wav").encode() for m in sorted(members)]
                    with h5py.File(folder / f"{name}.h5", "w") as h5:
                        h5.create_dataset("audio", data=np.array(paths, dtype="S"))


def _refuse_real_only(**given: bool) -> None:
    """Shapes scenes have no photographed objects, footage or recordings: an option that only real kinds read is
    refused rather than silently ignored (``given``: option name -> whether it differs from its default)."""
    named = [name.replace("_", "-") for name, differs in given.items() if differs]
    if named:
        options = ", ".join(f"--{name}" for name in named)
        raise ValueError(f"{options}: only real scenes (--kind real-train or real-eval) use this; shapes scenes do not")


def write_dataset(
    out: Path,
    clips: int,
    seconds: float,
    seed: int,
    hrtf: str = "kemar",
    mp4: bool = True,
    rate_hz: int = 16000,
    log=print,
    kind: str = "shapes",
    centred_share: float = CENTRED_SHARE,
    paired_sounds: bool = False,
    max_silent: int = MAX_SILENT,
    card_share: float = 0.0,
    footage: Path | None = None,
    footage_share: float = FOOTAGE_SHARE,
    mosaic_share: float = 0.0,
) -> Path:
    """Render ``clips`` scenes of ``seconds`` into ``out``; deterministic for a given seed.

    ``hrtf`` names one head or several separated by commas (each clip draws one). ``kind`` is ``shapes``
    (coloured shapes over drawn backgrounds) or ``real-train`` / ``real-eval`` (photographed objects over real
    pictures and footage, real recordings, rooms: ``ccstereo.synth.real_scene``, from that side's assets).
    ``centred_share`` is the share of real scenes with no sounding object in the picture (sound straight ahead);
    ``paired_sounds``: in real scenes every sound belongs to what makes it (``real_scene``'s ``paired``);
    ``max_silent``: real scenes show 0 to this many objects that make no sound; ``card_share``: the share of objects
    shown as a photo card (the object on its own photographed background, an opaque rectangle) instead of a cut-out;
    ``footage``: a video to use as the only footage (instead of the side's clips; a name of
    ``real_assets.EXTRA_FOOTAGE`` alone: that training clip, fetched once), behind ``footage_share`` of the scenes
    (the rest: a photograph); ``mosaic_share``: of the scenes over a photograph, those over a mosaic of patches of
    several (a busy picture with hard edges, none of which sounds).
    """
    import soundfile as sf
    from PIL import Image

    heads = [load_hrtf(name.strip(), rate_hz) for name in hrtf.split(",")]
    assets = None
    if kind in ("real-train", "real-eval"):
        from ccstereo.synth.real_assets import footage_clip, load_assets

        assets = load_assets(kind.removeprefix("real-"))
        if footage is not None:
            assets = dataclasses.replace(assets, footage=(footage_clip(footage, kind.removeprefix("real-")),))
    elif kind != "shapes":
        raise ValueError(f"unknown scene kind {kind!r}: shapes, real-train or real-eval")
    else:
        _refuse_real_only(
            centred_share=centred_share != CENTRED_SHARE,
            paired_sounds=paired_sounds,
            max_silent=max_silent != MAX_SILENT,
            card_share=bool(card_share),
            footage=footage is not None,
            footage_share=footage_share != FOOTAGE_SHARE,
            mosaic_share=bool(mosaic_share),
        )
    if not 0.0 <= centred_share <= 1.0:
        raise ValueError(f"the centred share is a fraction from 0 to 1, not {centred_share}")
    if not 0 <= max_silent <= MAX_SILENT:
        raise ValueError(f"a scene shows 0 to {MAX_SILENT} silent objects, not {max_silent}")
    for name, share in (("card", card_share), ("footage", footage_share), ("mosaic", mosaic_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the {name} share is a fraction from 0 to 1, not {share}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "binaural_audios").mkdir(exist_ok=True)
    meta = {"seed": seed, "seconds": seconds, "hrtf": hrtf, "kind": kind, "rate_hz": rate_hz, "fps": FPS}
    if assets is not None:
        from ccstereo.synth.real_scene import Mix, render_real_scene

        mix = Mix(centred_share, paired_sounds, max_silent, card_share, footage_share, mosaic_share)
        if centred_share != CENTRED_SHARE:  # only what differs from the default mix is recorded
            meta["centred_share"] = centred_share
        if paired_sounds:
            meta["paired_sounds"] = True
        if max_silent != MAX_SILENT:
            meta["max_silent"] = max_silent
        if card_share:
            meta["card_share"] = card_share
        if mosaic_share:
            meta["mosaic_share"] = mosaic_share
        if footage is not None or footage_share != FOOTAGE_SHARE:
            meta["footage"] = {"clip": None if footage is None else footage.name, "share": footage_share}
    meta["clips"] = {}
    ids = []
    for i in range(clips):
        cid = clip_id(i)
        rng = np.random.default_rng([seed, i])
        hrirs = heads[int(rng.integers(len(heads)))] if len(heads) > 1 else heads[0]
        if assets is None:
            audio, frames, info = render_scene(rng, seconds, hrirs)
        else:
            audio, frames, info = render_real_scene(rng, seconds, hrirs, assets, mix)
        sf.write(out / "binaural_audios" / f"{cid}.wav", audio.T, rate_hz, subtype="FLOAT")
        frame_dir = out / "frames" / f"{cid}.mp4"
        frame_dir.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(frames):
            if "jpeg_quality" in info:  # compression artefacts are part of a real-looking scene
                Image.fromarray(image).save(frame_dir / f"{k + 1:06d}.jpg", quality=info["jpeg_quality"])
            else:
                Image.fromarray(image).save(frame_dir / f"{k + 1:06d}.png", compress_level=1)
        if mp4:
            write_clip_mp4(out / f"{cid}.mp4", frames, audio, rate_hz, seconds)
        meta["clips"][cid] = info
        ids.append(cid)
        log(f"clip {i + 1}/{clips}")
    write_splits(out, ids, seed)
    (out / "metadata.json").write_text(json.dumps(meta, indent=1))
    return out
