"""Options of a training run, defined once: ``TrainOptions`` is the API, and ``ccs-train`` reads each flag's
default from it (tests/test_cli_options.py). Light to import: no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccstereo.config import ModelConfig


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    train_split: Path
    out: Path
    val_split: Path | None = None
    steps: int = 1000
    batch_size: int = 16
    lr_visual: float = 5e-5  # paper: 5e-5 for an ImageNet-pretrained trunk; raise it when training from scratch
    lr_audio: float = 5e-4
    scl_weight: float = 0.1
    amp_weight: float = 0.005  # weight of the magnitude loss in the official trainer
    phase_weight: float = 1.0
    mirror: bool = False  # half the segments flipped left-right with the ears swapped (--mirror)
    strong_jitter: bool = False  # wider brightness, contrast and colour changes of the pictures, some grey
    objectness_weight: float = 0.5  # auxiliary objectness loss, on data with object boxes (real scenes)
    distill_weight: float = 0.0  # feature distillation from an ImageNet EfficientNet-Lite0 (training only)
    ild_weight: float = 0.0  # interaural level difference in dB per window, broadband and per band (losses.ild_loss)
    ild_side_weight: float = 0.0  # hinge on the side of each window's broadband ILD (losses.ild_side_loss)
    bf16: bool = False
    init: Path | None = None  # start from these weights (native .safetensors, official .pth, or our fp32 .onnx)
    frozen_bn: bool = False  # BatchNorm statistics stay as loaded (required for an .onnx init: its BNs are folded)
    freeze_trunk: bool = False  # the visual trunk keeps its weights (e.g. ImageNet's); the ASPP head and the rest learn
    trunk_tail: int = 0  # with freeze_trunk: an EfficientNet-Lite0 trunk's last N blocks learn all the same
    lr_trunk: float = 1e-4  # their learning rate
    seed: int = 0
    val_every: int = 500
    val_clips: int = 8
    keep_every: int = 0  # also keep the weights every this many steps as OUT/steps/step_NNNNNN.safetensors (0: never)
    log_every: int = 10
    resume: bool = True
    config: ModelConfig = field(default_factory=ModelConfig)
