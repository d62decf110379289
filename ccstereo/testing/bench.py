"""Helpers of the benchmark scripts (benchmarks/): a full-size model, a test clip, subprocess runs with peak RSS."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# a benchmark's --mirror auto|on|off -> RunOptions.mirror (auto: as the model's metadata says)
MIRROR_CHOICES = {"auto": None, "on": True, "off": False}


def full_size_checkpoint(workdir: Path, checkpoint: Path | None) -> Path:
    """Return ``checkpoint`` or a seeded random full-size (official architecture) native checkpoint."""
    if checkpoint is not None:
        return checkpoint
    path = workdir / "full_size_random.safetensors"
    if not path.is_file():
        import torch

        import ccstereo

        torch.manual_seed(0)
        ccstereo.save_checkpoint(ccstereo.CCStereo(ccstereo.ModelConfig()).eval(), path)
    return path


def export_once(checkpoint: Path, out: Path, calibrate: tuple[Path, ...] = ()) -> Path:
    """Export ``checkpoint`` into ``out`` (fp32 graph verified; bf16 measured and int8 built and measured when
    OpenVINO is installed, int8 calibrated on ``calibrate`` videos, the last third of them held out)."""
    if not (out / "model.onnx").is_file():
        from ccstereo.export.options import ExportOptions
        from ccstereo.export.pipeline import export_checkpoint

        options = ExportOptions(out, fp16=True, engine="auto", calibrate=tuple(calibrate))
        export_checkpoint(checkpoint, options, log=lambda _m: None)
    return out


def calibration_videos(workdir: Path, count: int = 3, seconds: float = 10.0) -> tuple[Path, ...]:
    """Return ``count`` synthetic scenes for int8 calibration (seeds 101..; the benchmark clip is seed 11)."""
    return tuple(synthetic_mp4(workdir, seconds, seed=101 + i)[0] for i in range(count))


def synthetic_mp4(workdir: Path, seconds: float, seed: int = 11) -> tuple[Path, Path]:
    """Return (mp4, ground-truth wav) of one synthetic scene of ``seconds`` (H.264 480x240 10 fps + AAC)."""
    from ccstereo.synth.dataset import write_dataset

    folder = workdir / f"clip-{seconds:g}s-{seed}"
    if not (folder / "000001.mp4").is_file():
        write_dataset(folder, 1, seconds, seed, "kemar", mp4=True, log=lambda _m: None)
    return folder / "000001.mp4", folder / "binaural_audios" / "000001.wav"


def run_isolated(args: list[str]) -> dict:
    """Run ``python <args>`` alone and return the JSON it prints last (with its own peak RSS)."""
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """Return this process's peak RSS (VmHWM). Unlike ru_maxrss it is not inherited from the parent at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def snr_db(test: np.ndarray, ref: np.ndarray) -> float:
    n = min(test.shape[-1], ref.shape[-1])
    test, ref = np.asarray(test[..., :n], np.float64), np.asarray(ref[..., :n], np.float64)
    noise = np.sum((test - ref) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


def work_and_model(workdir: Path | None, model: Path | None, prefix: str) -> tuple[Path, Path]:
    """Return (the work folder: ``workdir`` or a new temporary one, the exported model folder: ``model`` or the
    official architecture at full size with seeded random weights, exported once into the work folder)."""
    import tempfile

    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work, model or export_once(full_size_checkpoint(work, None), work / "export", calibration_videos(work))


def benchmark_parser(doc: str, seconds: float) -> argparse.ArgumentParser:
    """Return the options every full-size benchmark takes: --seconds, --checkpoint, --workdir, --json."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=seconds, help="clip length")
    parser.add_argument("--checkpoint", type=Path, help="default: the official architecture, seeded random weights")
    parser.add_argument("--workdir", type=Path, help="keeps the export and the clips between runs")
    parser.add_argument("--json", type=Path, help="write the rows here")
    return parser


def sizes_parser(doc: str, sizes: list[str]) -> argparse.ArgumentParser:
    """Return the options of a benchmark over picture sizes: --sizes WxH..., --rounds, --model, --json."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=sizes, help="picture sizes, WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each setting")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    return parser


# the units a figure depends on, in the order a CPU class is named by them
_ISA_NAMES = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "BF16"), ("avx512_vnni", "VNNI"),
              ("amx_tile", "AMX"))  # fmt: skip


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name as /proc/cpuinfo (or the text ``cpuinfo``) gives it, with its family, model and the
    units a figure depends on: a virtual machine often names only the vendor line ("AMD EPYC"), which does not say
    whether a figure came from a Zen 3, 4 or 5."""
    import platform

    from ccstereo.runtime.cpu_features import proc_flags

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if not key.strip():
            break  # the first processor's block is enough
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" not in fields:
        return name
    flags = proc_flags(cpuinfo)
    units = " ".join(label for flag, label in _ISA_NAMES if flag in flags) or "no AVX2"
    return f"{name} (family {fields['cpu family']} model {fields.get('model', '?')}; {units})"
