"""``ModelConfig.objectness_gate`` (``ccs-train --objectness-gate``): the model weighs each visual cell by its own
"a sounding object is here" score, and training teaches that score from the sounding objects' boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ccstereo.config import ModelConfig
from ccstereo.model.network import CCStereo

CFG = ModelConfig(resnet_width=16, aspp_hidden=32)


def _inputs(seed: int, pictures: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(rng.integers(0, 256, (pictures, 224, 448, 3), dtype=np.uint8))
    mono = torch.from_numpy((rng.standard_normal((pictures, CFG.window_samples)) * 0.1).astype(np.float32))
    return frames, mono


def _gated(bias: float) -> tuple[CCStereo, CCStereo]:
    """A gated model and the ungated model with the same weights; the gate's score is ``bias`` everywhere."""
    torch.manual_seed(3)
    plain = CCStereo(CFG).eval()
    gated = CCStereo(CFG.replace(objectness_gate=True)).eval()
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["visual.objectness.bias", "visual.objectness.weight"] and not unexpected
    assert gated.visual.objectness is not None
    with torch.no_grad():
        gated.visual.objectness.weight.zero_()
        gated.visual.objectness.bias.fill_(bias)
    return gated, plain


def test_a_shut_gate_leaves_the_picture_no_say_and_an_open_one_is_the_plain_model():
    frames, mono = _inputs(0)
    other, _ = _inputs(1)
    shut, plain = _gated(-60.0)
    opened, _ = _gated(60.0)
    with torch.no_grad():
        a = shut.forward_windows(frames, mono).numpy()
        b = shut.forward_windows(other, mono).numpy()
        ref = plain.forward_windows(frames, mono).numpy()
        out = opened.forward_windows(frames, mono).numpy()
        shut_features = shut.visual_features(shut.normalize_frames(other))
        plain_features = plain.visual_features(plain.normalize_frames(other))
    assert np.array_equal(a, b)  # another picture, the same sound: nothing of the picture gets through
    assert float(plain_features.abs().max()) > 0.01 and float(shut_features.abs().max()) < 1e-20
    assert np.abs(out - ref).max() <= 1e-6 * np.abs(ref).max()


def test_training_teaches_the_model_its_own_gate_from_the_sounding_objects_boxes():
    """40 steps weighted to the objectness loss, only the visual head and the gate learning: the model's gate (not
    the training-only head) learns to open on the cells the sounding object covers (the picture's left third) and
    to shut elsewhere."""
    from ccstereo.train.data import Clip, SegmentSampler
    from ccstereo.train.options import TrainOptions
    from ccstereo.train.trainer import compute_losses, objectness_head

    cfg = CFG.replace(objectness_gate=True)
    torch.manual_seed(0)
    model = CCStereo(cfg).train()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, cfg.resize_height, cfg.resize_width, 3), dtype=np.uint8)
    frames[:, 20:200, 10:150] = (250, 30, 30)  # a red object on the left
    audio = rng.standard_normal((2, 3 * cfg.sample_rate_hz)).astype(np.float32) * 0.1
    clip = Clip("x", audio, frames, [[(10.0, 20.0, 150.0, 200.0)] for _ in range(30)])
    sampler = SegmentSampler([clip], cfg, seed=1)
    opts = TrainOptions(
        Path(), Path(), Path(), amp_weight=0.0, phase_weight=0.0, scl_weight=0.0, objectness_weight=20.0
    )
    head = objectness_head(model)
    params = list(model.visual.aspp.parameters()) + list(model.visual.objectness.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        optimizer.zero_grad()
        loss, _parts = compute_losses(model, sampler.batch(4), opts, gen, head)
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in head.parameters())  # the training-only head had no part in it
    model.eval()
    with torch.no_grad():
        pixels = model.normalize_frames(torch.from_numpy(frames[:4, 8:232, 16:464]))
        features = model.visual.aspp(model.visual.trunk(pixels))
        score = torch.sigmoid(model.visual.objectness(features))[:, 0].mean(0).numpy()  # [7, 14]
    assert score[:, :4].mean() > 0.6 and score[:, 6:].mean() < 0.2


def test_a_gated_model_exports_runs_in_onnxruntime_and_comes_back_from_its_graph(tmp_path):
    """The gate is part of the exported graph (same inputs and outputs as every model): onnxruntime computes what
    PyTorch does, and ``--init model.onnx`` recovers the gate's weights with the rest."""
    import onnxruntime as ort

    from ccstereo.checkpoint import save_checkpoint
    from ccstereo.model.from_onnx import model_from_onnx
    from conftest import export_fp32, with_trained_batchnorms

    torch.manual_seed(4)
    model = with_trained_batchnorms(CCStereo(CFG.replace(objectness_gate=True))).eval()
    assert model.visual.objectness is not None
    with torch.no_grad():
        model.visual.objectness.bias.fill_(-1.0)  # a gate far from its start
    save_checkpoint(model, tmp_path / "gated.safetensors")
    graph = export_fp32(tmp_path / "gated.safetensors", tmp_path / "out")
    frames, mono = _inputs(2)
    with torch.no_grad():
        ref = model.forward_windows(frames, mono, torch.tensor([0, 1])).numpy()
        back = model_from_onnx(graph).forward_windows(frames, mono, torch.tensor([0, 1])).numpy()
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    feeds = {"frames": frames.numpy(), "mono": mono.numpy(), "frame_index": np.array([0, 1], np.int64)}
    names = {i.name for i in session.get_inputs()}
    out = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= 1e-4 * scale and np.abs(back - ref).max() <= 1e-5 * scale
    recovered = model_from_onnx(graph).visual.objectness
    assert recovered is not None and np.allclose(recovered.bias.detach().numpy(), -1.0)
