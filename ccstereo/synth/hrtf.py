"""Measured head-related impulse responses on the horizontal plane, resampled to the model rate.

- ``kemar``: MIT KEMAR as shipped in PyPI ``slab`` (training).
- ``fabian``: the FABIAN head-and-torso shipped by Debian's ``soundscaperenderer-common`` (training of the
  real-scene default model; the held-out head of the earlier shapes-only model).
- ``kemar-ssr``: the TU Berlin KEMAR of the same Debian package (held out: ``benchmarks/real_scenes.py``).

Azimuth convention: degrees counter-clockwise from the front, so +90 is the listener's left.
"""

from __future__ import annotations

import functools
import sys
import types
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ccstereo.errors import CCStereoError

SSR_DIR = Path("/usr/share/ssr/impulse_responses/hrirs")
HRTF_SETS = ("kemar", "fabian", "kemar-ssr")


class HRTFUnavailableError(CCStereoError, RuntimeError):
    """A measured HRTF set that is not installed here, with the install hint."""


@dataclass(frozen=True)
class HRIRSet:
    name: str
    azimuths_deg: np.ndarray  # [A]
    hrirs: np.ndarray  # [A, 2, taps] at rate_hz (left, right)
    rate_hz: int

    def nearest(self, azimuth_deg: float) -> np.ndarray:
        """Return the [2, taps] HRIR measured nearest to ``azimuth_deg``."""
        diff = np.abs((self.azimuths_deg - azimuth_deg + 180.0) % 360.0 - 180.0)
        return self.hrirs[int(np.argmin(diff))]


def _resample(h: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    g = gcd(rate_in, rate_out)
    return resample_poly(h, rate_out // g, rate_in // g, axis=-1)


def _import_slab():
    # slab imports sounddevice at import time, which needs the PortAudio library; the HRTF data does not.
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        sys.modules.setdefault("sounddevice", types.ModuleType("sounddevice"))
    try:
        import slab
    except ImportError as exc:
        raise HRTFUnavailableError("the 'kemar' set needs PyPI slab (pip install '.[train]')") from exc
    return slab


@functools.lru_cache(maxsize=4)
def load_hrtf(name: str, rate_hz: int = 16000) -> HRIRSet:
    """Return the horizontal-plane HRIRs of set ``name`` at ``rate_hz``."""
    if name == "kemar":
        slab = _import_slab()
        hrtf = slab.HRTF.kemar()
        src = np.asarray(hrtf.sources.vertical_polar)
        idx = [i for i in range(hrtf.n_sources) if abs(src[i, 1]) < 1e-6]
        az = src[idx, 0].astype(float)
        data = np.stack([np.asarray(hrtf.data[i].data).T for i in idx])  # [A, 2, taps]
        rate_in = int(hrtf.samplerate)
    elif name in ("fabian", "kemar-ssr"):
        import soundfile as sf

        file = SSR_DIR / ("hrirs_fabian_min_phase_eq.wav" if name == "fabian" else "hrirs_kemar.wav")
        if not file.is_file():
            raise HRTFUnavailableError(f"{file} not found: apt-get install soundscaperenderer-common")
        raw, rate_in = sf.read(str(file), dtype="float64", always_2d=True)
        data = np.stack([raw[:, 0::2].T, raw[:, 1::2].T], axis=1)  # channel 2a = left, 2a+1 = right
        az = np.arange(data.shape[0], dtype=float)
    else:
        raise HRTFUnavailableError(f"unknown HRTF set {name!r}; choose one of {', '.join(HRTF_SETS)}")
    data = _resample(data, rate_in, rate_hz)
    data = data / np.max(np.abs(data[np.argmin(np.abs(((az + 180) % 360) - 180))]))  # frontal peak = 1
    return HRIRSet(name, az, data.astype(np.float32), rate_hz)
