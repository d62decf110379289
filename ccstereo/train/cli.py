"""ccs-train: train CCStereo on FAIR-Play (or a ccs-synth dataset in the same layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccstereo.config import ModelConfig, picture_sizes
from ccstereo.train.options import TrainOptions

app = typer.Typer(add_completion=False, help=__doc__)
# The API's defaults are the CLI's (tests/test_cli_options.py checks every flag against its field).
_OPTS, _CONFIG = TrainOptions(Path("."), Path("."), Path(".")), ModelConfig()


@app.command()
def main(
    data: Annotated[Path, typer.Argument(help="dataset root (binaural_audios/, frames/)")],
    train_split: Annotated[Path, typer.Option(help="train list: 5-split .txt or 10-split .h5")],
    out: Annotated[Path, typer.Option("-o", "--out", help="run folder (checkpoints, logs)")],
    val_split: Annotated[Path | None, typer.Option(help="validation list")] = _OPTS.val_split,
    steps: Annotated[int, typer.Option()] = _OPTS.steps,
    batch_size: Annotated[int, typer.Option()] = _OPTS.batch_size,
    lr_visual: Annotated[float, typer.Option(help="5e-5 for a pretrained trunk (paper)")] = _OPTS.lr_visual,
    lr_audio: Annotated[float, typer.Option()] = _OPTS.lr_audio,
    scl_weight: Annotated[float, typer.Option(help="lambda of the SCL loss")] = _OPTS.scl_weight,
    mirror: Annotated[
        bool, typer.Option("--mirror/--no-mirror", help="half the segments mirrored: picture flipped, ears swapped")
    ] = _OPTS.mirror,
    strong_jitter: Annotated[
        bool,
        typer.Option(
            "--strong-jitter/--mild-jitter", help="pictures: brightness x0.5-1.5, contrast x0.6-1.4, colour, some grey"
        ),
    ] = _OPTS.strong_jitter,
    objectness_weight: Annotated[
        float, typer.Option(help="auxiliary objectness loss weight (data with object boxes: real scenes)")
    ] = _OPTS.objectness_weight,
    distill_weight: Annotated[
        float, typer.Option(help="feature distillation from ImageNet EfficientNet-Lite0 into the trunk (0: off)")
    ] = _OPTS.distill_weight,
    ild_weight: Annotated[
        float, typer.Option(help="interaural level difference loss (dB per window, broadband and per band; 0: off)")
    ] = _OPTS.ild_weight,
    ild_side_weight: Annotated[
        float,
        typer.Option(help="hinge on the side of each window's ILD: wrong side or within 1 dB of centre costs (0: off)"),
    ] = _OPTS.ild_side_weight,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast on CPU (AVX512-BF16 or AMX)")] = _OPTS.bf16,
    init: Annotated[
        Path | None, typer.Option(help="start from these weights: .safetensors, official .pth, or our fp32 .onnx")
    ] = _OPTS.init,
    frozen_bn: Annotated[
        bool, typer.Option("--frozen-bn/--train-bn", help="keep BatchNorm statistics as loaded (needed for .onnx)")
    ] = _OPTS.frozen_bn,
    freeze_trunk: Annotated[
        bool, typer.Option("--freeze-trunk/--train-trunk", help="the visual trunk keeps its starting weights")
    ] = _OPTS.freeze_trunk,
    trunk_tail: Annotated[
        int, typer.Option(help="with --freeze-trunk: the last N blocks of an efficientnet_lite0 trunk learn anyway")
    ] = _OPTS.trunk_tail,
    lr_trunk: Annotated[float, typer.Option(help="the learning rate of those blocks")] = _OPTS.lr_trunk,
    resnet_width: Annotated[int, typer.Option(help="ResNet-18 stem width (64 = official)")] = _CONFIG.resnet_width,
    aspp_hidden: Annotated[int, typer.Option(help="ASPP branch width (256 = official)")] = _CONFIG.aspp_hidden,
    visual_trunk: Annotated[
        str, typer.Option(help="resnet18 (official) or efficientnet_lite0 (starts from its ImageNet weights)")
    ] = _CONFIG.visual_trunk,
    lite0_blocks: Annotated[
        int, typer.Option(help="efficientnet_lite0: blocks kept (16 all; 11 ends at stride 16, a third fewer FLOPs)")
    ] = _CONFIG.lite0_blocks,
    objectness_gate: Annotated[
        bool,
        typer.Option(
            "--objectness-gate/--no-objectness-gate",
            help="the model weighs each visual cell by its own objectness score (trained by --objectness-weight)",
        ),
    ] = _CONFIG.objectness_gate,
    picture_scale: Annotated[
        float,
        typer.Option(help="crop and resize sizes times this (0.5: a 224x112 crop, for a Lite0 trunk cut at stride 16)"),
    ] = 1.0,
    val_every: Annotated[int, typer.Option()] = _OPTS.val_every,
    val_clips: Annotated[int, typer.Option()] = _OPTS.val_clips,
    keep_every: Annotated[
        int, typer.Option(help="also keep the weights every N steps: OUT/steps/step_NNNNNN.safetensors (0: never)")
    ] = _OPTS.keep_every,
    seed: Annotated[int, typer.Option()] = _OPTS.seed,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = _OPTS.resume,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
) -> None:
    """Train and write OUT/last.safetensors, OUT/best.safetensors, OUT/train_log.csv, OUT/val_log.jsonl."""
    import torch

    from ccstereo.errors import CCStereoError
    from ccstereo.train.trainer import train

    if threads:
        torch.set_num_threads(threads)
    try:
        config = ModelConfig(
            resnet_width=resnet_width,
            aspp_hidden=aspp_hidden,
            visual_trunk=visual_trunk,
            lite0_blocks=lite0_blocks,
            objectness_gate=objectness_gate,
            **picture_sizes(picture_scale),
        )
    except CCStereoError as exc:
        raise typer.BadParameter(str(exc)) from exc
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
        mirror=mirror,
        strong_jitter=strong_jitter,
        objectness_weight=objectness_weight,
        distill_weight=distill_weight,
        ild_weight=ild_weight,
        ild_side_weight=ild_side_weight,
        bf16=bf16,
        init=init,
        frozen_bn=frozen_bn,
        freeze_trunk=freeze_trunk,
        trunk_tail=trunk_tail,
        lr_trunk=lr_trunk,
        seed=seed,
        val_every=val_every,
        val_clips=val_clips,
        keep_every=keep_every,
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
