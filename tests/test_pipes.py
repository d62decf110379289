"""ccs-run on pipes: ``-`` reads a stream from standard input in one pass, ``-o -`` writes one to standard output.

The same input gives the same output samples through a pipe as from its file (same engine), with the video packets
copied byte for byte; a stream cut off mid-way ends with one line and an output that still decodes cleanly."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from conftest import REPO

RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
SAMPLE = REPO / "samples" / "sample.mp4"
ENGINE = ("--backend", "onnxruntime", "--precision", "fp32", "--clip-mode", "clamp", "-q")
pytestmark = pytest.mark.system


def remux(tmp_path: Path, name: str, *args: str) -> Path:
    """The bundled sample's streams copied by ffmpeg into another container (``args``: its output options)."""
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(SAMPLE), "-c", "copy", *args, str(out)], check=True)
    return out


def piped(source: Path, out: Path, *args: str, stdin_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """``ccs-run - -o - ARGS < source > out``."""
    data = source.read_bytes() if stdin_bytes is None else stdin_bytes
    with open(out, "wb") as sink:
        return subprocess.run([*RUN, "-", "-o", "-", *args], input=data, stdout=sink, stderr=subprocess.PIPE,
                              timeout=600)  # fmt: skip


def decoded_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("clip.mkv", ()),
        ("clip.ts", ()),
        ("clip.mp4", ("-movflags", "frag_keyframe+empty_moov")),
        ("clip.mp4", ("-movflags", "+faststart")),
        ("clip.nut", ()),
        ("clip.flv", ()),
    ],
    ids=["matroska", "mpegts", "fragmented-mp4", "faststart-mp4", "nut", "flv"],
)
def test_a_piped_stream_gives_the_files_output(tmp_path, name, options):
    source = remux(tmp_path, name, *options)
    ref = tmp_path / "ref.mkv"
    done = subprocess.run([*RUN, str(source), "-o", str(ref), *ENGINE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "piped.mkv"
    result = piped(source, out, *ENGINE)
    assert result.returncode == 0, result.stderr.decode()
    a, b = decoded_audio(out), decoded_audio(ref)
    assert a.shape == b.shape and a.shape[1] > 7 * 16000  # the sample: 8 s at 16 kHz
    assert np.array_equal(a, b)
    copied = video_packets(out)
    assert copied == video_packets(ref) and len(copied) == len(video_packets(source))


def test_wav_to_standard_output_holds_the_files_samples(tmp_path):
    source = remux(tmp_path, "clip.mkv")
    ref = tmp_path / "ref.wav"
    done = subprocess.run([*RUN, str(source), "-o", str(ref), *ENGINE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "piped.wav"
    result = piped(source, out, *ENGINE, "--format", "wav")
    assert result.returncode == 0, result.stderr.decode()
    expected, _ = sf.read(ref, dtype="float32")
    got = decoded_audio(out).reshape(-1, 2)  # packed float samples
    assert np.array_equal(got, expected)


def test_a_stream_cut_off_midway_ends_with_one_line_and_a_clean_output(tmp_path):
    live = tmp_path / "live.mkv"  # as ffmpeg streams Matroska into a pipe: no durations declared up front
    with open(live, "wb") as sink:
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(SAMPLE), "-c", "copy", "-f", "matroska", "-"],
                       stdout=sink, check=True)  # fmt: skip
    data = live.read_bytes()
    out = tmp_path / "piped.mkv"
    result = piped(live, out, *ENGINE, stdin_bytes=data[: len(data) // 2])
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: -:") and "truncated" in lines[0]
    check = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr
    assert 0 < decoded_audio(out).shape[1] < 8 * 48000


@pytest.mark.parametrize(
    ("stdin_bytes", "words"),
    [(b"", "ended before its first byte"), (b"not a media stream\n" * 100, "unreadable media stream")],
    ids=["empty", "not-media"],
)
def test_an_empty_or_unreadable_stream_is_one_line_saying_which(tmp_path, stdin_bytes, words):
    out = tmp_path / "piped.mkv"
    result = piped(SAMPLE, out, *ENGINE, stdin_bytes=stdin_bytes)
    errors = [line for line in result.stderr.decode().splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr.decode(), errors
    assert errors[0].startswith("error: -: ") and words in errors[0], errors


def test_an_empty_file_redirected_to_standard_input_is_one_line_saying_so(tmp_path):
    (tmp_path / "empty.mkv").write_bytes(b"")  # `ccs-run - < empty.mkv`: standard input is the file itself, seekable
    with open(tmp_path / "empty.mkv", "rb") as source:
        result = subprocess.run([*RUN, "-", "-o", str(tmp_path / "out.mkv"), *ENGINE], stdin=source,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        "error: -: the stream ended before its first byte (nothing was sent)"
    ), result.stderr
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".*"))


def test_a_trimmed_copy_that_keeps_its_sources_length_tag_is_whole(tmp_path):
    # ffmpeg's Matroska muxer writes each stream's length as a DURATION tag; a NUT copy of its first 4 s carries that
    # tag as it was (8 s). The file and the same bytes through a pipe are whole: exit 0, 4 s of sound.
    mkv = remux(tmp_path, "clip.mkv")
    nut = tmp_path / "first4.nut"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mkv), "-t", "4", "-c", "copy", str(nut)], check=True)
    with av.open(str(nut)) as c:
        assert c.streams.audio[0].metadata.get("DURATION", "").startswith("00:00:08")  # the stale tag is there
    out = tmp_path / "first4.wav"
    done = subprocess.run([*RUN, str(nut), "-o", str(out), *ENGINE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(out)).duration == pytest.approx(4.0, abs=0.1)
    result = piped(nut, tmp_path / "piped.wav", *ENGINE, "--format", "wav")
    assert result.returncode == 0, result.stderr.decode()
    assert np.array_equal(sf.read(str(tmp_path / "piped.wav"))[0], sf.read(str(out))[0])


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mov"])
def test_an_mp4_with_its_index_at_the_end_is_refused_on_a_pipe_saying_how_to_send_it(tmp_path, name):
    source = remux(tmp_path, name)  # FFmpeg's default: the index (moov) after the media
    result = piped(source, tmp_path / "out.mkv", *ENGINE)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: -: ") and "faststart" in lines[0] and "index (moov)" in lines[0], lines


def test_streams_further_apart_than_the_bound_end_with_the_option_to_raise(tmp_path):
    source = remux(tmp_path, "clip.mkv")
    result = piped(source, tmp_path / "out.mkv", *ENGINE, "--max-apart-s", "0.01")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, lines
    assert "apart in the stream" in lines[0] and "--max-apart-s" in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [(["-"], "give -o"), (["-", str(SAMPLE), "-o", "x.mkv"], "exactly one input"),
     (["-", "-o", "-", "--format", "mp4"], "cannot be written to a pipe"),
     ([str(SAMPLE), "--live", "-o", "x.mkv"], "--live reads a stream from standard input"),
     (["-", "--live", "-o", "-", "--visual-rate", "adaptive"], "exact visual rate")],
    ids=["no-output", "two-inputs", "mp4-to-a-pipe", "live-from-a-file", "live-adaptive-rate"],
)  # fmt: skip
def test_pipe_usage_errors_are_one_line(tmp_path, args, words):
    result = subprocess.run([*RUN, *args], input=b"", capture_output=True, timeout=120, cwd=tmp_path)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], lines


def test_a_loud_piped_input_written_to_a_file_keeps_its_picture(tmp_path):
    """A file run rescales a loud output by writing it again from the input's picture; a pipe cannot be read again,
    so the piped run clamps instead, and every video packet is still there."""
    loud = tmp_path / "loud.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(SAMPLE), "-c:v", "copy", "-af", "volume=18dB", "-c:a", "aac",
                    str(loud)], check=True)  # fmt: skip
    engine = [e for e in ENGINE if e not in ("--clip-mode", "clamp")]
    as_file = subprocess.run([*RUN, str(loud), "-o", str(tmp_path / "ref.mkv"), *engine], capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert as_file.returncode == 0 and "scaled by" in as_file.stderr, as_file.stderr  # the file run did rescale
    out = tmp_path / "piped.mkv"
    result = subprocess.run([*RUN, "-", "-o", str(out), *engine], input=loud.read_bytes(), capture_output=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert "clamped" in result.stderr.decode()
    assert video_packets(out) == video_packets(tmp_path / "ref.mkv")
    assert len(video_packets(out)) == len(video_packets(loud))


def test_a_sound_only_output_keeps_no_picture_packets_for_a_copy(tmp_path):
    """With wav out nothing takes the picture's packets: the single pass must not keep them (memory would grow with
    the stream's length)."""
    from ccstereo.runtime.single_pass import open_single_pass

    source = remux(tmp_path, "clip.mkv")
    with open(source, "rb") as stream:
        media = open_single_pass(Path("-"), stream)
        media.video_source(copied=False)
        sound = sum(chunk.model.shape[1] for chunk in media.audio(16000, False))
        pictures = sum(1 for _ in media.frames(10.0))
        assert sound > 7 * 16000 and pictures >= 80
        assert all(not queue for queue in media.single.queues.values())
        media.single.close()


def decoded_pictures(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


@pytest.mark.parametrize("fmt", ["ts", "nut"])
def test_mpegts_and_nut_to_standard_output_carry_the_same_sound_and_picture(tmp_path, fmt):
    """H.264 from Matroska goes into MPEG-TS in Annex B form (FFmpeg's muxer converts the packets), so the bytes
    differ; the pictures decode the same, and the sound is the Matroska output's after the encoder's priming (TS and
    NUT keep its 1024 samples, timestamped before the start; Matroska says to skip them)."""
    source = remux(tmp_path, "clip.mkv")
    ref = tmp_path / "ref.mkv"
    done = subprocess.run([*RUN, str(source), "-o", str(ref), *ENGINE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / f"piped.{fmt}"
    result = piped(source, out, *ENGINE, "--format", fmt)
    assert result.returncode == 0, result.stderr.decode()
    check = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr
    pictures, expected = decoded_pictures(out), decoded_pictures(ref)
    assert len(pictures) == len(expected) and all(np.array_equal(a, b) for a, b in zip(pictures, expected, strict=True))
    sound, ref_sound = decoded_audio(out), decoded_audio(ref)
    assert sound.shape[1] == ref_sound.shape[1] + 1024
    assert np.array_equal(sound[:, 1024:], ref_sound)


def test_a_reader_that_stops_reading_ends_the_run_with_one_line(tmp_path):
    # `ccs-run clip -o - | player`, and the player is closed early
    run = subprocess.Popen([*RUN, str(SAMPLE), "-o", "-", "--format", "wav", *ENGINE], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)  # fmt: skip
    assert run.stdout is not None and len(run.stdout.read(1000)) == 1000
    run.stdout.close()
    _, err = run.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, lines
    assert "closed the pipe" in lines[0], lines
