"""Training data in the FAIR-Play layout: split lists, clips in memory, random segments as in the paper.

Layout: ``binaural_audios/<id>.wav`` and ``frames/<id>.mp4/000001.(png|jpg) ...`` at 10 fps. Split lists are the
5-split text files (one ``<id>.mp4`` per line) or the 10-split h5 files (dataset ``audio`` of wav paths).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.errors import CCStereoError


class DatasetError(CCStereoError, ValueError):
    """A dataset folder or split list that cannot be read."""


def read_split(path: Path) -> list[str]:
    """Return the clip ids listed in a 5-split .txt or 10-split .h5 file."""
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as h5:
            if "audio" not in h5:
                raise DatasetError(f"{path}: no 'audio' dataset")
            entries = [e.decode() if isinstance(e, bytes) else str(e) for e in h5["audio"][()]]
    elif path.suffix == ".txt":
        entries = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        raise DatasetError(f"{path}: split lists are .txt (5-split) or .h5 (10-split)")
    ids = [Path(e).name.split(".")[0] for e in entries]
    if not ids:
        raise DatasetError(f"{path}: empty split list")
    return ids


class EncodedFrames:
    """A clip's frames kept as their image files' bytes and decoded when indexed (``frames[ticks, ys, xs]``, as the
    sampler asks): 80 decoded 480x240 frames take 28 MB per 8 s clip, their JPEG files about 2 MB, so a training
    set ten times larger fits in memory; a batch decodes its 32 frames (a few ms against a step's second)."""

    def __init__(self, files: list[Path], size: tuple[int, int]) -> None:
        self.data = [f.read_bytes() for f in files]
        self.size = size

    def __len__(self) -> int:
        return len(self.data)

    def decode(self, k: int) -> np.ndarray:
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(self.data[k])).convert("RGB")
        return np.asarray(image if image.size == self.size else image.resize(self.size), dtype=np.uint8)

    def __getitem__(self, key) -> np.ndarray:
        ticks, *rest = key if isinstance(key, tuple) else (key,)
        if isinstance(ticks, (int, np.integer)):
            return self.decode(int(ticks))[tuple(rest)]
        picked = range(len(self))[ticks] if isinstance(ticks, slice) else ticks
        return np.stack([self.decode(int(k)) for k in picked])[(slice(None), *rest)]


@dataclass
class Clip:
    clip_id: str
    audio: np.ndarray  # [2, N] float32 at the model rate
    frames: np.ndarray | EncodedFrames  # [T, resize_h, resize_w, 3] uint8, frame k at time k / fps
    boxes: list | None = None  # per frame, the sounding objects' [x0, y0, x1, y1] (ccs-synth real scenes)


@functools.lru_cache(maxsize=4)
def _scene_metadata(meta: Path, _mtime_ns: int) -> dict:
    """``metadata.json`` parsed once per dataset (it holds every clip's boxes: megabytes for a large set, which
    parsing again for each clip made the load quadratic)."""
    import json

    return json.loads(meta.read_text()).get("clips", {})


def _scene_boxes(root: Path, clip_id: str, frame_size: tuple[int, int], size: tuple[int, int]) -> list | None:
    """Return the clip's per-frame sounding-object boxes from ``metadata.json``, scaled to ``size``, if any."""
    meta = root / "metadata.json"
    if not meta.is_file():
        return None
    info = _scene_metadata(meta, meta.stat().st_mtime_ns).get(clip_id, {})
    if "boxes" not in info:
        return None
    sx, sy = size[0] / frame_size[0], size[1] / frame_size[1]
    return [[(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in tick] for tick in info["boxes"]]


def load_clip(root: Path, clip_id: str, config: ModelConfig, encoded: bool = False) -> Clip:
    """Read one clip's binaural wav and its frames (resized to 480x240 like the official loader; ``encoded``: kept
    as their files' bytes, decoded when indexed: ``EncodedFrames``)."""
    import soundfile as sf
    from PIL import Image
    from scipy.signal import resample_poly

    wav = root / "binaural_audios" / f"{clip_id}.wav"
    frame_dir = root / "frames" / f"{clip_id}.mp4"
    if not wav.is_file() or not frame_dir.is_dir():
        raise DatasetError(f"{root}: clip {clip_id} lacks {wav.name} or frames/{frame_dir.name}/")
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    if audio.shape[1] != 2:
        raise DatasetError(f"{wav}: binaural audio needs 2 channels, found {audio.shape[1]}")
    audio = audio.T
    if rate != config.sample_rate_hz:
        g = gcd(rate, config.sample_rate_hz)
        audio = resample_poly(audio, config.sample_rate_hz // g, rate // g, axis=1).astype(np.float32)
    files = sorted(p for p in frame_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise DatasetError(f"{frame_dir}: no frames")
    size = (config.resize_width, config.resize_height)
    if encoded:
        with Image.open(files[0]) as first:
            boxes = _scene_boxes(root, clip_id, first.size, size)
        return Clip(clip_id, np.ascontiguousarray(audio), EncodedFrames(files, size), boxes)
    frames = []
    for f in files:
        image = Image.open(f).convert("RGB")
        frame_size = image.size
        frames.append(np.asarray(image if image.size == size else image.resize(size), dtype=np.uint8))
    boxes = _scene_boxes(root, clip_id, frame_size, size)
    return Clip(clip_id, np.ascontiguousarray(audio), np.stack(frames), boxes)


@dataclass
class TrainBatch:
    frames: np.ndarray  # [B, 224, 448, 3] uint8, frame at the segment centre
    prev_frames: np.ndarray  # [B, 224, 448, 3] uint8, the frame before it
    binaural: np.ndarray  # [B, 2, window] float32
    objectness: np.ndarray | None = None  # [B, grid_h, grid_w] share of each cell a sounding object covers
    mirrored: np.ndarray | None = None  # [B] bool: picture flipped and ears swapped


def objectness_map(boxes, x: int, y: int, config: ModelConfig) -> np.ndarray:
    """Return the [grid_h, grid_w] share of each visual-grid cell of the crop at (x, y) that ``boxes`` cover."""
    h, w = config.crop_height, config.crop_width
    mask = np.zeros((h, w), np.float32)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = int(np.clip(round(x0 - x), 0, w)), int(np.clip(round(x1 - x), 0, w))
        r0, r1 = int(np.clip(round(y0 - y), 0, h)), int(np.clip(round(y1 - y), 0, h))
        mask[r0:r1, c0:c1] = 1.0
    gh, gw = config.visual_grid
    return mask.reshape(gh, h // gh, gw, w // gw).mean(axis=(1, 3))


class SegmentSampler:
    """Random 0.63 s segments, the frame at their centre and the previous one, a random 448x224 crop (the
    same for both frames) and brightness/colour jitter.

    ``mirror``: half of the segments are mirrored — the picture flipped left-right AND the target's ears
    swapped, so that the model sees every scene on both sides (left/right symmetry by construction of the data).
    Clips with object boxes (ccs-synth real scenes) also give the objectness target of each crop.
    """

    def __init__(
        self, clips: list[Clip], config: ModelConfig, seed: int, mirror: bool = False, strong_jitter: bool = False
    ) -> None:
        usable = [c for c in clips if c.audio.shape[1] > config.window_samples]
        if not usable:
            raise DatasetError(f"no clip is longer than one window ({config.window_samples} samples)")
        self.clips, self.config, self.mirror, self.strong = usable, config, mirror, strong_jitter
        self.rng = np.random.default_rng(seed)
        self.with_boxes = all(c.boxes is not None for c in usable)

    def _jitter(self, images: np.ndarray) -> np.ndarray:
        """The same photometric change for every image given (a frame pair). Mild: brightness x0.75-1.25 and
        each colour x0.9-1.1. Strong (``strong_jitter``): brightness x0.5-1.5, contrast x0.6-1.4 about the
        pair's mean grey, each colour x0.85-1.15, and one pair in ten grey (then no colour change): footage
        unlike the training backgrounds differs in these ways (night, haze, a camera's colour)."""
        if not self.strong:
            brightness = self.rng.uniform(0.75, 1.25)
            colour = self.rng.uniform(0.9, 1.1, size=3)
            return np.clip(images.astype(np.float32) * (brightness * colour), 0, 255).astype(np.uint8)
        x, colour = images.astype(np.float32), self.rng.uniform(0.85, 1.15, size=3)
        if self.rng.random() < 0.1:
            x, colour = np.repeat(x @ np.float32([[0.299], [0.587], [0.114]]), 3, axis=-1), np.ones(3)
        grey = float(x.mean())
        x = grey + self.rng.uniform(0.6, 1.4) * (x - grey)
        return np.clip(x * (self.rng.uniform(0.5, 1.5) * colour), 0, 255).astype(np.uint8)

    def batch(self, size: int) -> TrainBatch:
        cfg = self.config
        frames, prev, audio, targets, flips = [], [], [], [], []
        for _ in range(size):
            clip = self.clips[int(self.rng.integers(len(self.clips)))]
            start = int(self.rng.integers(0, clip.audio.shape[1] - cfg.window_samples + 1))
            centre_s = (start + cfg.window_samples / 2) / cfg.sample_rate_hz
            tick = min(int(round(centre_s * cfg.fps)), len(clip.frames) - 1)
            x = int(self.rng.integers(0, cfg.resize_width - cfg.crop_width + 1))
            y = int(self.rng.integers(0, cfg.resize_height - cfg.crop_height + 1))
            pair = clip.frames[[tick, max(tick - 1, 0)], y : y + cfg.crop_height, x : x + cfg.crop_width]
            pair = self._jitter(pair)
            sound = clip.audio[:, start : start + cfg.window_samples]
            target = objectness_map(clip.boxes[tick], x, y, cfg) if self.with_boxes else None
            flip = self.mirror and bool(self.rng.random() < 0.5)
            if flip:
                pair, sound = pair[:, :, ::-1], sound[::-1]
                target = target[:, ::-1] if target is not None else None
            frames.append(pair[0])
            prev.append(pair[1])
            audio.append(sound)
            targets.append(target)
            flips.append(flip)
        return TrainBatch(
            np.ascontiguousarray(np.stack(frames)),
            np.ascontiguousarray(np.stack(prev)),
            np.ascontiguousarray(np.stack(audio), dtype=np.float32),
            np.ascontiguousarray(np.stack(targets)) if self.with_boxes else None,
            np.array(flips),
        )
