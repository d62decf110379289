"""A real-looking audio-visual scene: photographed objects over real footage or photographs, real recordings,
a measured head and a room.

- Picture: a background photograph seen through a slowly panning/zooming camera, or real footage; zero to two
  sounding objects (photographed cut-outs) moving or still, and up to three objects that make no sound.
- Sound: each sounding object plays its own recording (when the stamp has one), a voice, an instrument or an
  everyday sound; it is rendered through the head's HRIRs at the azimuth of the object's image position, with
  early reflections and a diffuse tail when the scene has a room.
- A scene with no sounding object shows its sound straight ahead (azimuth 0): a sound nobody sees stays centred.
- ``paired``: every sound belongs to what makes it — a sounding object is one whose stamp has its own recording,
  and it plays only that; the silent objects are any others; a scene with no sounding object plays a sound none of
  its pictured objects would make. Only then can a model learn which of several objects sounds from what it hears
  (without it, most objects play a random voice, instrument or everyday sound, and the picture alone decides).
- ``card_share``: the share of objects shown as a photo card instead of a cut-out — an opaque rectangle, a
  photograph of the object on its own background (the stamp over a patch of another photograph), as an object
  photographed in a scene and pasted whole looks.
- Frames are stored as JPEG at a random quality (compression artefacts).

``boxes`` give each tick's sounding-object boxes (x0, y0, x1, y1 in the 480 x 240 frame): the objectness
target of training.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from ccstereo.synth.hrtf import HRIRSet
from ccstereo.synth.real_assets import Assets, Stamp, picture_name
from ccstereo.synth.scene import (
    CENTRED_SHARE,
    FOOTAGE_SHARE,
    FPS,
    HEIGHT,
    MAX_SILENT,
    WIDTH,
    azimuth_deg,
    binauralize,
)
from ccstereo.synth.sources import load_recording


@dataclass(frozen=True)
class Mix:
    """What a set of real scenes holds: ``centred_share`` of them have no sounding object (the rest: one object
    63 : two objects 25); each shows 0 to ``max_silent`` objects that make no sound (so ``centred_share=1``,
    ``max_silent=0``: the picture alone, the sound straight ahead); ``paired``: every sound belongs to what makes it
    (module docstring); ``card_share``: objects shown as photo cards (module docstring); ``footage_share``: scenes
    over footage (when the assets have any), the rest over a photograph; ``mosaic_share``: of the scenes over a
    photograph, those over a mosaic of patches of several (``_mosaic``)."""

    centred_share: float = CENTRED_SHARE
    paired: bool = False
    max_silent: int = MAX_SILENT
    card_share: float = 0.0
    footage_share: float = FOOTAGE_SHARE
    mosaic_share: float = 0.0


@dataclass
class Placed:
    image: object  # PIL RGBA image, already scaled
    y: int
    x_track: np.ndarray  # centre x per tick
    sounding: bool
    stamp: Stamp
    card: bool = False  # shown on a photo card, not cut out


@functools.lru_cache(maxsize=512)
def _stamp_image(path: Path):
    from PIL import Image

    image = Image.open(path).convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox()
    return image.crop(box) if box else image


def _looped(rng: np.random.Generator, paths: list[Path], n: int, rate_hz: int) -> np.ndarray:
    """Return ``n`` samples: recordings from ``paths`` one after another with short gaps."""
    out = np.zeros(n, np.float32)
    pos = int(rng.integers(0, rate_hz // 3))
    while pos < n:
        clip = load_recording(paths[int(rng.integers(len(paths)))], rate_hz)
        seg = clip[: n - pos] * rng.uniform(0.5, 1.0)
        out[pos : pos + len(seg)] += seg
        pos += len(seg) + int(rng.integers(rate_hz // 20, rate_hz // 2))
    return out


@functools.lru_cache(maxsize=8192)
def audible(path: Path) -> bool:
    """Whether a recording carries any sound: a few packaged ones decode to silence (tuxpaint's iguana, wombat,
    giraffe and nandou), and a sounding object must not play one."""
    return bool(np.max(np.abs(load_recording(path, 16000)), initial=0.0) > 0.0)


def _draw(rng: np.random.Generator, pool: list[Path] | tuple[Path, ...]) -> Path:
    """One recording of ``pool`` at random; a silent one is drawn again, so only a scene that drew one changes."""
    for _ in range(64):
        path = pool[int(rng.integers(len(pool)))]
        if audible(path):
            return path
    raise ValueError(f"no audible recording among {len(pool)} (first: {pool[0]})")


def object_sound(rng: np.random.Generator, stamp: Stamp | None, assets: Assets, n: int, rate_hz: int) -> np.ndarray:
    """Return one object's sound: its own recording, else a voice, an instrument or an everyday sound."""
    if stamp is not None and stamp.sound is not None and audible(stamp.sound) and rng.random() < 0.7:
        return _looped(rng, [stamp.sound], n, rate_hz)
    kind = rng.choice(["voice", "instrument", "everyday"], p=[0.45, 0.35, 0.2])
    if kind == "voice" and (stamp is None or not stamp.voices or rng.random() < 0.5):
        return _looped(rng, [_draw(rng, assets.voices)], n, rate_hz)
    if kind == "voice":
        return _looped(rng, list(stamp.voices), n, rate_hz)
    pool = list(assets.instruments if kind == "instrument" else assets.sounds)
    return _looped(rng, [_draw(rng, pool)], n, rate_hz)


def _mosaic(rng: np.random.Generator, first: Path, backgrounds: tuple[Path, ...]):
    """A busy picture: 2 x 2 to 3 x 3 tiles split at random, each a random patch of a random photograph (the first
    one of ``first``) — hard edges and unrelated content everywhere, none of which makes a sound."""
    from PIL import Image

    cols, rows = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    width, height = 1440, 720
    xs = np.sort(np.concatenate([[0, width], rng.uniform(0.15, 0.85, cols - 1) * width])).astype(int)
    ys = np.sort(np.concatenate([[0, height], rng.uniform(0.15, 0.85, rows - 1) * height])).astype(int)
    mosaic = Image.new("RGB", (width, height))
    for r in range(rows):
        for c in range(cols):
            w, h = int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r])
            path = first if r == c == 0 else backgrounds[int(rng.integers(len(backgrounds)))]
            photo = _photo(path)
            zoom = rng.uniform(0.3, 1.0)
            pw = min(photo.width * zoom, photo.height * zoom * w / max(h, 1))
            ph = pw * h / max(w, 1)
            x0, y0 = rng.uniform(0, photo.width - pw), rng.uniform(0, photo.height - ph)
            tile = photo.resize((max(w, 1), max(h, 1)), Image.Resampling.BILINEAR, box=(x0, y0, x0 + pw, y0 + ph))
            mosaic.paste(tile, (int(xs[c]), int(ys[r])))
    return mosaic


def _photo_frames(rng: np.random.Generator, path: Path, ticks: int, picture=None) -> list:
    """A photograph (``picture``, else the file ``path``) seen through a camera that pans and zooms slowly (one PIL
    image per tick)."""
    from PIL import Image

    photo = picture if picture is not None else Image.open(path).convert("RGB")
    scale = max(WIDTH / photo.width, HEIGHT / photo.height) * rng.uniform(1.15, 1.6)
    photo = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1), Image.Resampling.BILINEAR)
    zoom = rng.uniform(0.85, 1.0, size=2)  # view size as a share of the photo, start and end
    centre = rng.uniform(0.35, 0.65, size=(2, 2))
    frames = []
    for k in range(ticks):
        a = k / max(ticks - 1, 1)
        z = zoom[0] + (zoom[1] - zoom[0]) * a
        w, h = photo.width * z, photo.width * z * HEIGHT / WIDTH
        h = min(h, photo.height)
        cx = (centre[0, 0] + (centre[1, 0] - centre[0, 0]) * a) * photo.width
        cy = (centre[0, 1] + (centre[1, 1] - centre[0, 1]) * a) * photo.height
        x0, y0 = np.clip(cx - w / 2, 0, photo.width - w), np.clip(cy - h / 2, 0, photo.height - h)
        frames.append(photo.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h)))
    return frames


@functools.lru_cache(maxsize=4)
def _decoded(path: Path) -> tuple[list, float]:
    """Every frame of a video, fitted to the scene size, and its frame rate (decoded once per process)."""
    import av
    from PIL import Image, ImageOps

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [
            ImageOps.fit(f.to_image(), (WIDTH, HEIGHT), Image.Resampling.BILINEAR) for f in container.decode(stream)
        ]
        return frames, float(stream.average_rate or 30)


def _footage_frames(rng: np.random.Generator, path: Path, ticks: int) -> list:
    """``ticks`` frames of real footage at 10 fps, from a random start, looped, mirrored or not."""
    from PIL import ImageOps

    decoded, rate = _decoded(path)
    step = rate / FPS
    start = rng.uniform(0, max(len(decoded) - 1, 1))
    flip = rng.random() < 0.5
    frames = []
    for k in range(ticks):
        image = decoded[int(start + k * step) % len(decoded)]
        frames.append(ImageOps.mirror(image) if flip else image)
    return frames


def _track(rng: np.random.Generator, ticks: int, half: float) -> np.ndarray:
    lo, hi = half, WIDTH - half
    t = np.arange(ticks) / FPS
    mode = rng.random()
    if mode < 0.35:  # still
        return np.full(ticks, rng.uniform(lo, hi))
    if mode < 0.7:  # sweep between two points
        a, b = rng.uniform(lo, hi, size=2)
        return a + (b - a) * t / max(t[-1], 1e-9)
    centre = rng.uniform(lo, hi)
    amp = rng.uniform(0, min(centre - lo, hi - centre))
    return centre + amp * np.sin(2 * np.pi * t / rng.uniform(2.0, 8.0) + rng.uniform(0, 2 * np.pi))


def _card(rng: np.random.Generator, stamp: Stamp, photo_path: Path):
    """The stamp photographed on its own background: an opaque RGBA rectangle, a patch of ``photo_path`` (a random
    region, aspect 0.7-1.5) with the stamp over its middle at 55-90 % of its size. A card that comes out flat (a
    white stamp on a white patch) is drawn again: its object would be invisible."""
    from PIL import Image

    stamp_image = _stamp_image(stamp.image)
    photo = _photo(photo_path)
    for _ in range(8):
        aspect = float(np.clip(stamp_image.width / stamp_image.height * rng.uniform(0.8, 1.25), 0.7, 1.5))
        width, height = int(256 * aspect), 256
        h = photo.height * rng.uniform(0.15, 0.6)  # the patch's height as a share of the photograph's
        w = min(h * aspect, photo.width)
        h = w / aspect
        x0, y0 = rng.uniform(0, photo.width - w), rng.uniform(0, photo.height - h)
        card = photo.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h)).convert("RGBA")
        fill = rng.uniform(0.55, 0.9)
        scale = min(fill * width / stamp_image.width, fill * height / stamp_image.height)
        obj = stamp_image.resize((max(4, int(stamp_image.width * scale)), max(4, int(stamp_image.height * scale))))
        card.alpha_composite(obj, ((width - obj.width) // 2, (height - obj.height) // 2))
        if np.asarray(card.convert("L")).std() > 8:
            break
    return card


@functools.lru_cache(maxsize=16)
def _photo(path: Path):
    from PIL import Image

    photo = Image.open(path).convert("RGB")
    photo.thumbnail((1024, 1024))
    return photo


def _place(rng: np.random.Generator, stamp: Stamp, ticks: int, sounding: bool, card_from: Path | None = None) -> Placed:
    """Place one object: the stamp's cut-out, or with ``card_from`` the stamp on a card of that photograph."""
    from PIL import ImageOps

    image = _stamp_image(stamp.image) if card_from is None else _card(rng, stamp, card_from)
    height = rng.uniform(55, 150) if sounding else rng.uniform(35, 130)
    scale = min(height / image.height, 200 / image.width)
    image = image.resize((max(4, int(image.width * scale)), max(4, int(image.height * scale))))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    y = int(rng.integers(image.height // 2, max(image.height // 2 + 1, HEIGHT - image.height // 2)))
    return Placed(image, y, _track(rng, ticks, image.width / 2), sounding, stamp, card_from is not None)


def _box(p: Placed, k: int) -> tuple[int, int, int, int]:
    x0, y0 = int(round(p.x_track[k] - p.image.width / 2)), int(p.y - p.image.height // 2)
    return x0, y0, x0 + p.image.width, y0 + p.image.height


def _room(rng: np.random.Generator, dry: np.ndarray, azimuths: np.ndarray, hrirs: HRIRSet) -> np.ndarray:
    """Direct sound plus early reflections and a decaying diffuse tail, for a listener midway between the side
    walls: reflections come in pairs, one from each side at the same angle, strength and delay,
    so they widen the sound without moving it — a source straight ahead stays centred."""
    rate = hrirs.rate_hz
    out = binauralize(dry, azimuths, hrirs)
    for _ in range(int(rng.integers(1, 4))):
        delay = rng.uniform(0.002, 0.025)
        offset, gain = rng.uniform(30, 120), rng.uniform(0.1, 0.35)
        for sign in (-1.0, 1.0):
            d = int(delay * rate)
            shifted = np.concatenate([np.zeros(d, np.float32), dry[: len(dry) - d]])
            az = (sign * (np.abs(azimuths) + offset) + 180.0) % 360.0 - 180.0
            out += gain * binauralize(shifted, az, hrirs)
    # diffuse tail: weaker than the direct sound, and largely common to both ears (two ears 17 cm apart hear a
    # diffuse field coherently at low frequencies); independent tails per ear would move narrow-band sounds by
    # several dB at random
    t60 = rng.uniform(0.2, 0.9)
    n = int(t60 * rate)
    decay = np.exp(-6.9 * np.arange(n) / n) * rng.uniform(0.003, 0.012)
    decay[: int(0.02 * rate)] = 0.0
    coherence = rng.uniform(0.7, 0.9)
    common = rng.standard_normal(n)
    for ear in range(2):
        tail = (coherence * common + np.sqrt(1 - coherence**2) * rng.standard_normal(n)) * decay
        out[ear] += fftconvolve(dry, tail)[: len(dry)].astype(np.float32)
    return out


def _paste(frames: list, placed: list[Placed]) -> list[np.ndarray]:
    out = []
    for k, frame in enumerate(frames):
        image = frame.copy()
        for p in placed:
            x0, y0, _, _ = _box(p, k)
            image.paste(p.image, (x0, y0), p.image)
        out.append(np.asarray(image))
    return out


def _paired_picks(rng: np.random.Generator, assets: Assets, count: int, silent: int) -> list[int]:
    """Stamp indices: ``count`` sounding ones among the stamps with their own recording, then ``silent`` others."""
    voiced = [i for i, stamp in enumerate(assets.stamps) if stamp.sound is not None and audible(stamp.sound)]
    sounding = [voiced[int(i)] for i in rng.choice(len(voiced), size=count, replace=False)]
    others = [i for i in range(len(assets.stamps)) if i not in sounding]
    return sounding + [others[int(i)] for i in rng.choice(len(others), size=silent, replace=False)]


def _card_photo(rng: np.random.Generator, mix: Mix, assets: Assets, background: Path) -> Path | None:
    """The photograph an object's card is cut from, or None for a cut-out (no draw at all when no object is a card,
    so the scenes of a mix without cards stay as they were)."""
    if mix.card_share <= 0.0 or rng.random() >= mix.card_share:
        return None
    others = [p for p in assets.backgrounds if p != background] or list(assets.backgrounds)
    return others[int(rng.integers(len(others)))]


def _unseen_sound(rng: np.random.Generator, assets: Assets, placed: list[Placed]) -> Path:
    """A sound none of the pictured objects would make: a voice or an instrument, or the recording of a stamp that
    is not in the picture."""
    shown = {p.stamp.sound for p in placed}
    pool = [*assets.voices, *assets.instruments, *(s for s in assets.sounds if s not in shown)]
    return _draw(rng, pool)


def _background(rng: np.random.Generator, assets: Assets, mix: Mix, ticks: int) -> tuple[Path, list, str]:
    """The scene's background: (its file, one frame per tick, "footage" | "photo" | "mosaic")."""
    if assets.footage and rng.random() < mix.footage_share:
        background = assets.footage[int(rng.integers(len(assets.footage)))]
        return background, _footage_frames(rng, background, ticks), "footage"
    background = assets.backgrounds[int(rng.integers(len(assets.backgrounds)))]
    if mix.mosaic_share > 0.0 and rng.random() < mix.mosaic_share:  # no draw at all without mosaics
        return background, _photo_frames(rng, background, ticks, _mosaic(rng, background, assets.backgrounds)), "mosaic"
    return background, _photo_frames(rng, background, ticks), "photo"


def render_real_scene(
    rng: np.random.Generator,
    seconds: float,
    hrirs: HRIRSet,
    assets: Assets,
    mix: Mix = Mix(),
) -> tuple[np.ndarray, list[np.ndarray], dict]:
    """Return (binaural [2, n] at the HRIR rate, RGB frames at 10 fps, description with per-tick boxes) of one
    scene drawn from ``mix``."""
    rate, n = hrirs.rate_hz, int(seconds * hrirs.rate_hz)
    ticks = int(np.ceil(seconds * FPS)) + 1
    background, frames, seen = _background(rng, assets, mix, ticks)
    rest = 1.0 - mix.centred_share
    count = int(rng.choice([0, 1, 2], p=[mix.centred_share, 0.63 * rest / 0.88, 0.25 * rest / 0.88]))
    silent = int(rng.integers(0, mix.max_silent + 1))
    paired = mix.paired
    if paired:
        picks = _paired_picks(rng, assets, count, silent)
    else:
        picks = list(rng.choice(len(assets.stamps), size=count + silent, replace=False))
    placed = [
        _place(rng, assets.stamps[int(i)], ticks, j < count, _card_photo(rng, mix, assets, background))
        for j, i in enumerate(picks)
    ]
    rng.shuffle(placed)  # sounding objects are not always drawn on top
    blocks = int(np.ceil(n / (0.1 * rate))) + 2
    ticks_at = np.minimum(np.arange(blocks), ticks - 1)
    room = rng.random() < 0.6
    audio = np.zeros((2, n), np.float32)
    sources = [p for p in placed if p.sounding] or [None]
    played: list[Path] = []  # paired: the recording each source plays
    for p in sources:
        az = azimuth_deg(p.x_track[ticks_at]) if p is not None else np.zeros(blocks)
        if paired:
            own = p.stamp.sound if p is not None else None
            played.append(own if own is not None else _unseen_sound(rng, assets, placed))
            dry = _looped(rng, [played[-1]], n, rate)
        else:
            dry = object_sound(rng, p.stamp if p else None, assets, n, rate)
        dry = dry * rng.uniform(0.5, 1.0)
        audio += _room(rng, dry, az, hrirs) if room else binauralize(dry, az, hrirs)
    audio *= 0.5 / max(float(np.max(np.abs(audio))), 1e-9)
    info = {
        "kind": "real",
        "background": picture_name(background),
        "footage": seen == "footage",
        "mosaic": seen == "mosaic",
        "objects": [
            {
                "stamp": p.stamp.name,
                "sounding": p.sounding,
                "card": p.card,
                "azimuth_start_deg": float(azimuth_deg(p.x_track[0])),
                "azimuth_end_deg": float(azimuth_deg(p.x_track[-1])),
            }
            for p in placed
        ],
        "centred": count == 0,
        "room": room,
        "hrtf": hrirs.name,
        "jpeg_quality": int(rng.integers(35, 96)),
        "boxes": [[list(_box(p, k)) for p in placed if p.sounding] for k in range(ticks)],
    }
    if paired:
        info["paired_sounds"] = True
        info["sounds"] = [path.name for path in played]
    return audio, _paste(frames, placed), info
