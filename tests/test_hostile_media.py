"""Media nobody on the team made: every hostile case ends in a valid output or a clean one-line error, and each
defect found by trying the product on such media stays fixed (inputs made by ffmpeg's CLI, or by PyAV with the
odd property set on purpose). Runs ccs-run as a user does, with the bundled default model."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from ccstereo.testing import hostile

RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
CASES = {case.name: case for case in hostile.cases()}


def ccs_run(*args, timeout=300, **kwargs):
    return subprocess.run([*RUN, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def partials(*folders: Path) -> list[str]:
    return sorted(p.name for f in folders for p in f.iterdir() if ".partial-" in p.name)


def audio_of(path: Path) -> tuple[np.ndarray, int, float]:
    """Return (samples [C, N] float, rate, presentation time of the first sample) of a file's first audio."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
    first = next(f.time for f in frames if f.time is not None)
    to_float = av.AudioResampler(format="fltp", layout=frames[0].layout.name, rate=frames[0].sample_rate)
    planar = [g for f in frames for g in to_float.resample(f)] + to_float.resample(None)
    pcm = np.concatenate([g.to_ndarray() for g in planar], axis=1)
    return pcm, frames[0].sample_rate, float(first)


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def small_video(path: Path, seconds: float) -> Path:
    """Write an H.264 + AAC mkv of ``seconds`` (160x96 at 10 fps, a 440 Hz tone) with the ffmpeg CLI."""
    sources = (*hostile.video_src(seconds, "160x96", 10), *hostile.tone_src(seconds))
    hostile.ffmpeg(*sources, *hostile.X264, *hostile.AAC, str(path))
    return path


def click_time_s(path: Path) -> float:
    """Return the presentation time of the loudest sample of the first audio track."""
    pcm, rate, start = audio_of(path)
    return start + int(np.abs(pcm).sum(axis=0).argmax()) / rate


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_case_ends_in_a_valid_output_or_one_clean_line(name, tmp_path):
    case = CASES[name]
    source = case.build(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    started = time.perf_counter()
    result = ccs_run(source, "--quiet", timeout=120)
    assert time.perf_counter() - started < 120
    assert "Traceback" not in result.stderr, result.stderr
    assert partials(tmp_path) == []
    created = sorted({p.name for p in tmp_path.iterdir()} - before)
    if case.expect == "ok":
        assert result.returncode == 0, result.stderr
        assert len(created) == 1 and ".binaural." in created[0], created
        pcm, rate, _start = audio_of(tmp_path / created[0])
        assert pcm.shape[0] == 2 and pcm.shape[1] > 0 and np.isfinite(pcm).all()
        if "gap" not in name:  # (lost packets: the input's decoded length is not its timeline's; tested below)
            source_pcm, source_rate, _ = audio_of(source)
            assert pcm.shape[1] / rate == pytest.approx(source_pcm.shape[1] / source_rate, abs=0.05)
    else:
        assert result.returncode == 1, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and str(source) in errors[0], result.stderr
        assert all(word in errors[0] for word in case.words), errors[0]
        assert "internal error" not in errors[0]
        assert created == []


# -- the defects found on hostile media, one regression test each --------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_named_as_the_input_is_refused_and_the_input_kept(tmp_path, overwrite):
    source = hostile.h264_aac_mp4(tmp_path, seconds=1.0)
    original = source.read_bytes()
    for target in (source, tmp_path / "." / source.name):
        result = ccs_run(source, "-o", target, *overwrite)
        assert result.returncode == 2 and "overwrite" in result.stderr, result.stderr
    link = tmp_path / "link.mp4"
    link.symlink_to(source)
    assert ccs_run(link, "-o", source, *overwrite).returncode == 2
    assert source.read_bytes() == original and partials(tmp_path) == []


def test_audio_starting_after_the_picture_keeps_its_place(tmp_path):
    """-itsoffset 1.5: the audio stream starts 1.5 s into the video; a click 1.0 s into it sits at 2.5 s."""
    source = tmp_path / "late.mp4"
    click = ("-itsoffset", "1.5", "-f", "lavfi", "-i", "aevalsrc='0.5*between(t\\,1.0\\,1.002)':s=44100:d=2.5")
    late = (*hostile.VIDEO_THEN_AUDIO, *hostile.X264, *hostile.AAC)
    hostile.ffmpeg(*hostile.video_src(4.0), *click, *late, str(source))
    assert click_time_s(source) == pytest.approx(2.5, abs=0.01)
    result = ccs_run(source, "--quiet")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "late.binaural.mp4"
    assert click_time_s(out) == pytest.approx(2.5, abs=0.025)  # AAC frame granularity, well under lip-sync
    assert video_packets(out) == video_packets(source)
    report_path = tmp_path / "r.json"
    assert ccs_run(source, "--quiet", "--format", "wav", "--report", report_path).returncode == 0
    entry = json.loads(report_path.read_text())["files"][0]
    wav, rate = sf.read(tmp_path / "late.binaural.wav")
    # a wav cannot carry a start offset: it starts at the audio's first sample and the report says where that is
    assert entry["audio_start_s"] + int(np.abs(wav).sum(axis=1).argmax()) / rate == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize("gap_s", [0.3, 1.0])
def test_missing_audio_packets_become_silence_on_the_timeline(tmp_path, gap_s):
    source = hostile.audio_gap(tmp_path, gap_s)
    result = ccs_run(source, "--quiet", "--format", "wav", "--clip-mode", "none")
    assert result.returncode == 0, result.stderr  # a 1.0 s gap is not a truncated file
    wav, rate = sf.read(source.with_name(f"{source.stem}.binaural.wav"))
    assert len(wav) / rate == pytest.approx(5.0, abs=0.01)
    assert int(np.abs(wav).sum(axis=1).argmax()) / rate == pytest.approx(hostile.gap_click_s(2.5, gap_s), abs=0.005)
    gap = wav[int(2.55 * rate) : int((2.5 + gap_s - 0.1) * rate)]
    assert np.abs(gap).max() < 1e-3  # the gap is silence (up to the model's window edges)


@pytest.mark.parametrize("fmt", ["wav", "mp4"])
def test_nan_and_inf_samples_are_named_not_written(tmp_path, fmt):
    source = hostile.non_finite_float_audio(tmp_path)
    result = ccs_run(source, "--format", fmt)
    assert result.returncode == 1
    assert "NaN or infinite" in result.stderr.strip().splitlines()[-1] and str(source) in result.stderr
    assert not list(tmp_path.glob("*.binaural.*")) and partials(tmp_path) == []


def test_webm_vp8_defaults_to_a_container_that_carries_it(tmp_path):
    source = tmp_path / "clip.webm"
    vp8_opus = ("-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus")
    hostile.ffmpeg(*hostile.video_src(1.5), *hostile.tone_src(1.5), *vp8_opus, str(source))
    result = ccs_run(source, "--quiet")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "clip.binaural.mkv"
    assert video_packets(out) == video_packets(source)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp8"


@pytest.mark.parametrize("value", ["-1", "0"])
def test_impossible_batch_size_is_bad_usage(tmp_path, value):
    source = hostile.h264_aac_mp4(tmp_path, seconds=1.0)
    result = ccs_run(source, "--batch-size", value, timeout=60)
    assert result.returncode == 2 and "batch" in result.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.mp4"]


@pytest.mark.parametrize(
    "option",
    [["--hop-s", "0"], ["--hop-s", "-0.1"], ["--hop-samples", "0"], ["--format", "ogg"], ["--clip-mode", "soft"]],
)
def test_other_impossible_options_are_bad_usage(tmp_path, option):
    source = hostile.h264_aac_mp4(tmp_path, seconds=1.0)
    result = ccs_run(source, *option, timeout=60)
    assert result.returncode == 2, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.mp4"]


def _long_input(tmp_path: Path) -> Path:
    source = tmp_path / "long.mkv"
    small_video(source, 120.0)
    return source


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_leaves_nothing_and_exits_promptly(tmp_path, sig, code):
    source = _long_input(tmp_path)
    log = tmp_path.parent / f"{tmp_path.name}.stderr"  # a file, not a pipe: a full pipe would stall the run
    with log.open("w") as stderr:
        process = subprocess.Popen([*RUN, str(source), "--quiet"], stderr=stderr, text=True)
    deadline = time.monotonic() + 60
    while not partials(tmp_path) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    if not partials(tmp_path):
        process.kill()
        pytest.fail(f"the run never started writing (exit {process.wait()}): {log.read_text()[-3000:]}")
    time.sleep(1.0)  # well inside the run: decoding, inference and encoding all in flight
    sent = time.monotonic()
    process.send_signal(sig)
    process.wait(timeout=30)
    err = log.read_text()
    assert process.returncode == code, err
    assert time.monotonic() - sent < 10
    assert partials(tmp_path) == [] and not list(tmp_path.glob("*.binaural.*"))
    assert "Traceback" not in err


def test_full_scale_input_never_clips_silently(tmp_path):
    source = hostile.full_scale_square(tmp_path)
    mix = audio_of(source)[0].sum(axis=0)
    peaks = {}
    for mode in ("rescale", "clamp", "none"):
        report = tmp_path / f"{mode}.json"
        out = tmp_path / f"{mode}.wav"
        result = ccs_run(source, "-o", out, "--clip-mode", mode, "--report", report)
        assert result.returncode == 0, result.stderr
        entry = json.loads(report.read_text())["files"][0]["clip"]
        wav, _ = sf.read(out, always_2d=True)
        peaks[mode] = np.abs(wav).max()
        assert entry["peak"] > 1.0 and entry["samples_over"] > 0
        assert "full scale" in result.stderr  # said on the terminal, not only in the report
        if mode == "rescale":
            assert entry["action"] == "rescaled" and peaks[mode] <= 1.0
            gain = 10 ** (entry["gain_db"] / 20)
            np.testing.assert_allclose(wav[:, 0] + wav[:, 1], gain * mix, atol=1e-4)  # scaled, not distorted
        elif mode == "clamp":
            assert entry["action"] == "clamped" and peaks[mode] <= 1.0
        else:
            assert entry["action"] == "kept" and peaks[mode] == pytest.approx(entry["peak"], rel=1e-5)
    quiet = hostile.h264_aac_mp4(tmp_path, "quiet.mp4", seconds=1.0)
    report = tmp_path / "quiet.json"
    assert ccs_run(quiet, "--format", "wav", "--report", report, "--quiet").returncode == 0
    assert json.loads(report.read_text())["files"][0]["clip"]["action"] == "none"  # nothing to do: untouched


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_a_new_file_gets(tmp_path, umask):
    source = hostile.h264_aac_mp4(tmp_path, seconds=1.0)
    for fmt in ("mp4", "wav"):
        result = ccs_run(
            source, "--format", fmt, "--quiet", "--report", tmp_path / "r.json", preexec_fn=lambda: os.umask(umask)
        )
        assert result.returncode == 0, result.stderr
        for made in (tmp_path / f"plain.binaural.{fmt}", tmp_path / "r.json"):
            assert stat.S_IMODE(made.stat().st_mode) == 0o666 & ~umask, made


def test_streams_of_different_lengths_are_kept_as_they_are(tmp_path):
    """Lossless mkv, 38 frames at 10 fps over 3.0 s of audio: not truncated; all of the picture kept."""
    source = hostile.video_outlasts_audio(tmp_path)
    result = ccs_run(source, "--quiet")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "long_video.binaural.mkv"
    assert video_packets(out) == video_packets(source) and len(video_packets(out)) == 38
    pcm, rate, _ = audio_of(out)
    assert pcm.shape[1] / rate == pytest.approx(3.0, abs=0.03)  # the output audio follows the audio
    longer_audio = hostile.audio_outlasts_video(tmp_path)
    assert ccs_run(longer_audio, "--quiet", "--format", "wav").returncode == 0
    assert sf.info(str(tmp_path / "long_audio.binaural.wav")).duration == pytest.approx(3.0, abs=0.01)


def test_audio_that_ends_before_its_own_stream_says_is_truncated(tmp_path):
    source = hostile.truncated_half(tmp_path)
    result = ccs_run(source)
    assert result.returncode == 1 and "truncated" in result.stderr and "audio stream declares" in result.stderr
    assert partials(tmp_path) == [] and not list(tmp_path.glob("*.binaural.*"))


def test_full_disk_is_a_clean_error_with_no_temporary_file(tmp_path):
    """The output folder is a 1 MiB tmpfs (a mount namespace of its own: root, or an unprivileged user
    namespace otherwise); a 30 s float wav needs ~10 MiB."""
    source = tmp_path / "in.mkv"
    small_video(source, 30.0)
    small = tmp_path / "small"
    small.mkdir()
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {small} && "
        f"{' '.join(RUN)} {source} -o {small}/out.wav --quiet; echo EXIT=$?; ls -A {small}"
    )
    result = subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "EXIT=1" in result.stdout, (result.stdout, result.stderr)
    assert result.stdout.strip().endswith("EXIT=1"), result.stdout  # the tmpfs is empty: nothing left behind
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in result.stderr


WRITER_ON_FULL_DISK = """
import os, sys
from pathlib import Path
import numpy as np
from ccstereo.runtime.writers import OutputError, SoundfileWriter
folder, fmt, fill = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "fill"
if fill:  # the file system is full before the writer opens its file
    fd = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, bytes(4096)):
            pass
    except OSError:
        pass
    os.close(fd)
writer = None
try:
    writer = SoundfileWriter(folder / f"out.{fmt}", 48000, fmt)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4800)).astype(np.float32)  # flac cannot shrink it
    for _ in range(400):
        writer.write(noise)
    writer.commit()
    print("WROTE")
except OutputError as exc:
    if writer is not None:
        writer.abort()
    print("ERROR", exc)
(folder / "ballast").unlink(missing_ok=True)
print("LEFT", sorted(p.name for p in folder.iterdir()))
"""


@pytest.mark.parametrize("fill", ["fill", "write"])
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_audio_writer_names_a_full_disk_and_leaves_nothing(tmp_path, fmt, fill):
    """libsndfile says only "System error." when a write fails; which writer of ccs-run meets the full disk
    first varies from run to run, so the audio writer is driven straight into a 256 KiB tmpfs."""
    small = tmp_path / "small"
    small.mkdir()
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    write = f"{sys.executable} -c '{WRITER_ON_FULL_DISK}' {small} {fmt} {fill}"
    script = f"mount -t tmpfs -o size=256k tmpfs {small} && {write}"
    result = subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and "Traceback" not in result.stderr, (result.stdout, result.stderr)
    assert lines[0].startswith(f"ERROR {small}/out.{fmt}: ") and "No space left on device" in lines[0], lines
    assert lines[-1] == "LEFT []", lines


def test_two_processes_writing_one_output_leave_one_valid_file(tmp_path):
    source = tmp_path / "in.mkv"
    small_video(source, 8.0)
    out = tmp_path / "shared.mp4"
    runs = [
        subprocess.Popen([*RUN, str(source), "-o", str(out), "--overwrite", "--quiet"], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for run in runs:
        run.communicate(timeout=300)
        assert run.returncode == 0
    pcm, rate, _ = audio_of(out)
    assert pcm.shape[0] == 2 and pcm.shape[1] / rate == pytest.approx(8.0, abs=0.05)
    assert video_packets(out) == video_packets(source)
    assert partials(tmp_path) == []
