"""ccs-run - --live: windows run as their sound arrives, the delay stays bounded, a machine that falls behind
degrades in the stated order, and an interrupted live output is still a finished container.

The timed runs are real: ffmpeg sends a stream at real time (``-re``) into ccs-run, and the harness
(``ccstereo.testing.live``) notes when each click of the stream comes out of ccs-run's standard output."""

import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from ccstereo.runtime.live import LEVELS, RECOVER_S, SETTLE_S, WARMUP_S, LiveControl
from ccstereo.testing.live import click_source, run_live
from conftest import REPO

RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
SAMPLE = REPO / "samples" / "sample.mp4"
ENGINE = ("--backend", "onnxruntime", "--precision", "fp32", "--clip-mode", "clamp", "-q")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_level_steps_down_once_per_settle_time_and_not_while_the_delay_shrinks():
    clock = Clock()
    control = LiveControl(0.25, clock=clock)
    control.observe(0.5, 0.0)
    assert control.level == 0  # the first seconds prepare the engine
    clock.now = WARMUP_S
    control.observe(0.5, 0.0)
    assert control.level == 1
    clock.now += SETTLE_S / 2
    control.observe(0.5, 0.1)
    assert control.level == 1  # too soon after the last step
    clock.now = WARMUP_S + SETTLE_S + 0.01
    control.observe(0.3, 0.2)  # still over the budget, but 0.2 s less than a second ago: catching up
    assert control.level == 1
    clock.now += SETTLE_S + 0.01
    control.observe(0.4, 0.3)
    assert control.level == 2
    for i in range(10):
        clock.now += SETTLE_S + 0.01
        control.observe(0.4 + 0.01 * i, 0.4)
    assert control.level == len(LEVELS) - 1  # the last level is the floor
    assert [LEVELS[c.level] for c in control.changes] == list(LEVELS[1:])


def test_a_level_is_undone_after_a_calm_spell_and_not_before():
    clock = Clock()
    control = LiveControl(0.25, clock=clock)
    control.observe(1.0, 0.0)
    clock.now = WARMUP_S
    control.observe(1.0, 0.0)
    assert control.level == 1
    for _ in range(int(RECOVER_S) - 1):
        clock.now += 1.0
        control.observe(0.02, 1.0)
    assert control.level == 1
    clock.now += 2.0
    control.observe(0.02, 2.0)
    assert control.level == 0
    summary = control.summary()
    assert summary["degradations"] == 1 and [c["level"] for c in summary["changes"]] == [LEVELS[1], LEVELS[0]]


def _mkv_stream(tmp_path):
    stream = tmp_path / "stream.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(SAMPLE), "-c", "copy", "-f", "matroska", str(stream)],
                   check=True)  # fmt: skip
    return stream


def test_live_output_equals_the_pipes_when_it_keeps_up(tmp_path):
    """Whole-speed input and a budget it never exceeds: the same windows, batched as they come, give the
    non-live pipe's samples."""
    stream = _mkv_stream(tmp_path)
    outs = []
    for name, extra in (("pipe.wav", ()), ("live.wav", ("--live", "--live-budget-s", "1000"))):
        out = tmp_path / name
        with open(out, "wb") as sink:
            command = [*RUN, "-", "-o", "-", "--format", "wav", *ENGINE, *extra]
            done = subprocess.run(command, input=stream.read_bytes(), stdout=sink, stderr=subprocess.PIPE, timeout=600)
        assert done.returncode == 0, done.stderr.decode()
        outs.append(_wav(out))
    assert outs[0].shape == outs[1].shape and outs[0].shape[1] > 7 * 16000  # the sample: 8 s at 16 kHz
    assert np.max(np.abs(outs[0] - outs[1])) < 1e-5


def _wav(path):
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1).reshape(-1, 2).T


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    return click_source(tmp_path_factory.mktemp("live") / "clicks.mkv", 20.0)


def test_a_real_time_stream_comes_out_within_a_second(clicks):
    run = run_live(clicks, [], 20.0)
    figures = run.summary()
    assert run.returncode == 0, run.stderr
    assert figures["missing"] == 0 and figures["clicks"] >= 18, figures
    # window 0.63 s + hop 0.1 s + one batch's compute: the bound is p95 <= 1.0 s, max <= 1.5 s
    assert figures["delay_p95_s"] <= 1.0 and figures["delay_max_s"] <= 1.5, (figures, run.stderr)
    assert figures["delay_mean_s"] >= 0.63, figures  # nothing can come out before its window has arrived
    assert "live: compute delay" in run.stderr


def test_falling_behind_degrades_in_the_stated_order_and_keeps_every_sample(clicks):
    """A budget no batch can keep (1 ms) forces every step: the levels come in the stated order, each said on
    standard error, and the output still holds the whole stream, every click in its place."""
    run = run_live(clicks, ["--live-budget-s", "0.001"], 20.0)
    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith("live: behind")]
    assert [line.rsplit(": ", 1)[1] for line in said] == list(LEVELS[1:]), run.stderr
    assert "degraded 3 times" in run.stderr
    assert run.missing == 0 and len(run.delays_s) >= 18
    assert abs(len(run.output) - 20.0 * 48000) < 0.05 * 48000


def _clean_seconds(out) -> float:
    """Assert that FFmpeg decodes ``out`` without a word; return its seconds of sound."""
    check = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr
    with av.open(str(out)) as c:
        return sum(f.samples for f in c.decode(c.streams.audio[0])) / 48000


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_on_a_live_pipe_finishes_the_container(tmp_path, clicks, sig):
    out = tmp_path / "out.mkv"
    producer = subprocess.Popen(["ffmpeg", "-v", "error", "-re", "-i", str(clicks), "-c", "copy", "-f", "matroska",
                                 "-"], stdout=subprocess.PIPE)  # fmt: skip
    with open(out, "wb") as sink:
        ccs = subprocess.Popen([*RUN, "-", "--live", "-o", "-", "-q"], stdin=producer.stdout, stdout=sink,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal)  # fmt: skip
        producer.stdout.close()
        deadline = time.time() + 60
        while out.stat().st_size < 20000 and time.time() < deadline:  # output has begun
            time.sleep(0.1)
        time.sleep(3.0)  # seconds of it
        ccs.send_signal(sig)
        _, err = ccs.communicate(timeout=60)
    producer.kill()
    producer.wait()
    assert ccs.returncode == 128 + sig, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("live: ")]  # degradations said
    assert len(lines) == 1 and "output sent so far is complete" in lines[0], err
    seconds = _clean_seconds(out)
    assert 2.0 < seconds < 19, seconds


def test_a_live_stream_cut_mid_element_ends_with_one_line_and_a_finished_output(tmp_path):
    """The producer died in the middle of writing (the last cluster is incomplete): exit 1, one error line, and the
    output sent so far is a finished container. (A producer killed between two clusters leaves a stream that ends
    like any other: Matroska written to a pipe carries no end marker, so that reads as the end: exit 0.)"""
    stream = _mkv_stream(tmp_path).read_bytes()
    out = tmp_path / "out.mkv"
    with open(out, "wb") as sink:
        done = subprocess.run([*RUN, "-", "--live", "-o", "-", "-q"], input=stream[: len(stream) // 2], stdout=sink,
                              stderr=subprocess.PIPE, timeout=300, text=False)  # fmt: skip
    lines = [line for line in done.stderr.decode().splitlines() if not line.startswith("live: ")]
    assert done.returncode == 1 and len(lines) == 1 and "truncated" in lines[0], done.stderr.decode()
    check = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr


def test_a_killed_nut_producer_ends_with_one_line_and_a_finished_output(tmp_path, clicks):
    """A real producer, SIGKILLed while it streams NUT in real time: FFmpeg's NUT muxer ends every stream it
    finishes with an index packet (on a pipe too), so a stream without one was cut, even between two packets: exit
    1, one line, the output sent so far a finished container. (Matroska and MPEG-TS to a pipe end with nothing of
    the kind: a producer killed between two of their packets reads as a clean end.)"""
    out = tmp_path / "out.mkv"
    producer = subprocess.Popen(["ffmpeg", "-v", "error", "-re", "-i", str(clicks), "-c", "copy", "-f", "nut", "-"],
                                stdout=subprocess.PIPE)  # fmt: skip
    with open(out, "wb") as sink:
        ccs = subprocess.Popen([*RUN, "-", "--live", "-o", "-", "-q"], stdin=producer.stdout, stdout=sink,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
        producer.stdout.close()
        deadline = time.time() + 60
        while out.stat().st_size < 20000 and time.time() < deadline:  # output has begun
            time.sleep(0.1)
        time.sleep(2.0)  # seconds of it
        producer.kill()
        producer.wait()
        _, err = ccs.communicate(timeout=60)
    lines = [line for line in err.strip().splitlines() if not line.startswith("live: ")]
    assert ccs.returncode == 1 and len(lines) == 1 and "without its closing index" in lines[0], err
    seconds = _clean_seconds(out)
    assert 1.0 < seconds < 19, seconds


def test_a_nut_stream_cut_between_two_packets_is_truncated_and_a_whole_one_is_not(tmp_path):
    from ccstereo.runtime.single_pass import NUT_SYNCPOINT

    whole = subprocess.run(["ffmpeg", "-v", "error", "-i", str(SAMPLE), "-c", "copy", "-f", "nut", "-"],
                           capture_output=True, check=True).stdout  # fmt: skip
    cut = whole[: whole.index(NUT_SYNCPOINT, len(whole) // 2)]  # ends exactly where a syncpoint would begin
    for data, code in ((whole, 0), (cut, 1)):
        done = subprocess.run([*RUN, "-", "-o", "-", "--format", "wav", *ENGINE], input=data, capture_output=True,
                              timeout=300)  # fmt: skip
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == code, lines
        assert (lines == []) if code == 0 else (len(lines) == 1 and "without its closing index" in lines[0]), lines
