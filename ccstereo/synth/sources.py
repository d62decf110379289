"""Sound sources for synthetic scenes: real recordings (Debian's CC0 sonic-pi samples) or synthesised tones."""

from __future__ import annotations

import functools
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

SAMPLE_DIRS = (Path("/usr/share/sonic-pi/samples"), Path("/usr/share/sounds/alsa"))
_FAMILIES = ("ambi_", "bass_", "elec_", "guit_", "misc_", "perc_", "drum_", "loop_", "vinyl_", "tabla_", "glitch_")


@functools.lru_cache(maxsize=2)
def recording_paths() -> tuple[Path, ...]:
    """Return the installed instrument/voice recordings (may be empty)."""
    found = []
    for folder in SAMPLE_DIRS:
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir()) if p.suffix in (".flac", ".wav")]
    return tuple(p for p in found if p.name.startswith(_FAMILIES) or p.parent.name == "alsa")


@functools.lru_cache(maxsize=256)
def load_recording(path: Path, rate_hz: int) -> np.ndarray:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != rate_hz:
        g = gcd(rate, rate_hz)
        mono = resample_poly(mono, rate_hz // g, rate // g).astype(np.float32)
    peak = float(np.max(np.abs(mono))) or 1.0
    return mono / peak


def synth_tone(rng: np.random.Generator, n: int, rate_hz: int) -> np.ndarray:
    """Return a note sequence of a random harmonic timbre with attack/decay envelopes."""
    out = np.zeros(n, np.float32)
    t_note = int(rate_hz * rng.uniform(0.15, 0.6))
    harmonics = rng.uniform(0.1, 1.0, size=6) / np.arange(1, 7)
    pos = 0
    while pos < n:
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        t = np.arange(t_note) / rate_hz
        note = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(harmonics) if f0 * (k + 1) < 7800)
        env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(2, 8))
        seg = (note * env)[: n - pos]
        out[pos : pos + len(seg)] += seg.astype(np.float32)
        pos += int(t_note * rng.uniform(0.7, 1.3))
    return out / (np.max(np.abs(out)) or 1.0)


def source_signal(rng: np.random.Generator, n: int, rate_hz: int) -> np.ndarray:
    """Return ``n`` samples of one object's sound: a recording looped with gaps, or a synthesised tone."""
    paths = recording_paths()
    if not paths or rng.random() < 0.25:
        return synth_tone(rng, n, rate_hz)
    out = np.zeros(n, np.float32)
    pos = int(rng.integers(0, rate_hz // 4))
    clip = load_recording(paths[int(rng.integers(len(paths)))], rate_hz)
    while pos < n:
        seg = clip[: n - pos] * rng.uniform(0.5, 1.0)
        out[pos : pos + len(seg)] += seg
        pos += len(seg) + int(rng.integers(0, rate_hz // 3))
    return out
