"""Which files a run takes: files as given, ``@list.txt`` listings, and the media FFmpeg reads in a folder."""

from __future__ import annotations

import functools
import glob
import os
from pathlib import Path

from ccstereo.runtime.errors import OptionError

# Extensions FFmpeg's demuxers do not list but that are common names for media they read.
EXTRA_SUFFIXES = frozenset({"ogv", "vob", "mod", "tod", "divx", "qt", "mxf", "rmvb", "3gpp"})


@functools.cache
def demuxer_suffixes() -> frozenset[str]:
    """Return every file extension an FFmpeg demuxer of this install declares (lower case, no dot)."""
    import av

    found = set(EXTRA_SUFFIXES)
    for name in av.formats_available:
        try:
            container = av.format.ContainerFormat(name)
        except (ValueError, av.error.FFmpegError):
            continue
        if container.is_input:
            found.update(ext.lower() for ext in container.extensions)
    return frozenset(found)


def has_picture_and_sound(path: Path) -> bool:
    """Return whether FFmpeg opens ``path`` and finds a video and an audio stream (headers only, nothing decoded)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video) and bool(container.streams.audio)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False


def folder_media(folder: Path) -> list[Path]:
    """Return the files of ``folder`` (not its subfolders) that FFmpeg reads as video with sound, by name: a
    demuxer's extension first, then the streams; hidden files and earlier outputs (``*.binaural.*``) are left."""
    suffixes = demuxer_suffixes()
    named = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower().lstrip(".") in suffixes
        and ".binaural." not in p.name
        and not p.name.startswith(".")
        and p.is_file()
    )
    return [p for p in named if has_picture_and_sound(p)]


def collect_inputs(paths: list[Path]) -> list[Path]:
    """Return media files: files as given, folders searched (non-recursively), ``@list.txt`` expanded."""
    found: list[Path] = []
    for path in paths:
        if str(path).startswith("@"):
            found.extend(collect_inputs(_listed(Path(str(path)[1:]))))
        elif path.is_dir():
            found.extend(folder_media(path))
        else:
            found.append(path)
    return found


def distinct_files(paths: list[Path]) -> list[Path]:
    """Return ``paths`` with each named once, where it first appears: the same path given twice (``a.mp4 ./a.mp4``, a
    glob and a list that both hold it) is one input, not two that want one output. (A link is a name of its own,
    with an output of its own.)"""
    seen: set[str] = set()
    kept = []
    for path in paths:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


def _listed(listing: Path) -> list[Path]:
    """Return the paths named by a text file: one path or glob per line (relative to the file), # comments. UTF-8,
    with or without the byte-order mark a Windows editor writes first; names in another encoding come through as
    their bytes (``surrogateescape``, as the file system gives them)."""
    try:
        lines = listing.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise OptionError(f"{listing}: cannot read the list: {exc.strerror}") from exc
    found: list[Path] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line if Path(line).is_absolute() else str(listing.parent / line)
        matches = sorted(glob.glob(pattern, recursive=True))
        found.extend(Path(m) for m in matches) if matches else found.append(Path(pattern))
    return found


def check_run_paths(inputs: list[Path], out: Path | None, fmt: str | None) -> list[Path]:
    """Return the media files of a run; raise OptionError / OutputError for what cannot be a valid run: no media,
    several inputs into one -o file, an -o whose extension and --format disagree, an -o that is an input."""
    from ccstereo.runtime.binauralizer import output_format
    from ccstereo.runtime.errors import printable
    from ccstereo.runtime.writers import SameFileError, same_file

    files = distinct_files(collect_inputs(inputs))
    if not files:
        raise OptionError("no input media found")
    single = out is not None and not out.is_dir()
    if len(files) > 1 and single:
        raise OptionError(f"{printable(out)}: with several inputs --out must be an existing folder")
    output_format(files[0], fmt, None, out)  # an -o file's extension and --format must agree and name a format we write
    for path in files:
        if single and same_file(path, out):
            raise SameFileError(f"{printable(path)}: -o names the input itself; the output would overwrite it")
    return files
