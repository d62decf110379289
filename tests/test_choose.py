"""The one CPU engine chooser: its rule on given evidence (no engine is built), and engines that do no gating."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ccstereo.runtime.backends.choose import Candidate, Evidence, Known, choose
from ccstereo.runtime.backends.precision_policy import AUTO_MIN_SNR_DB, MIN_OFFERED_SNR_DB
from ccstereo.runtime.errors import BackendUnavailableError

ORT = Candidate("onnxruntime", "fp32", "model.onnx")
INT8 = Candidate("openvino", "int8", "model.int8.onnx")
BF16 = Candidate("openvino", "bf16", "model.onnx")
OV32 = Candidate("openvino", "fp32", "model.onnx")
ALL = [ORT, INT8, BF16, OV32]
MODEL = Path("/models/m")
EXACT = Evidence(float("inf"), 0.0, "at export")


class Recording(Known):
    """Known evidence that records which candidates the rule asked about."""

    def __init__(self, evidence, timed):
        super().__init__(evidence, timed)
        self.asked: list[Candidate] = []

    def __call__(self, candidate):
        self.asked.append(candidate)
        return super().__call__(candidate)


def here(snr, worst=0.0, ms=None):
    return Evidence(snr, worst, "on this CPU", ms)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_asked_by_name_runs_from_the_floor_up_and_is_refused_below_it_with_the_figure(precision):
    wanted = BF16 if precision == "bf16" else INT8
    at_floor = Known({wanted: here(MIN_OFFERED_SNR_DB + 0.5, worst=0.5)}, timed=False)  # fails auto, passes floor
    assert choose(("auto", precision), ALL, at_floor, None, MODEL).candidate == wanted
    below = Known({wanted: here(MIN_OFFERED_SNR_DB - 4.0)}, timed=False)
    with pytest.raises(BackendUnavailableError, match=rf"{precision} on this CPU: 26\.0 dB.*refused"):
        choose(("auto", precision), ALL, below, None, MODEL)
    with pytest.raises(BackendUnavailableError, match="not measured"):
        choose(("auto", precision), ALL, Known({}, timed=False), None, MODEL)


def test_timed_auto_takes_the_fastest_that_passes_the_gate_never_a_faster_one_that_fails():
    evidence = {
        ORT: here(90.0, None, ms=10.0),
        INT8: here(AUTO_MIN_SNR_DB - 1.0, 0.0, ms=2.0),  # fastest, but below the auto gate
        BF16: here(60.0, 0.001, ms=4.0),
        OV32: here(90.0, None, ms=9.0),
    }
    assert choose(("auto", "auto"), ALL, Known(evidence), None, MODEL).candidate == BF16
    evidence[BF16] = here(60.0, 0.05, ms=4.0)  # a paper metric moved 5 %: fails too
    assert choose(("auto", "auto"), ALL, Known(evidence), None, MODEL).candidate == OV32
    with pytest.raises(BackendUnavailableError, match="no engine reproduces"):
        choose(("auto", "auto"), ALL, Known({c: here(10.0, ms=1.0) for c in ALL}), None, MODEL)


def test_untimed_auto_follows_the_units_and_asks_only_about_what_it_may_take(monkeypatch):
    good = {INT8: here(45.0), BF16: here(60.0), ORT: EXACT, OV32: EXACT}
    monkeypatch.setenv("CCSTEREO_CPU_FLAGS", "none")
    judge = Recording(good, timed=False)
    assert choose(("auto", "auto"), ALL, judge, None, MODEL).candidate == ORT
    assert judge.asked == []  # no unit: no reduced precision is even looked at (no engine would be built)
    assert choose(("auto", "auto"), ALL, Recording(good, False), "avx512_vnni", MODEL).candidate == INT8
    monkeypatch.setenv("CCSTEREO_CPU_FLAGS", "avx512_bf16")
    judge = Recording({**good, INT8: here(20.0)}, timed=False)
    choice = choose(("auto", "auto"), ALL, judge, "avx512_vnni", MODEL)
    assert choice.candidate == BF16 and judge.asked == [INT8, BF16]
    assert "60.0 dB" in choice.reason
    only_ov = choose(("openvino", "auto"), ALL, Recording({BF16: here(20.0)}, False), None, MODEL)
    assert only_ov.candidate == OV32  # --backend openvino: never onnxruntime


def test_fp32_asked_is_fp32_of_the_backend_asked():
    assert choose(("auto", "fp32"), ALL, Known({}, timed=False), None, MODEL).candidate == ORT
    assert choose(("openvino", "fp32"), ALL, Known({}, timed=False), None, MODEL).candidate == OV32


def test_an_engine_runs_what_it_is_given_the_gate_is_the_choosers(tmp_path, exported):
    """An int8 graph whose export figure is below the floor still builds and runs when built directly; only the
    chooser refuses it (test_ccs_run covers the refusal end to end). (The fixture checkpoint's export: the bundled
    default has no int8 graph since 2026-12-07.)"""
    pytest.importorskip("openvino")
    import json

    import numpy as np

    from ccstereo.runtime.backends.choose import build
    from ccstereo.testing.onnx_props import with_metadata

    claim = {"ccstereo.measured_snr_db": json.dumps({"int8": 12.0})}
    with_metadata(exported / "model.int8.onnx", tmp_path / "model.int8.onnx", lambda props: props.update(claim))
    shutil.copy(exported / "model.onnx", tmp_path / "model.onnx")
    engine = build(tmp_path, INT8, batch=2)
    config = engine.info.config
    frames = np.zeros((1, config.crop_height, config.crop_width, 3), np.uint8)
    out = engine.run(frames, np.zeros((2, config.window_samples), np.float32), np.zeros(2, np.int64))
    assert out.shape == (2, 2, config.window_samples) and np.isfinite(out).all()
    with pytest.raises(BackendUnavailableError, match="12.0 dB"):
        choose(("auto", "int8"), [INT8], Known({INT8: Evidence(12.0, 0.0, "at export")}, False), None, tmp_path)


def _batch(seed: int):
    """Two random pictures and three windows of noise for the fixture model: (frames, mono, frame_index)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (2, 224, 448, 3), dtype=np.uint8)
    return frames, rng.standard_normal((3, 10080)).astype(np.float32), np.array([0, 1, 1])


def test_a_compiled_graph_is_kept_and_a_damaged_one_is_compiled_again(tmp_path, monkeypatch, exported):
    """OpenVINO's compiled graph is written once (atomically) to the user cache and imported on the next start;
    the imported engine computes the same bits; a damaged blob is compiled again and replaced, never trusted."""
    pytest.importorskip("openvino")
    import numpy as np

    from ccstereo.runtime.backends.choose import build

    monkeypatch.setenv("CCSTEREO_CACHE_DIR", str(tmp_path / "cache"))
    frames, mono, index = _batch(0)
    first = build(exported, INT8).run(frames, mono, index)
    blobs = list((tmp_path / "cache" / "compiled").iterdir())
    assert [b.suffix for b in blobs] == [".blob"]  # one file, no temporary left beside it
    written = blobs[0].stat().st_mtime_ns
    assert np.array_equal(build(exported, INT8).run(frames, mono, index), first)
    assert blobs[0].stat().st_mtime_ns == written  # imported, not compiled and written again
    blobs[0].write_bytes(b"not a compiled graph" * 64)
    assert np.array_equal(build(exported, INT8).run(frames, mono, index), first)
    assert blobs[0].stat().st_size > 1_000_000  # replaced by a real one
    assert not list((tmp_path / "cache" / "compiled").glob("*partial*"))
    assert build(exported, INT8, threads=1).run(frames, mono, index).shape == first.shape
    assert len(list((tmp_path / "cache" / "compiled").iterdir())) == 2  # other settings: another blob


def test_an_engine_imported_from_a_kept_graph_outlives_everything_that_imported_it(tmp_path, exported):
    """A kept graph is imported from its file's pages (``openvino._imported``), and the compiled model reads its
    weights there without keeping them alive: a process that dropped what imported it, collected its garbage and
    had the kept file replaced (as another process's compile replaces it) still computes the same bits (a mapping
    freed under it segfaults). Run in a fresh interpreter, whose crash is an exit status here."""
    pytest.importorskip("openvino")
    import subprocess
    import sys

    code = f"""
import gc, os, numpy as np
from pathlib import Path
from ccstereo.runtime.backends.choose import build, Candidate
INT8 = Candidate("openvino", "int8", "model.int8.onnx")
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (2, 224, 448, 3), dtype=np.uint8)
mono, index = rng.standard_normal((3, 10080)).astype(np.float32), np.array([0, 1, 1])
first = build(Path({str(exported)!r}), INT8).run(frames, mono, index)  # compiled, and kept
blob = next((Path({str(tmp_path)!r}) / "cache" / "compiled").iterdir())
engine = build(Path({str(exported)!r}), INT8)  # imported from the kept file
engine.compiled
gc.collect()
spare = blob.with_name("spare")
spare.write_bytes(blob.read_bytes())
os.rename(spare, blob)  # replaced, as the cache replaces a file
gc.collect()
print(all(np.array_equal(engine.run(frames, mono, index), first) for _ in range(3)))
"""
    env = {**__import__("os").environ, "CCSTEREO_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "True"


def test_a_kept_graph_on_a_file_system_that_cannot_map_it_is_read_not_compiled_again(tmp_path, monkeypatch, exported):
    """Where the cache's file system refuses to map files (mmap fails with ENODEV there), the kept graph is read
    into memory and imported as before: not compiled again and rewritten at every start. (No such file system is
    at hand here: the refusal is np.memmap's OSError, raised for it.)"""
    pytest.importorskip("openvino")
    import errno

    import numpy as np

    from ccstereo.runtime.backends import openvino as ov_backend
    from ccstereo.runtime.backends.choose import build

    monkeypatch.setenv("CCSTEREO_CACHE_DIR", str(tmp_path / "cache"))
    frames, mono, index = _batch(1)
    first = build(exported, INT8).run(frames, mono, index)
    (blob,) = (tmp_path / "cache" / "compiled").iterdir()
    written = blob.stat().st_mtime_ns

    def refused(*args, **kwargs):
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(ov_backend.np, "memmap", refused)
    assert np.array_equal(build(exported, INT8).run(frames, mono, index), first)
    assert blob.stat().st_mtime_ns == written  # imported, not compiled and written again


def test_every_precision_can_be_asked_for_on_any_cpu_but_only_units_are_timed(monkeypatch, exported):
    """OpenVINO emulates a missing BF16 unit, so bf16 asked by name is a candidate on every CPU (its accuracy
    check decides); the tuner times it only where the CPU has the unit (emulated it would only lose)."""
    pytest.importorskip("openvino")
    from ccstereo.runtime.backends.choose import cpu_candidates
    from ccstereo.runtime.backends.tuning import timed_candidates

    for flags, native in (("avx2 fma", False), ("avx512_bf16 avx512_vnni", True)):
        monkeypatch.setenv("CCSTEREO_CPU_FLAGS", flags)
        assert {BF16, INT8, OV32, ORT} <= set(cpu_candidates(exported))
        assert (BF16 in timed_candidates(exported)) is native
        default = set(cpu_candidates(Path(__file__).resolve().parents[1] / "runtime" / "assets" / "default"))
        assert {BF16, OV32, ORT} <= default and INT8 not in default  # no int8 graph bundled: not a candidate
