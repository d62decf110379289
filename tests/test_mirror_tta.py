"""Mirror test-time augmentation (RunOptions.mirror, ccs-run --mirror): every other tick's picture goes through the
model mirrored and that window's ears are swapped back; on by default for a model that says it was trained left/right
symmetric (ccs-export --mirror-tta; the bundled default), off for every other model (the official output)."""

import numpy as np
import pytest

from ccstereo.runtime.backends import default_model_path
from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
from ccstereo.runtime.errors import ModelMetadataError
from ccstereo.runtime.model_info import read_onnx_info
from ccstereo.runtime.windows import WindowPlan
from ccstereo.testing.onnx_props import with_metadata

ENGINE = {"backend": "onnxruntime", "precision": "fp32", "tune": False}


@pytest.fixture(scope="module")
def engine():
    return Binauralizer.load(None, **ENGINE)


def _clip(seed: int, windows: int, config):
    """Noise audio of ``windows`` whole windows and distinct, left/right unlike pictures already at the crop size (a
    picture at the model's size is not resampled, so mirroring it before or after the runtime is the same pixels)."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((2, windows * config.window_samples)).astype(np.float32) * 0.1
    ticks = int(windows * config.window_samples / config.sample_rate_hz * config.fps) + 2
    frames = []
    for t in range(ticks):
        frame = np.zeros((config.crop_height, config.crop_width, 3), np.uint8)
        frame[:, : config.crop_width // 3] = rng.integers(0, 256, 3, dtype=np.uint8)  # a coloured band on the left
        frame[40:120, 300 + 5 * t : 380 + 5 * t] = rng.integers(0, 256, 3, dtype=np.uint8)  # a box right of centre
        frames.append(frame)
    return audio, frames


def test_a_mirrored_window_is_the_ear_swapped_output_of_its_mirrored_picture(engine):
    """Windows that do not overlap (hop = window) and no V-TTA crop: with mirroring, every other window (the first,
    third, ...) gives exactly the model's output for the mirrored picture with the ears swapped, the others the plain
    output."""
    config = engine.config
    audio, frames = _clip(1, 6, config)
    mirrored_frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
    hop = config.window_samples
    run = {"hop_samples": hop, "tta": False, "full_band": False}
    got = engine.process_arrays(audio, frames, RunOptions(mirror=True, **run))
    plain = engine.process_arrays(audio, frames, RunOptions(mirror=False, **run))
    of_mirror = engine.process_arrays(audio, mirrored_frames, RunOptions(mirror=False, **run))
    for k in range(6):
        span = slice(k * hop, (k + 1) * hop)
        mirrored = k % 2 == 0
        expected = of_mirror[::-1, span] if mirrored else plain[:, span]
        np.testing.assert_allclose(got[:, span], expected, atol=1e-5 * np.abs(expected).max())
        if mirrored:  # the picture matters to this model: the mirrored window is not the plain one
            assert np.abs(got[0, span] - plain[0, span]).max() > 1e-3 * np.abs(plain[:, span]).max()


@pytest.mark.parametrize("hop_s", [0.05, 0.1, 0.2, 0.3])
def test_half_the_windows_are_mirrored_at_any_hop(engine, hop_s):
    """At 0.2 s every window's tick is odd: a rule by tick would mirror all of them or none. The windows that overlap
    any sample are half plain, half mirrored (one apart at most), and each batch's flags match its crops."""
    from ccstereo.runtime.report import StageTimes
    from ccstereo.runtime.stream import Batch, Batching, produce

    config = engine.config
    audio, frames = _clip(3, 6, config)
    plan = WindowPlan.for_config(config, int(hop_s * config.sample_rate_hz))
    batching = Batching(plan, config, 8, tta=True, mirror=True)
    plain = Batching(plan, config, 8, tta=True, mirror=False)
    flags, crops, plain_crops = [], [], []
    for batch in produce(iter([audio]), enumerate(frames), batching, StageTimes()):
        if isinstance(batch, Batch):
            flags += list(batch.mirrored)
            crops += [batch.frames[i] for i in batch.frame_index]
    for batch in produce(iter([audio]), enumerate(frames), plain, StageTimes()):
        if isinstance(batch, Batch):
            assert batch.mirrored is None
            plain_crops += [batch.frames[i] for i in batch.frame_index]
    assert len(flags) == plan.count(audio.shape[1])
    for flag, crop, reference in zip(flags, crops, plain_crops, strict=True):
        assert np.array_equal(crop, reference[:, ::-1] if flag else reference)
    overlapping = -(-config.window_samples // plan.hop_samples)
    for first in range(len(flags) - overlapping + 1):
        share = sum(flags[first : first + overlapping])
        assert abs(2 * share - overlapping) <= 1, (first, flags)


def test_mirroring_follows_the_model_unless_the_run_says_otherwise(engine, tmp_path):
    """The bundled default says it was trained with mirror augmentation: mirroring is on unless --no-mirror; the same
    graph without that entry (as every official checkpoint's export) runs without it unless --mirror."""
    assert read_onnx_info(default_model_path()).mirror_tta
    plain_model = with_metadata(default_model_path(), tmp_path / "plain.onnx", lambda p: p.pop("ccstereo.mirror_tta"))
    unmarked = Binauralizer.load(plain_model, **ENGINE)
    audio, frames = _clip(2, 3, engine.config)
    default = engine.process_arrays(audio, frames, RunOptions())
    assert np.array_equal(default, engine.process_arrays(audio, frames, RunOptions(mirror=True)))
    off = engine.process_arrays(audio, frames, RunOptions(mirror=False))
    assert np.abs(default - off).max() > 1e-3 * np.abs(off).max()
    assert np.array_equal(unmarked.process_arrays(audio, frames, RunOptions()), off)
    assert np.array_equal(unmarked.process_arrays(audio, frames, RunOptions(mirror=True)), default)


def test_a_model_whose_mirror_entry_is_not_true_or_false_is_refused(tmp_path):
    bad = with_metadata(default_model_path(), tmp_path / "bad.onnx", lambda p: p.update({"ccstereo.mirror_tta": "yes"}))
    with pytest.raises(ModelMetadataError, match=r"bad\.onnx.*mirror_tta"):
        read_onnx_info(bad)


def test_the_report_says_whether_mirroring_ran(engine, tmp_path):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"
    runs = {}
    for name, mirror in (("auto", None), ("off", False)):
        options = RunOptions(fmt="wav", full_band=False, mirror=mirror)
        runs[name] = engine.process(sample, tmp_path / f"{name}.wav", options).to_dict()["mirror"]
    assert runs == {"auto": True, "off": False}


@pytest.mark.parametrize("mark", [True, False])
def test_ccs_export_writes_the_mark_it_is_given_and_the_runtime_reads_it_back(tmp_path, mark):
    """``ccs-export --mirror-tta`` / without: the metadata the exporter writes into its graphs says it (read back from a
    saved file by the runtime's reader); without it no entry is written at all."""
    from ccstereo.export.options import ExportOptions
    from ccstereo.export.pipeline import _metadata
    from ccstereo.testing.onnx_props import with_metadata

    class _Model:  # the bundled graph's own config: its metadata is rewritten onto it below
        config = read_onnx_info(default_model_path()).config

    info = _metadata(_Model(), "0" * 64, "fp32", ExportOptions(tmp_path, mirror_tta=mark))
    props = info.to_props()
    assert ("ccstereo.mirror_tta" in props) == mark

    def replace(entries: dict) -> None:
        entries.clear()
        entries.update(props)

    saved = with_metadata(default_model_path(), tmp_path / "m.onnx", replace)
    assert read_onnx_info(saved).mirror_tta is mark
