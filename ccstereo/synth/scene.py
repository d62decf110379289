"""One synthetic audio-visual scene: sounding objects moving over a varied background, binauralised with
measured HRIRs at the azimuth given by each object's horizontal image position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from ccstereo.synth.hrtf import HRIRSet
from ccstereo.synth.sources import source_signal

WIDTH, HEIGHT, FPS = 480, 240, 10
CENTRED_SHARE = 0.12  # real scenes with no sounding object in the picture (sound straight ahead)
MAX_SILENT = 3  # real scenes show 0 to this many objects that make no sound
FOOTAGE_SHARE = 0.35  # real scenes over footage (the rest over a photograph)
FOV_DEG = 90.0  # horizontal field of view: the image's left edge is +45 deg (left), the right edge -45 deg
BLOCK_S = 0.1  # HRIR update period; consecutive blocks are crossfaded with Hann windows


@dataclass
class SceneObject:
    shape: str
    colour: tuple[int, int, int]
    size: int
    y: int
    x_track: np.ndarray  # centre x per frame tick (pixels)


def azimuth_deg(x: np.ndarray | float, width: int = WIDTH, fov_deg: float = FOV_DEG) -> np.ndarray:
    """Return the azimuth (deg, + = left) of image column ``x``."""
    return (0.5 - np.asarray(x, dtype=float) / width) * fov_deg


def _track(rng: np.random.Generator, ticks: int, size: int) -> np.ndarray:
    lo, hi = size, WIDTH - size
    t = np.arange(ticks) / FPS
    if rng.random() < 0.5:  # sweep between two points
        a, b = rng.uniform(lo, hi, size=2)
        return a + (b - a) * t / max(t[-1], 1e-9)
    centre = rng.uniform(lo, hi)
    amp = rng.uniform(0, min(centre - lo, hi - centre))
    return centre + amp * np.sin(2 * np.pi * t / rng.uniform(2.0, 8.0) + rng.uniform(0, 2 * np.pi))


def make_objects(rng: np.random.Generator, ticks: int) -> list[SceneObject]:
    count = 2 if rng.random() < 0.3 else 1
    objects = []
    for _ in range(count):
        size = int(rng.integers(28, 48))
        colour = tuple(
            int(c)
            for c in rng.permutation(
                [int(rng.integers(200, 256)), int(rng.integers(0, 90)), int(rng.integers(90, 256))]
            )
        )
        objects.append(
            SceneObject(
                str(rng.choice(["disc", "square", "diamond"])),
                colour,
                size,
                int(rng.integers(50, HEIGHT - 50)),
                _track(rng, ticks, size),
            )
        )
    return objects


def _background(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    c1, c2 = rng.integers(0, 200, size=(2, 3))
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    if kind == 0:  # gradient
        f = (xx / WIDTH * rng.uniform(-1, 1) + yy / HEIGHT * rng.uniform(-1, 1)) % 1.0
    elif kind == 1:  # blurred noise texture
        small = rng.random((HEIGHT // 20 + 2, WIDTH // 20 + 2))
        f = np.kron(small, np.ones((20, 20)))[:HEIGHT, :WIDTH]
    else:  # stripes
        f = (np.sin(xx / rng.uniform(6, 30) + yy / rng.uniform(6, 60)) + 1) / 2
    return (c1[None, None] * (1 - f[..., None]) + c2[None, None] * f[..., None]).astype(np.uint8)


def _distractors(rng: np.random.Generator, draw) -> None:
    for _ in range(int(rng.integers(0, 4))):
        x, y = int(rng.integers(0, WIDTH - 60)), int(rng.integers(0, HEIGHT - 60))
        w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        grey = int(rng.integers(60, 180))
        box = (x, y, x + w, y + h)
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, outline=(grey, grey, grey), width=3)


def render_frames(rng: np.random.Generator, objects: list[SceneObject], ticks: int) -> list[np.ndarray]:
    """Return RGB uint8 [240, 480, 3] frames, one per tick."""
    from PIL import Image, ImageDraw

    base = Image.fromarray(_background(rng))
    _distractors(rng, ImageDraw.Draw(base))
    frames = []
    for k in range(ticks):
        image = base.copy()
        draw = ImageDraw.Draw(image)
        for obj in objects:
            x, y, r = float(obj.x_track[k]), obj.y, obj.size / 2
            if obj.shape == "disc":
                draw.ellipse((x - r, y - r, x + r, y + r), fill=obj.colour)
            elif obj.shape == "square":
                draw.rectangle((x - r, y - r, x + r, y + r), fill=obj.colour)
            else:
                draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=obj.colour)
        frames.append(np.asarray(image))
    return frames


def binauralize(signal: np.ndarray, azimuths: np.ndarray, hrirs: HRIRSet) -> np.ndarray:
    """Return [2, n]: ``signal`` through time-varying HRIRs, one azimuth per block, Hann-crossfaded."""
    n, block = len(signal), int(BLOCK_S * hrirs.rate_hz)
    window = np.hanning(2 * block + 1)[:-1]  # periodic Hann: 50 %-overlapped copies sum to one
    padded = np.concatenate([np.zeros(block), signal, np.zeros(2 * block)])
    taps = hrirs.hrirs.shape[-1]
    out = np.zeros((2, len(padded) + taps))
    for b in range(n // block + 2):
        seg = padded[b * block : b * block + 2 * block] * window[: len(padded[b * block : b * block + 2 * block])]
        az = azimuths[min(b, len(azimuths) - 1)]
        h = hrirs.nearest(float(az))
        for ear in range(2):
            y = fftconvolve(seg, h[ear])
            out[ear, b * block : b * block + len(y)] += y
    return out[:, block : block + n].astype(np.float32)


def _reverb(rng: np.random.Generator, x: np.ndarray, rate_hz: int) -> np.ndarray:
    t60 = rng.uniform(0.2, 0.6)
    n = int(t60 * rate_hz)
    decay = np.exp(-6.9 * np.arange(n) / n)
    out = x.copy()
    for ear in range(2):
        tail = rng.standard_normal(n) * decay * 0.02
        out[ear] += fftconvolve(x[ear], tail)[: x.shape[1]].astype(np.float32)
    return out


def render_scene(rng: np.random.Generator, seconds: float, hrirs: HRIRSet) -> tuple[np.ndarray, list[np.ndarray], dict]:
    """Return (binaural [2, n] at the HRIR rate, frames at 10 fps, description)."""
    rate = hrirs.rate_hz
    n = int(seconds * rate)
    ticks = int(np.ceil(seconds * FPS)) + 1
    objects = make_objects(rng, ticks)
    frames = render_frames(rng, objects, ticks)
    audio = np.zeros((2, n), np.float32)
    for obj in objects:
        blocks = int(np.ceil(n / (BLOCK_S * rate))) + 2
        ticks_at = np.minimum(np.arange(blocks), ticks - 1)
        audio += binauralize(source_signal(rng, n, rate), azimuth_deg(obj.x_track[ticks_at]), hrirs)
    reverb = rng.random() < 0.3
    if reverb:
        audio = _reverb(rng, audio, rate)
    audio *= 0.5 / max(float(np.max(np.abs(audio))), 1e-9)
    info = {
        "objects": [
            {
                "shape": o.shape,
                "colour": o.colour,
                "size": o.size,
                "y": o.y,
                "azimuth_start_deg": float(azimuth_deg(o.x_track[0])),
                "azimuth_end_deg": float(azimuth_deg(o.x_track[-1])),
            }
            for o in objects
        ],
        "reverb": reverb,
        "hrtf": hrirs.name,
        "boxes": [  # per tick, every object's box (all of them sound): the objectness target of training
            [
                [int(o.x_track[k] - o.size / 2), o.y - o.size // 2, int(o.x_track[k] + o.size / 2), o.y + o.size // 2]
                for o in objects
            ]
            for k in range(ticks)
        ],
        "fov_deg": FOV_DEG,
    }
    return audio, frames, info
