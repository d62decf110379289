"""ccs-eval: the paper's binaural metrics of a prediction against a ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ccstereo.errors import CCStereoError

app = typer.Typer(add_completion=False, help=__doc__)


class EvalInputError(CCStereoError, ValueError):
    """An input file that cannot be evaluated."""


def read_binaural(path: Path, sample_rate_hz: int):
    """Return [2, N] float64 audio of a wav/flac file, or of the first audio track of any media file FFmpeg reads
    (the mp4 ``ccs-run`` writes by default), resampled to ``sample_rate_hz``."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    if not Path(path).is_file():
        raise EvalInputError(f"{path}: no such file")
    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError):
        data, rate = _decoded(path)
    if data.shape[1] != 2:
        raise EvalInputError(f"{path}: expected 2 channels, found {data.shape[1]}")
    if data.shape[0] == 0:
        raise EvalInputError(f"{path}: zero-length audio")
    if rate != sample_rate_hz:
        from math import gcd

        g = gcd(rate, sample_rate_hz)
        data = resample_poly(data, sample_rate_hz // g, rate // g, axis=0)
    return np.ascontiguousarray(data.T)


def _decoded(path: Path):
    """Return ([N, channels] float64, rate) of a media file's first audio track, decoded by FFmpeg (PyAV)."""
    import av
    import numpy as np

    from ccstereo.runtime.media import MediaError, _reason, read_audio

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise EvalInputError(f"{path}: no audio stream")
            channels = container.streams.audio[0].codec_context.channels
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise EvalInputError(f"{path}: cannot read audio ({_reason(exc)})") from exc
    if channels != 2:  # read_audio would mix it to stereo: a reference must be binaural already
        raise EvalInputError(f"{path}: expected 2 channels, found {channels}")
    try:
        rate, _, audio = read_audio(path)
    except MediaError as exc:
        raise EvalInputError(str(exc)) from exc
    return np.asarray(audio, np.float64).T, rate


def plot_comparison(pred, gt, out: Path, sample_rate_hz: int) -> None:
    """Draw the L-R SPL difference over time and both difference-signal spectrograms into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ccstereo.metrics import SPL_FRAME_S, spec_librosa, spl_curve

    fig, axes = plt.subplots(3, 1, figsize=(10, 9), constrained_layout=True)
    t = np.arange(len(spl_curve(gt, sample_rate_hz))) * SPL_FRAME_S
    axes[0].plot(t, spl_curve(gt, sample_rate_hz), label="ground truth")
    axes[0].plot(t, spl_curve(pred, sample_rate_hz), label="prediction")
    axes[0].axhline(0.0, color="grey", lw=0.5)
    axes[0].set(xlabel="time (s)", ylabel="SPL L - R (dB)", title="Spatial level difference")
    axes[0].legend()
    for ax, sig, name in ((axes[1], gt, "ground truth"), (axes[2], pred, "prediction")):
        spec = 20 * np.log10(np.abs(spec_librosa(sig[0] - sig[1])) + 1e-8)
        dur = sig.shape[1] / sample_rate_hz
        ax.imshow(spec, origin="lower", aspect="auto", extent=(0, dur, 0, sample_rate_hz / 2000), vmin=-80)
        ax.set(xlabel="time (s)", ylabel="kHz", title=f"L - R spectrogram, {name}")
    fig.savefig(out, dpi=100)
    plt.close(fig)


@app.command()
def main(
    pred: Annotated[Path, typer.Argument(help="predicted binaural audio (wav, flac, or a video's audio track)")],
    gt: Annotated[Path, typer.Argument(help="ground-truth binaural audio (wav, flac, or a video's audio track)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    plot: Annotated[Path | None, typer.Option(help="write a PNG of SPL difference and L-R spectrograms")] = None,
    sample_rate_hz: Annotated[int, typer.Option(help="evaluation sample rate")] = 16000,
    no_peak_norm: Annotated[bool, typer.Option("--no-peak-norm", help="skip the official peak normalisation")] = False,
) -> None:
    """Print stft, env, wav, mag, phs, snr, amp, phase, spl and mrstft of PRED against GT."""
    from ccstereo.metrics import evaluate, peak_normalize

    try:
        p, g = read_binaural(pred, sample_rate_hz), read_binaural(gt, sample_rate_hz)
    except CCStereoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    n = min(p.shape[1], g.shape[1])
    if abs(p.shape[1] - g.shape[1]) > sample_rate_hz // 10:
        typer.echo(f"warning: lengths differ ({p.shape[1]} vs {g.shape[1]} samples); using the first {n}", err=True)
    p, g = p[:, :n], g[:, :n]
    if not no_peak_norm:
        p, g = peak_normalize(p), peak_normalize(g)
    result = evaluate(p, g, sample_rate_hz)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for name, value in result.items():
            typer.echo(f"{name:>7}  {value:.6f}")
    if plot is not None:
        plot_comparison(p, g, plot, sample_rate_hz)
        typer.echo(f"plot written to {plot}")


if __name__ == "__main__":
    app()
