"""ccs-synth and ccs-train on a tiny dataset: both split formats, a decreasing loss, a checkpoint that loads
and exports; the SCL loss on hand-made features; HRTF orientation."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import ccstereo
from ccstereo.train.losses import scl_loss, spatial_shuffle
from conftest import export_fp32, with_trained_batchnorms


def test_synth_writes_the_fairplay_layout(tiny_dataset):
    from ccstereo.train.data import read_split

    assert sorted(p.name for p in (tiny_dataset / "binaural_audios").iterdir())[0] == "000001.wav"
    assert (tiny_dataset / "frames" / "000001.mp4" / "000001.png").is_file()
    assert (tiny_dataset / "000001.mp4").is_file()
    txt = read_split(tiny_dataset / "splits" / "split1" / "train.txt")
    h5 = read_split(tiny_dataset / "splits_h5" / "split10" / "train.h5")
    assert len(txt) == len(h5) == 2 and set(txt) <= {"000001", "000002", "000003", "000004"}


def test_synth_is_deterministic_per_seed(tmp_path):
    import soundfile as sf

    from ccstereo.synth.dataset import write_dataset

    a = write_dataset(tmp_path / "a", 1, 1.5, seed=9, mp4=False, log=lambda _m: None)
    b = write_dataset(tmp_path / "b", 1, 1.5, seed=9, mp4=False, log=lambda _m: None)
    wa, _ = sf.read(a / "binaural_audios" / "000001.wav")
    wb, _ = sf.read(b / "binaural_audios" / "000001.wav")
    np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize(
    "extra", [["--footage", "clip.mp4"], ["--card-share", "0.5"], ["--paired-sounds"], ["--centred-share", "1"]]
)
def test_synth_refuses_real_scene_options_for_shapes(tmp_path, extra):
    """Shapes scenes have no footage, photographs or recordings: such an option is one error line and nothing is
    written, not a dataset made as if it had not been given."""
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "ccstereo.synth.cli", str(out), "--clips", "1", "--seconds", "1", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and extra[0] in lines[0] and "real" in lines[0], done.stderr
    assert not out.exists()


@pytest.mark.parametrize("hrtf", ["kemar", "fabian"])
def test_hrtf_left_is_left(hrtf):
    from ccstereo.synth.hrtf import load_hrtf

    hrirs = load_hrtf(hrtf)  # fabian: Debian's soundscaperenderer-common, installed by .ci/system-deps
    left_source = hrirs.nearest(60.0)
    assert np.sum(left_source[0] ** 2) > 2 * np.sum(left_source[1] ** 2)  # louder in the left ear


@pytest.mark.parametrize("split", ["splits/split1/train.txt", "splits_h5/split2/train.h5"])
def test_train_decreases_loss_and_checkpoint_loads_and_exports(tiny_dataset, tmp_path, split):
    from ccstereo.config import ModelConfig
    from ccstereo.train.trainer import TrainOptions, train

    cfg = ModelConfig(resnet_width=16, aspp_hidden=32)
    opts = TrainOptions(
        tiny_dataset,
        tiny_dataset / split,
        tmp_path / "run",
        steps=40,
        batch_size=4,
        lr_visual=1e-3,
        lr_audio=1e-3,
        log_every=10,
        val_every=1000,
        config=cfg,
    )
    train(opts, log=lambda _m: None)
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[1]) for r in rows]
    assert losses[-1] < losses[0], losses
    model = ccstereo.load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert model.config == cfg
    out = tmp_path / "export"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccstereo.export.cli",
            str(tmp_path / "run" / "last.safetensors"),
            "-o",
            str(out),
            "--fp32-islands",
            "all",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx").is_file()


def test_resume_continues_from_the_saved_step(tiny_dataset, tmp_path):
    from ccstereo.config import ModelConfig
    from ccstereo.train.trainer import TrainOptions, train

    cfg = ModelConfig(resnet_width=16, aspp_hidden=32)
    base = dict(
        data=tiny_dataset,
        train_split=tiny_dataset / "splits/split1/train.txt",
        out=tmp_path / "r",
        batch_size=2,
        log_every=2,
        val_every=1000,
        config=cfg,
    )
    train(TrainOptions(steps=4, **base), log=lambda _m: None)
    summary = train(TrainOptions(steps=6, **base), log=lambda _m: None)
    assert summary["steps"] == 6
    steps = [int(r.split(",")[0]) for r in (tmp_path / "r" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6]


def test_scl_prefers_matching_positives_over_shuffled_negatives():
    torch.manual_seed(0)
    anchors = torch.randn(8, 32)
    near = anchors + 0.05 * torch.randn(8, 32)  # positives close to their anchors
    far = torch.randn(8, 32)  # shuffled negatives unrelated
    matched = scl_loss(anchors, near, far)
    swapped = scl_loss(anchors, far, near)  # the anchors now match their negatives
    assert matched < swapped
    assert matched < 0.5 and swapped > 2.0


def test_spatial_shuffle_permutes_positions_only():
    v = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    s = spatial_shuffle(v, torch.Generator().manual_seed(1))
    assert not torch.equal(s, v)
    assert torch.equal(s.sort(dim=-1).values.flatten(2).sort(-1).values, v.flatten(2).sort(-1).values)
    assert torch.equal(s.mean(dim=(2, 3)), v.mean(dim=(2, 3)))


def test_warm_start_from_an_onnx_export_keeps_it_exactly(tiny_dataset, tmp_path):
    """--init model.onnx --frozen-bn: with zero learning rates, two steps leave the exported model unchanged (the
    weights came back from the graph and no BatchNorm statistic moved); without --frozen-bn it is refused."""
    from ccstereo.config import ModelConfig
    from ccstereo.train.trainer import TrainOptions, train

    cfg = ModelConfig(resnet_width=16, aspp_hidden=32)
    torch.manual_seed(5)
    source = with_trained_batchnorms(ccstereo.CCStereo(cfg))
    ccstereo.save_checkpoint(source, tmp_path / "source.safetensors")
    export_fp32(tmp_path / "source.safetensors", tmp_path / "x")
    base = dict(
        data=tiny_dataset,
        train_split=tiny_dataset / "splits/split1/train.txt",
        steps=2,
        batch_size=2,
        lr_visual=0.0,
        lr_audio=0.0,
        val_every=1000,
        init=tmp_path / "x" / "model.onnx",
        config=cfg,
    )
    with pytest.raises(ValueError, match="model.onnx: .*--frozen-bn"):
        train(TrainOptions(out=tmp_path / "refused", **base), log=lambda _m: None)
    train(TrainOptions(out=tmp_path / "run", frozen_bn=True, **base), log=lambda _m: None)
    trained = ccstereo.load_checkpoint(tmp_path / "run" / "last.safetensors")
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (2, 224, 448, 3), dtype=np.uint8))
    mono = torch.from_numpy((rng.standard_normal((2, 10080)) * 0.1).astype(np.float32))
    index = torch.tensor([0, 1])
    with torch.no_grad():
        ref = source.eval().forward_windows(frames, mono, index).numpy()
        out = trained.forward_windows(frames, mono, index).numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_frames_kept_encoded_give_the_decoded_frames_batch_for_batch(tiny_dataset):
    """The trainer keeps frames as their files' bytes (a large set fits in memory): every crop the sampler takes,
    mirrored or not, equals the one from frames decoded up front."""
    from ccstereo.train.data import EncodedFrames, SegmentSampler, load_clip, read_split

    cfg = ccstereo.ModelConfig()
    ids = read_split(tiny_dataset / "splits" / "split1" / "train.txt")
    eager = [load_clip(tiny_dataset, i, cfg) for i in ids]
    encoded = [load_clip(tiny_dataset, i, cfg, encoded=True) for i in ids]
    assert all(isinstance(c.frames, EncodedFrames) for c in encoded)
    for a, b in zip(eager, encoded, strict=True):
        assert len(a.frames) == len(b.frames)
        assert np.array_equal(a.frames[[3, 2], 5:40, 7:90], b.frames[[3, 2], 5:40, 7:90])
        assert np.array_equal(a.frames, b.frames[:]) and np.array_equal(a.frames[4], b.frames[4])
    one, two = SegmentSampler(eager, cfg, 5, mirror=True), SegmentSampler(encoded, cfg, 5, mirror=True)
    for _ in range(3):
        x, y = one.batch(8), two.batch(8)
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.prev_frames, y.prev_frames)
        assert np.array_equal(x.binaural, y.binaural) and np.array_equal(x.mirrored, y.mirrored)


def test_keep_every_keeps_the_weights_of_those_steps_alone(tiny_dataset, tmp_path):
    from safetensors import safe_open

    from ccstereo.config import ModelConfig
    from ccstereo.train.trainer import TrainOptions, train

    out = tmp_path / "k"
    opts = TrainOptions(
        data=tiny_dataset,
        train_split=tiny_dataset / "splits/split1/train.txt",
        out=out,
        steps=5,
        batch_size=2,
        val_every=1000,
        keep_every=2,
        config=ModelConfig(resnet_width=16, aspp_hidden=32),
    )
    train(opts, log=lambda _m: None)
    kept = sorted(p.name for p in (out / "steps").iterdir())
    assert kept == ["step_000002.safetensors", "step_000004.safetensors"]

    def read(path):
        with safe_open(str(path), "pt") as fh:
            return fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not iterable)

    (meta2, w2), (meta4, w4) = (read(out / "steps" / n) for n in kept)
    _, last = read(out / "last.safetensors")
    assert '"step": "2"' in meta2["extra"] and '"step": "4"' in meta4["extra"]
    changed = [k for k in w4 if w4[k].is_floating_point() and not torch.equal(w4[k], w2[k])]
    assert changed, "the two kept steps hold the same weights"
    assert any(not torch.equal(w4[k], last[k]) for k in changed), "step 4's file holds the last step's weights"


def _saved(path, seed, **config):
    from ccstereo.config import ModelConfig

    torch.manual_seed(seed)
    model = ccstereo.CCStereo(ModelConfig(resnet_width=16, aspp_hidden=32, **config)).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()
    return ccstereo.save_checkpoint(model, path), model.state_dict()


def test_averaged_checkpoint_holds_the_mean_of_each_weight(tmp_path):
    from ccstereo.train.average import main

    (a, wa), (b, wb), (c, wc) = (_saved(tmp_path / f"{n}.safetensors", s) for n, s in (("a", 1), ("b", 2), ("c", 3)))
    out = tmp_path / "soup.safetensors"
    assert main([str(out), str(a), str(b), str(c)]) == 0
    soup = ccstereo.load_checkpoint(out).state_dict()
    floats = [k for k in wa if wa[k].is_floating_point()]
    assert floats and all(torch.allclose(soup[k], (wa[k] + wb[k] + wc[k]) / 3, atol=1e-6) for k in floats)
    assert not torch.equal(soup[floats[0]], wa[floats[0]])


def test_averaging_refuses_other_configs_and_its_own_input(tmp_path, capsys):
    from ccstereo.train.average import main

    (a, _), (b, _) = _saved(tmp_path / "a.safetensors", 1), _saved(tmp_path / "b.safetensors", 2)
    (other, _) = _saved(tmp_path / "wide.safetensors", 3, aspp_dilations=(2, 4, 6))
    assert main([str(tmp_path / "x.safetensors"), str(a), str(other)]) == 1
    line = capsys.readouterr().err.strip()
    assert "wide.safetensors" in line and "configuration" in line and "\n" not in line
    assert not (tmp_path / "x.safetensors").exists()
    before = b.read_bytes()
    assert main([str(b), str(a), str(b)]) == 1
    assert "overwrite" in capsys.readouterr().err and b.read_bytes() == before


def test_averaging_exported_graphs_means_their_recovered_weights_and_never_mixes_kinds(tmp_path, capsys):
    """Two fp32 graphs (``model.onnx``, BatchNorms folded): the soup holds the mean of the weights recovered from
    each; a graph beside a checkpoint is refused (folded and unfolded weights are not the same parameters)."""
    from ccstereo.config import ModelConfig
    from ccstereo.model.from_onnx import model_from_onnx
    from ccstereo.train.average import main
    from conftest import export_fp32, with_trained_batchnorms

    graphs = []
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        model = with_trained_batchnorms(ccstereo.CCStereo(ModelConfig(resnet_width=16, aspp_hidden=32)))
        path = ccstereo.save_checkpoint(model, tmp_path / f"{name}.safetensors")
        graphs.append(export_fp32(path, tmp_path / name))
    out = tmp_path / "soup.safetensors"
    assert main([str(out), *map(str, graphs)]) == 0
    soup = ccstereo.load_checkpoint(out).state_dict()
    wa, wb = (model_from_onnx(g).state_dict() for g in graphs)
    floats = [k for k in wa if wa[k].is_floating_point() and not torch.equal(wa[k], wb[k])]
    assert floats and all(torch.allclose(soup[k], (wa[k] + wb[k]) / 2, atol=1e-6) for k in floats)
    assert main([str(tmp_path / "mixed.safetensors"), str(graphs[0]), str(tmp_path / "b.safetensors")]) == 1
    assert "not both" in capsys.readouterr().err and not (tmp_path / "mixed.safetensors").exists()
