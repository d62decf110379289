"""Odd and broken media, made the way real tools make them: the ffmpeg command-line tool (lavfi test sources,
real encoders and muxers) and, where ffmpeg has no switch for the oddity, PyAV with that property set on
purpose. None of it comes from this project's own writers.

Each case says what a correct ccs-run does with it: ``ok`` (a valid output) or ``error`` (a clean one-line
error whose text contains ``words``). ``build(folder)`` writes its input and returns the path.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccstereo.errors import CCStereoError


class ToolMissingError(CCStereoError, RuntimeError):
    """ffmpeg (Debian package ``ffmpeg``) is not installed."""


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]
    expect: str = "ok"  # ok | error
    words: tuple[str, ...] = ()  # for errors: what the message must say


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg CLI quietly; raise with its last error line on failure."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise ToolMissingError("ffmpeg is not installed (Debian: apt-get install ffmpeg; see .ci/system-deps)")
    result = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {result.stderr.strip()[-500:]}")


def video_src(seconds: float, size: str = "320x180", rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def tone_src(seconds: float, rate: int = 44100, freq: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}"]


def raw_f32(path: Path, rate: int, channels: int = 2) -> list[str]:
    """Return ffmpeg input arguments for interleaved float32 samples in ``path``."""
    return ["-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", str(path)]


def _av(folder: Path, name: str, *args: str) -> Path:
    path = folder / name
    ffmpeg(*args, str(path))
    return path


# -- valid but unusual -----------------------------------------------------------------------------------------


X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")  # fast, and every player reads it
AAC = ("-c:a", "aac")
LOSSLESS = ("-c:v", "ffv1", "-c:a", "pcm_s16le")
VIDEO_THEN_AUDIO = ("-map", "0:v", "-map", "1:a")


def h264_aac_mp4(folder: Path, name: str = "plain.mp4", seconds: float = 2.0) -> Path:
    return _av(folder, name, *video_src(seconds), *tone_src(seconds), *X264, *AAC, "-shortest")


def _simple(
    name: str, *codec_args: str, seconds: float = 1.5, size: str = "320x180", rate: int = 25, audio_rate: int = 44100
) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return _av(folder, name, *video_src(seconds, size, rate), *tone_src(seconds, audio_rate), *codec_args)

    return build


def mono_8k(folder: Path) -> Path:
    return _av(folder, "mono8k.mp4", *video_src(1.5), *tone_src(1.5, 8000), "-ac", "1", *X264, *AAC)


def surround_51(folder: Path) -> Path:
    layout = ("-af", "aformat=channel_layouts=5.1")
    return _av(folder, "surround.mkv", *video_src(1.5), *tone_src(1.5, 48000), *layout, *X264, "-c:a", "flac")


def vfr(folder: Path) -> Path:
    drop = ("-vf", r"select='not(mod(n\,3))+eq(n\,10)'", "-fps_mode", "vfr")
    return _av(folder, "vfr.mkv", *video_src(2.0, rate=30), *tone_src(2.0), *drop, *X264, *AAC)


def rotated(folder: Path) -> Path:
    rotate = ("-metadata:s:v:0", "rotate=90")
    return _av(folder, "rotated.mp4", *video_src(1.5, "320x176"), *tone_src(1.5), *X264, *AAC, *rotate)


def two_audio_tracks(folder: Path) -> Path:
    maps = ("-map", "0:v", "-map", "1:a", "-map", "2:a")
    sources = (*video_src(1.5), *tone_src(1.5), *tone_src(1.5, 48000, 880))
    return _av(folder, "two_tracks.mkv", *sources, *maps, *X264, *AAC)


def still_picture(folder: Path) -> Path:
    """One picture for the whole clip (a music upload with cover art), as ffmpeg's -loop 1 makes it."""
    picture = _av(folder, "cover.png", *video_src(1.0, rate=1), "-frames:v", "1")
    looped = ("-loop", "1", "-framerate", "5", "-i", str(picture))
    return _av(folder, "still.mp4", *looped, *tone_src(2.0), *X264, *AAC, "-shortest")


def audio_starts_late(folder: Path) -> Path:
    """The audio stream begins 1.5 s after the picture (stream start offset, as -itsoffset writes it)."""
    late = ("-itsoffset", "1.5", *tone_src(2.5))
    return _av(folder, "late_audio.mp4", *video_src(4.0), *late, *VIDEO_THEN_AUDIO, *X264, *AAC)


def video_starts_late(folder: Path) -> Path:
    late = ("-itsoffset", "1.0", *video_src(2.0))
    return _av(folder, "late_video.mkv", *late, *tone_src(3.0), *VIDEO_THEN_AUDIO, *X264, *AAC)


def video_outlasts_audio(folder: Path) -> Path:
    """Lossless mkv: 38 frames at 10 fps (3.8 s) over 3.0 s of audio."""
    return _av(folder, "long_video.mkv", *video_src(3.8, rate=10), *tone_src(3.0), *LOSSLESS)


def audio_outlasts_video(folder: Path) -> Path:
    return _av(folder, "long_audio.mkv", *video_src(1.0, rate=10), *tone_src(3.0), *LOSSLESS)


def full_scale_square(folder: Path) -> Path:
    """16-bit square wave at full scale in both channels: the binaural output of such input exceeds 1.0 unless
    handled, whatever the model (left + right is the input's mix, 2.0 at the square's negative half, so any
    difference between the ears puts one of them past full scale)."""
    square = "if(lt(mod(t*220\\,1)\\,0.5)\\,{a}\\,-{a})"
    expression = f"aevalsrc='{square.format(a=1)}|{square.format(a=1)}':s=44100:d=2"
    return _av(folder, "loud.mkv", *video_src(2.0), "-f", "lavfi", "-i", expression, *X264, "-c:a", "pcm_s16le")


def non_finite_float_audio(folder: Path) -> Path:
    """Float PCM holding NaN and Inf samples: raw f32le muxed by ffmpeg as it is (stream copy of the values)."""
    rate = 16000
    audio = (0.2 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)).astype(np.float32)
    stereo = np.stack([audio, audio], axis=1)
    stereo[rate : rate + 50, 0] = np.nan
    stereo[rate + 400, 1] = np.inf
    raw = folder / "nan.f32"
    raw.write_bytes(stereo.tobytes())
    return _av(folder, "nan_audio.mkv", *video_src(2.0), *raw_f32(raw, rate), *X264, "-c:a", "pcm_f32le")


def audio_gap(folder: Path, gap_s: float = 0.3, at_s: float = 2.5) -> Path:
    """A remux that loses the audio packets between ``at_s`` and ``at_s + gap_s`` (timestamps keep running),
    with a click at ``gap_click_s(at_s, gap_s)`` to find where the audio lands. Source made by ffmpeg;
    packets dropped with PyAV."""
    import av

    rate = 16000
    audio = np.zeros(5 * rate, np.float32)
    click = int(gap_click_s(at_s, gap_s) * rate)
    audio[click : click + 32] = 0.9
    raw = folder / "click.f32"
    raw.write_bytes(np.stack([audio, audio], axis=1).tobytes())
    lossless = ("-c:v", "ffv1", "-c:a", "pcm_f32le", "-frame_size", "400")
    whole = _av(folder, "whole.mkv", *video_src(5.0, rate=10), *raw_f32(raw, rate), *lossless)
    path = folder / f"gap{gap_s:g}.mkv"
    with av.open(str(whole)) as src, av.open(str(path), "w", format="matroska") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if packet.stream.type == "audio" and at_s <= t < at_s + gap_s:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    whole.unlink()
    return path


def gap_click_s(at_s: float, gap_s: float) -> float:
    """Return where ``audio_gap`` puts its click on the stream's timeline (just after the gap)."""
    return at_s + gap_s + 0.05


def many_sizes(folder: Path) -> Path:
    codecs = ("-c:v", "ffv1", "-c:a", "libvorbis")
    return _av(folder, "odd_size.mkv", *video_src(1.5, "321x181"), *tone_src(1.5, 22050), *codecs)


# -- broken -------------------------------------------------------------------------------------------------


def zero_length(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "random.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return path


def truncated_half(folder: Path) -> Path:
    full = _av(folder, "full.mkv", *video_src(4.0, rate=10), *tone_src(4.0), *LOSSLESS)
    path = folder / "truncated.mkv"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return path


def audio_only(folder: Path) -> Path:
    return _av(folder, "audio_only.m4a", *tone_src(1.5), *AAC)


def video_only(folder: Path) -> Path:
    return _av(folder, "video_only.mp4", *video_src(1.5), *X264)


def header_overwritten(folder: Path) -> Path:
    path = h264_aac_mp4(folder, "header.mp4")
    data = bytearray(path.read_bytes())
    data[:64] = bytes(64)
    path.write_bytes(bytes(data))
    return path


def wrong_extension(folder: Path) -> Path:
    """A Matroska file named .mp4 (the content decides, not the name)."""
    mkv = _av(folder, "really_mkv.mkv", *video_src(1.5), *tone_src(1.5), *X264, "-c:a", "libopus")
    return mkv.rename(folder / "really_mkv.mp4")


# -- round 2: container quirks and timestamps -------------------------------------------------------------------
def mkv_audio_late(folder: Path) -> Path:
    """Matroska, audio 1.5 s after the picture: ffmpeg writes the track's END time in its DURATION tag."""
    src = _av(folder, "late_src.mkv", *video_src(4.0, rate=10), *tone_src(2.5), *X264, *AAC)
    late = ("-itsoffset", "1.5", "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy")
    path = _av(folder, "late_audio.mkv", "-i", str(src), *late)
    src.unlink()
    return path


def far_start_mkv(folder: Path) -> Path:
    """Every stream starts 10000 s into the file's clock (a cut of a long recording)."""
    src = _av(folder, "src.mkv", *video_src(2.0, rate=10), *tone_src(2.0), *X264, *AAC)
    path = _av(folder, "far_start.mkv", "-i", str(src), "-c", "copy", "-output_ts_offset", "10000")
    src.unlink()
    return path


def ts_clock_wrap(folder: Path) -> Path:
    """MPEG-TS whose 33-bit 90 kHz clock wraps 3.7 s in (it starts at 95440 s of 95443.7)."""
    return _av(folder, "wrap.ts", *video_src(6.0), *tone_src(6.0), *X264, *AAC, "-output_ts_offset", "95440")


def alac_with_cover(folder: Path) -> Path:
    """An ALAC .m4a song whose only picture is its cover art (a PNG attached picture)."""
    cover = _av(folder, "cover.png", *video_src(1.0, "64x64", 1), "-frames:v", "1")
    maps = ("-map", "0", "-map", "1", "-c:a", "alac", "-c:v", "png", "-disposition:v", "attached_pic")
    path = _av(folder, "song.m4a", *tone_src(2.0), "-i", str(cover), *maps)
    cover.unlink()
    return path


def hevc_in_mov_with_timecode(folder: Path) -> Path:
    """A camera-style QuickTime file: HEVC tagged hvc1, PCM audio and a timecode data track."""
    tags = ("-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1", "-c:a", "pcm_s16le")
    tags += ("-timecode", "01:00:00:00")
    return _av(folder, "camera.mov", *video_src(1.5), *tone_src(1.5, 48000), *tags)


def cover_first_mp4(folder: Path) -> Path:
    """An mp4 with cover art (an mjpeg attached picture, mapped before the film) beside its film."""
    cover = _av(folder, "cover.jpg", *video_src(1.0, "64x64", 1), "-frames:v", "1")
    maps = ("-map", "2", "-map", "0:v", "-map", "1:a", "-c:v:0", "mjpeg", "-disposition:v:0", "attached_pic")
    sources = (*video_src(1.5), *tone_src(1.5), "-i", str(cover))
    path = _av(folder, "cover_first.mp4", *sources, *maps, "-c:v:1", "libx264", "-preset", "ultrafast", *AAC)
    cover.unlink()
    return path


def _copy_as(builder: Callable[[Path], Path], name: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return builder(folder).rename(folder / name)

    return build


def cases() -> list[Case]:
    """Return every hostile case with its expected outcome."""
    return [
        Case("h264_aac_mp4", h264_aac_mp4),
        Case("mono_8k", mono_8k),
        Case("surround_51_flac", surround_51),
        Case("vfr", vfr),
        Case("rotation_90", rotated),
        Case("4k", _simple("uhd.mp4", *X264, *AAC, seconds=0.7, size="3840x2160", rate=5)),
        Case("32x32", _simple("tiny.mp4", *X264, *AAC, size="32x32")),
        Case("odd_size_ffv1_vorbis", many_sizes),
        Case("vp9_opus_mkv", _simple("vp9.mkv", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus")),
        Case("vp8_opus_webm", _simple("vp8.webm", "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus")),
        Case("mpeg4_mp3_avi", _simple("xvid.avi", "-c:v", "mpeg4", "-c:a", "libmp3lame")),
        Case("theora_vorbis_ogv", _simple("theora.ogv", "-c:v", "libtheora", "-c:a", "libvorbis")),
        Case("h264_aac_ts", _simple("stream.ts", *X264, *AAC)),
        Case("prores_pcm_mov", _simple("prores.mov", "-c:v", "prores", "-c:a", "pcm_s24le", audio_rate=48000)),
        Case("hevc_aac_mp4", _simple("hevc.mp4", "-c:v", "libx265", "-preset", "ultrafast", *AAC)),
        Case("mjpeg_96k_mkv", _simple("mjpeg.mkv", "-c:v", "mjpeg", "-c:a", "flac", audio_rate=96000)),
        Case("two_audio_tracks", two_audio_tracks),
        Case("still_picture", still_picture),
        Case("shorter_than_a_window", _simple("short.mp4", *X264, *AAC, seconds=0.25)),
        Case("non_ascii_name", _copy_as(_simple("x.mp4", *X264, *AAC), "Gesang über Brücken 音.mp4")),
        Case("wrong_extension", wrong_extension),
        Case("audio_starts_late", audio_starts_late),
        Case("video_starts_late", video_starts_late),
        Case("video_outlasts_audio", video_outlasts_audio),
        Case("audio_outlasts_video", audio_outlasts_video),
        Case("audio_gap_0.3s", audio_gap),
        Case("audio_gap_1.0s", lambda folder: audio_gap(folder, 1.0)),
        Case("full_scale_square", full_scale_square),
        Case("zero_length", zero_length, "error", ("zero-length",)),
        Case("random_bytes", random_bytes, "error", ("unreadable",)),
        Case("truncated_half", truncated_half, "error", ("truncated",)),
        Case("audio_only", audio_only, "error", ("no video stream",)),
        Case("video_only", video_only, "error", ("no audio stream",)),
        Case("header_overwritten", header_overwritten, "error", ("unreadable",)),
        Case("nan_inf_float_audio", non_finite_float_audio, "error", ("NaN",)),
        *round_two(),
    ]


def round_two() -> list[Case]:
    """Cases of the second hostile corpus (container quirks, timestamps, codecs no default container carries)."""
    return [
        Case("mkv_audio_late_duration_tag", mkv_audio_late),
        Case("mkv_clock_starts_at_10000s", far_start_mkv),
        Case("mpegts_33bit_clock_wrap", ts_clock_wrap),
        Case("pcm_192k_mkv", _simple("hi.mkv", *X264, "-c:a", "pcm_s24le", audio_rate=192000)),
        Case("wmv2_wmav2_asf", _simple("film.wmv", "-c:v", "wmv2", "-c:a", "wmav2")),
        Case("alac_m4a_cover_art", alac_with_cover),
        Case("mts_uppercase_name", _copy_as(_simple("cam.ts", *X264, *AAC), "CAMERA.MTS")),
        Case("h263_aac_3gp", _simple("phone.3gp", "-c:v", "h263", "-s", "176x144", "-c:a", "aac", "-ar", "16000")),
        Case("flv_h264_mp3", _simple("stream.flv", *X264, "-c:a", "libmp3lame", "-ar", "44100")),
        Case("nut_ffv1_pcm", _simple("archive.nut", *LOSSLESS)),
        Case("mpeg2_ps_vob", _simple("dvd.vob", "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob", audio_rate=48000)),
        Case("hevc_mov_timecode", hevc_in_mov_with_timecode),
        Case("mp4_cover_art_and_film", cover_first_mp4),
        Case("aac_8k_2.05s", _simple("k8.mp4", *X264, *AAC, "-ac", "1", seconds=2.05, audio_rate=8000)),
    ]


# -- situations: the media is fine, what is around it is not ---------------------------------------------------
@dataclass(frozen=True)
class Situation:
    """A ccs-run call in an odd setting. ``make(folder)`` builds it and returns (arguments, environment changes
    (None removes a variable), files whose bytes must survive). ``expect``: ok | usage (exit 2) | error (exit 1),
    with ``words`` in the one error line."""

    name: str
    category: str  # special-file | writer-path | environment
    make: Callable[[Path], tuple[list[str], dict[str, str | None], list[Path]]]
    expect: str = "ok"
    words: tuple[str, ...] = ()


def _clip(folder: Path, name: str = "clip.mp4") -> Path:
    return h264_aac_mp4(folder, name, 1.0)


def _fifo(folder: Path):
    import os

    os.mkfifo(folder / "live.mp4")
    return [str(folder / "live.mp4")], {}, []


def _dangling(folder: Path):
    (folder / "gone.mp4").symlink_to(folder / "deleted.mp4")
    return [str(folder / "gone.mp4")], {}, []


def _loop(folder: Path):
    (folder / "a.mp4").symlink_to(folder / "b.mp4")
    (folder / "b.mp4").symlink_to(folder / "a.mp4")
    return [str(folder / "a.mp4")], {}, []


def _folder_named_like_media(folder: Path):
    (folder / "film.mp4").mkdir()
    return [str(folder / "film.mp4")], {}, []


def _report_is_hard_link_of_input(folder: Path):
    import os

    clip = _clip(folder)
    os.link(clip, folder / "report.json")
    return [str(clip), "--report", str(folder / "report.json")], {}, [clip]


def _report_is_a_pipe(folder: Path):
    import os

    clip = _clip(folder)
    os.mkfifo(folder / "report.json")
    return [str(clip), "--report", str(folder / "report.json")], {}, [clip]


def _output_is_a_pipe(folder: Path):
    import os

    clip = _clip(folder)
    os.mkfifo(folder / "out.wav")
    return [str(clip), "-o", str(folder / "out.wav")], {}, [clip]


def _output_through_a_linked_folder(folder: Path):
    clip = _clip(folder)
    (folder / "outs").mkdir()
    (folder / "link").symlink_to(folder / "outs")
    return [str(clip), "-o", str(folder / "link") + "/"], {}, [clip]


def _output_in_a_missing_folder(folder: Path):
    clip = _clip(folder)
    return [str(clip), "-o", str(folder / "no" / "such" / "out.mp4")], {}, [clip]


def _missing_tmpdir(folder: Path):
    return [str(_clip(folder)), "--quiet"], {"TMPDIR": str(folder / "no-tmp")}, []


def _c_locale_non_ascii(folder: Path):
    clip = _clip(folder, "Straße 日本.mp4")
    return [str(clip), "--quiet"], {"LC_ALL": "C", "LANG": "C"}, [clip]


def _read_only_home(folder: Path):
    return [str(_clip(folder)), "--quiet"], {"HOME": "/proc/nonexistent", "CCSTEREO_CACHE_DIR": None}, []


def _cache_is_a_file(folder: Path):
    (folder / "cache").write_text("a file where a folder should be")
    env = {"XDG_CACHE_HOME": str(folder / "cache"), "CCSTEREO_CACHE_DIR": None}
    return [str(_clip(folder)), "--quiet"], env, []


def situations() -> list[Situation]:
    """Return the odd settings ccs-run must meet with a valid output or one clean line (never a destroyed file)."""
    return [
        Situation("fifo_input", "special-file", _fifo, "error", ("pipe",)),
        Situation("dangling_symlink", "special-file", _dangling, "error", ("no such file",)),
        Situation("symlink_loop", "special-file", _loop, "error", ("symbolic links",)),
        Situation("folder_named_like_media", "special-file", _folder_named_like_media, "usage", ("no input media",)),
        Situation("report_hard_link_of_input", "writer-path", _report_is_hard_link_of_input, "usage", ("input",)),
        Situation("report_is_a_pipe", "writer-path", _report_is_a_pipe, "usage", ("special file",)),
        Situation("output_is_a_pipe", "writer-path", _output_is_a_pipe, "usage", ("special file",)),
        Situation("output_folder_through_symlink", "writer-path", _output_through_a_linked_folder),
        Situation("output_in_missing_folder", "writer-path", _output_in_a_missing_folder, "usage", ("does not exist",)),
        Situation("missing_tmpdir", "environment", _missing_tmpdir),
        Situation("c_locale_non_ascii_name", "environment", _c_locale_non_ascii),
        Situation("read_only_home", "environment", _read_only_home),
        Situation("cache_home_is_a_file", "environment", _cache_is_a_file),
    ]
