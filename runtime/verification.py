"""Verification windows: a few windows of a clip with their fp32 outputs, shipped in the exported folder
(``verification.npz``) so that any machine can check what a graph computes *on its own CPU*.

int8 and bf16 kernels differ between CPUs (VNNI vs AVX2's saturating u8 x s8 path, native BF16 vs emulated), so
an accuracy measured at export on another CPU is not evidence for this one. ``ccs-export`` writes the windows
and the fp32 graph's outputs; the runtime runs a candidate engine on them and compares (``check``): binaural SNR
of the overlap-averaged output vs the stored fp32 output, and every paper metric vs the clip against the stored
fp32 output's metrics. The file is untrusted input: loaded without pickle and checked field by field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.metrics import evaluate, peak_normalize
from ccstereo.runtime.errors import ModelMetadataError
from ccstereo.runtime.overlap_add import StreamingOverlapAdd

FILE_NAME = "verification.npz"
PAPER_METRICS = ("stft", "env", "wav", "mag", "phs", "snr")
MAX_WINDOWS = 64  # what a shipped file may hold (memory and check time stay small)
SHIPPED_WINDOWS = 16  # what ccs-export ships: ~1 s of check with a full-size model on 2 cores


@dataclass(frozen=True)
class VerificationSet:
    """Windows of one clip: distinct crops [F, H, W, 3] u8, L+R windows [W, N], frame index, ground truth."""

    name: str
    crops_u8: np.ndarray
    mono: np.ndarray
    frame_index: np.ndarray
    starts: np.ndarray
    clip: np.ndarray  # [2, N] ground-truth binaural

    def overlap_average(self, windows: np.ndarray) -> np.ndarray:
        """Return the overlap-averaged [2, N] signal of window outputs [W, 2, window]."""
        ola = StreamingOverlapAdd(2, windows.shape[-1])
        for w, s in zip(windows, self.starts, strict=True):
            ola.add(int(s), w)
        return ola.pop(self.clip.shape[1])

    def head(self, count: int) -> VerificationSet:
        """Return the first ``count`` windows, the crops they use and the clip up to their end."""
        count = min(count, len(self.mono))
        used = np.unique(self.frame_index[:count])
        index = np.searchsorted(used, self.frame_index[:count]).astype(np.int64)
        end = int(self.starts[count - 1]) + self.mono.shape[1]
        clip = self.clip[:, : min(end, self.clip.shape[1])]
        return VerificationSet(self.name, self.crops_u8[used], self.mono[:count], index, self.starts[:count], clip)

    def feeds(self) -> dict[str, np.ndarray]:
        return {"frames": self.crops_u8, "mono": self.mono, "frame_index": self.frame_index}


def snr_db(test: np.ndarray, reference: np.ndarray) -> float:
    """Return 10 log10(|reference|^2 / |test - reference|^2) in dB (inf when identical)."""
    noise = float(np.sum((np.asarray(test, np.float64) - reference) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(np.asarray(reference, np.float64) ** 2)) / noise)


def paper_metrics(vset: VerificationSet, windows: np.ndarray) -> dict[str, float]:
    """Return the paper's metrics of overlap-averaged windows against the clip (both peak-normalised)."""
    pred = peak_normalize(vset.overlap_average(windows))
    result = evaluate(pred, peak_normalize(vset.clip.astype(np.float64)), 16000)
    return {k: result[k] for k in PAPER_METRICS}


def relative_changes(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Return |b - a| / |a| per metric."""
    return {k: abs(b[k] - a[k]) / max(abs(a[k]), 1e-12) for k in a}


@dataclass(frozen=True)
class Shipped:
    """A verification set and the fp32 graph's windows on it, as read from an exported folder."""

    path: Path
    vset: VerificationSet
    fp32: np.ndarray  # [W, 2, N]


def save(path: Path, vset: VerificationSet, fp32_windows: np.ndarray, count: int = SHIPPED_WINDOWS) -> None:
    """Write the first ``count`` windows of ``vset`` and their fp32 outputs (compressed npz, no pickle)."""
    head = vset.head(count)
    fp32 = np.asarray(fp32_windows[: len(head.mono)], np.float32)
    with Path(path).open("wb") as fh:
        np.savez_compressed(
            fh,
            frames=head.crops_u8,
            mono=head.mono,
            frame_index=head.frame_index,
            starts=head.starts.astype(np.int64),
            clip=head.clip.astype(np.float32),
            fp32=fp32,
        )


def load(path: Path, config: ModelConfig) -> Shipped:
    """Read and check a verification file against the model's config; raise ModelMetadataError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("frames", "mono", "frame_index", "starts", "clip", "fp32")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ModelMetadataError(f"{path}: not a readable verification file: {exc}") from exc
    _check(path, arrays, config)
    vset = VerificationSet(
        path.name, arrays["frames"], arrays["mono"], arrays["frame_index"], arrays["starts"], arrays["clip"]
    )
    return Shipped(path, vset, arrays["fp32"])


def _check(path: Path, a: dict[str, np.ndarray], config: ModelConfig) -> None:
    n, frame = config.window_samples, (config.crop_height, config.crop_width, 3)
    windows = a["mono"].shape[0] if a["mono"].ndim == 2 else -1
    expected = {
        "frames": (np.uint8, None, frame),
        "mono": (np.float32, windows, (n,)),
        "frame_index": (np.int64, windows, ()),
        "starts": (np.int64, windows, ()),
        "clip": (np.float32, 2, None),
        "fp32": (np.float32, windows, (2, n)),
    }
    for key, (dtype, lead, tail) in expected.items():
        x = a[key]
        ok = x.dtype == dtype and x.ndim >= 1 and (lead is None or x.shape[0] == lead)
        ok = ok and (tail is None or tuple(x.shape[1:]) == tail)
        if not ok:
            raise ModelMetadataError(f"{path}: {key} has {x.dtype} {x.shape}, the model's config needs {tail}")
    frames, count = a["frames"].shape[0], windows
    if not 1 <= count <= MAX_WINDOWS or not 1 <= frames <= MAX_WINDOWS:
        raise ModelMetadataError(f"{path}: {count} windows / {frames} crops (1 to {MAX_WINDOWS} allowed)")
    if a["frame_index"].min() < 0 or a["frame_index"].max() >= frames:
        raise ModelMetadataError(f"{path}: frame_index outside its {frames} crops")
    if a["starts"].min() < 0 or a["starts"].max() >= a["clip"].shape[1]:
        raise ModelMetadataError(f"{path}: window starts outside its clip")
    if not all(np.isfinite(a[k]).all() for k in ("mono", "clip", "fp32")):
        raise ModelMetadataError(f"{path}: non-finite samples")


@dataclass(frozen=True)
class CpuAccuracy:
    """How a graph on this CPU reproduces the shipped fp32 outputs."""

    snr_db: float
    worst_metric_change: float
    worst_metric: str

    def words(self) -> str:
        if math.isinf(self.snr_db):  # every sample equal to the shipped output's ("inf dB" said nothing to a user)
            return "equal to the shipped fp32 output, sample for sample"
        return f"{self.snr_db:.1f} dB, worst paper metric {self.worst_metric} {self.worst_metric_change:.2%}"


def check(run, shipped: Shipped, max_batch: int) -> tuple[CpuAccuracy, np.ndarray]:
    """Run ``run(frames, mono, frame_index)`` on the shipped windows (batches of ``max_batch``) and return how it
    compares with the stored fp32 output, and its windows."""
    vset = shipped.vset
    parts = []
    for lo in range(0, len(vset.mono), max_batch):
        hi = min(lo + max_batch, len(vset.mono))
        parts.append(np.asarray(run(vset.crops_u8, vset.mono[lo:hi], vset.frame_index[lo:hi]), np.float32))
    windows = np.concatenate(parts)
    snr = snr_db(vset.overlap_average(windows), vset.overlap_average(shipped.fp32))
    change = relative_changes(paper_metrics(vset, shipped.fp32), paper_metrics(vset, windows))
    worst = max(change, key=lambda k: change[k])
    return CpuAccuracy(snr, change[worst], worst), windows
