"""The options of ``ccs-run`` as typer annotations; their defaults are the API's (``LoadOptions``, ``RunOptions``,
``ScaleOptions``; tests/test_cli_options.py checks every flag against its field)."""

from __future__ import annotations

from typing import Annotated

import typer

from ccstereo.runtime.options import (
    BackendName,
    ClipMode,
    LoadOptions,
    OutputFormat,
    Precision,
    Resize,
    RunOptions,
    VisualRate,
)
from ccstereo.runtime.ray_executor import ScaleOptions

LOAD, RUN = LoadOptions(), RunOptions()
BACKEND, PRECISION, CLIP = BackendName(LOAD.backend), Precision(LOAD.precision), ClipMode(RUN.clip_mode)
VISUAL = VisualRate(RUN.visual_rate)
RESIZE = Resize(RUN.resize)
SCALE = ScaleOptions()
RayAddressOption = Annotated[
    str | None, typer.Option(help="join this Ray cluster (host:port) instead of starting one here; implies --ray")
]
WorkersOption = Annotated[int | None, typer.Option(min=1, help="Ray workers (default: cluster CPUs / cpus-per-worker)")]
CpusOption = Annotated[float, typer.Option(min=0.01, help="CPUs each Ray worker reserves (and its threads)")]
GpusOption = Annotated[float, typer.Option(min=0, help="GPUs each Ray worker reserves")]
VisualRateOption = Annotated[
    VisualRate, typer.Option(help="exact: visual network on every distinct crop | adaptive: only where it changed")
]
ResizeOption = Annotated[
    Resize,
    typer.Option(
        help="exact: the official loader's resize (Pillow bicubic), to the bit | fast: FFmpeg converts and resizes "
        "in one step, a few times cheaper for large pictures, not the same pixels"
    ),
]
ThresholdOption = Annotated[
    float, typer.Option(min=0, help="adaptive: largest change (grey levels per 56 px tile) that reuses features")
]
TuneOption = Annotated[
    bool | None,
    typer.Option(
        "--tune/--no-tune",
        help="auto on a CPU: measure the engines again (--tune) or pick by CPU flags (--no-tune); default: the "
        "engine measured fastest and accurate here, measured once per model and machine",
    ),
]
MirrorOption = Annotated[
    bool | None,
    typer.Option(
        "--mirror/--no-mirror",
        help="mirror test-time augmentation: every other picture mirrored, its window's ears swapped back (no extra "
        "compute); default: as the model says (on for the bundled default, off for official checkpoints)",
    ),
]
OutOption = Annotated[
    str | None, typer.Option("-o", "--out", help="output file, or folder (an existing one, or ending in /)")
]
MaxApartOption = Annotated[
    float,
    typer.Option(min=0.001, help="input '-' (a pipe): how many seconds apart its audio and picture may lie"),
]
LiveOption = Annotated[
    bool,
    typer.Option(
        "--live", help="input '-': emit each window's output as soon as its sound has arrived (bounded delay)"
    ),
]
LiveBudgetOption = Annotated[
    float, typer.Option(min=0.001, help="--live: seconds of compute delay before degrading (one crop, ...)")
]
StaleOption = Annotated[float, typer.Option(min=0, help="adaptive: oldest features reused, in seconds")]
PrecisionOption = Annotated[Precision, typer.Option(help="CPU precision (reduced ones only as measured at export)")]
HopSamplesOption = Annotated[int | None, typer.Option(help="hop in samples at 16 kHz (1008 = official test)")]
FormatOption = Annotated[
    OutputFormat | None, typer.Option("--format", help="output container (default: one that can copy the video)")
]
FullBandOption = Annotated[bool, typer.Option("--full-band/--model-band", help="keep the input's full band")]
ClipOption = Annotated[
    ClipMode, typer.Option(help="rescale (whole file, only if it would clip) | clamp | none; always reported")
]
