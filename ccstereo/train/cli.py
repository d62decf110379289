"""ccs-train: train CCStereo on FAIR-Play (or a ccs-synth dataset in the same layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    data: Annotated[Path, typer.Argument(help="dataset root (binaural_audios/, frames/)")],
    train_split: Annotated[Path, typer.Option(help="train list: 5-split .txt or 10-split .h5")],
    out: Annotated[Path, typer.Option("-o", "--out", help="run folder (checkpoints, logs)")],
    val_split: Annotated[Path | None, typer.Option(help="validation list")] = None,
    steps: Annotated[int, typer.Option()] = 1000,
    batch_size: Annotated[int, typer.Option()] = 16,
    lr_visual: Annotated[float, typer.Option(help="5e-5 for a pretrained trunk (paper)")] = 5e-5,
    lr_audio: Annotated[float, typer.Option()] = 5e-4,
    scl_weight: Annotated[float, typer.Option(help="lambda of the SCL loss")] = 0.1,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast on CPU (AVX512-BF16 or AMX)")] = False,
    resnet_width: Annotated[int, typer.Option(help="ResNet-18 stem width (64 = official)")] = 64,
    aspp_hidden: Annotated[int, typer.Option(help="ASPP branch width (256 = official)")] = 256,
    val_every: Annotated[int, typer.Option()] = 500,
    val_clips: Annotated[int, typer.Option()] = 8,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
) -> None:
    """Train and write OUT/last.safetensors, OUT/best.safetensors, OUT/train_log.csv, OUT/val_log.jsonl."""
    import torch

    from ccstereo.config import ModelConfig
    from ccstereo.errors import CCStereoError
    from ccstereo.train.trainer import TrainOptions, train

    if threads:
        torch.set_num_threads(threads)
    config = ModelConfig(resnet_width=resnet_width, aspp_hidden=aspp_hidden)
    opts = TrainOptions(
        data,
        train_split,
        out,
        val_split,
        steps,
        batch_size,
        lr_visual,
        lr_audio,
        scl_weight,
        bf16=bf16,
        seed=seed,
        val_every=val_every,
        val_clips=val_clips,
        resume=resume,
        config=config,
    )
    try:
        summary = train(opts, log=typer.echo)
    except (CCStereoError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"done: {summary['steps']} steps, best validation stft {summary['best_val_stft']:.4f}")


if __name__ == "__main__":
    app()
