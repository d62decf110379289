"""ccs-synth: synthetic binaural scenes from measured HRTFs and real recordings, in the FAIR-Play layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccstereo.synth.scene import CENTRED_SHARE, FOOTAGE_SHARE, MAX_SILENT

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    out: Annotated[Path, typer.Argument(help="output folder")],
    clips: Annotated[int, typer.Option(help="number of clips")] = 10,
    seconds: Annotated[float, typer.Option(help="clip length in seconds")] = 10.0,
    seed: Annotated[int, typer.Option(help="random seed (scenes are deterministic per seed)")] = 0,
    hrtf: Annotated[
        str, typer.Option(help="kemar (slab, MIT KEMAR) | fabian | kemar-ssr (Debian SSR); a,b = one per clip")
    ] = "kemar",
    kind: Annotated[str, typer.Option(help="shapes | real-train | real-eval (photographed objects, real footage)")] = (
        "shapes"
    ),
    centred_share: Annotated[
        float, typer.Option(help="real kinds: share of scenes with no sounding object in the picture")
    ] = CENTRED_SHARE,
    paired_sounds: Annotated[
        bool,
        typer.Option("--paired-sounds/--any-sounds", help="real kinds: each object plays only its own recording"),
    ] = False,
    max_silent: Annotated[
        int, typer.Option(help="real kinds: each scene shows 0 to this many objects that make no sound (0-3)")
    ] = MAX_SILENT,
    card_share: Annotated[
        float, typer.Option(help="real kinds: share of objects shown as a photo card (on its own background)")
    ] = 0.0,
    footage: Annotated[
        Path | None,
        typer.Option(
            help="real kinds: this video as the only footage (instead of the side's clips); vtest.avi or tree.avi "
            "alone: OpenCV's sample clip of that name (Debian opencv-doc, fetched once; training only)"
        ),
    ] = None,
    footage_share: Annotated[
        float, typer.Option(help="real kinds: share of scenes over footage (the rest over a photograph)")
    ] = FOOTAGE_SHARE,
    mosaic_share: Annotated[
        float, typer.Option(help="real kinds: of the scenes over a photograph, the share over a mosaic of several")
    ] = 0.0,
    mp4: Annotated[bool, typer.Option("--mp4/--no-mp4", help="also write <id>.mp4 per clip")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write CLIPS scenes of SECONDS into OUT."""
    from ccstereo.errors import CCStereoError
    from ccstereo.synth.dataset import write_dataset

    if clips < 1 or seconds < 1.0:
        raise typer.BadParameter("need at least one clip of at least 1 s")
    try:
        write_dataset(
            out,
            clips,
            seconds,
            seed,
            hrtf,
            mp4,
            log=(lambda _m: None) if quiet else typer.echo,
            kind=kind,
            centred_share=centred_share,
            paired_sounds=paired_sounds,
            max_silent=max_silent,
            card_share=card_share,
            footage=footage,
            footage_share=footage_share,
            mosaic_share=mosaic_share,
        )
    except (CCStereoError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    app()
