"""Every path a run writes, claimed and checked before any work starts.

A run's inputs are never written; each path it writes (an output, the ``--report``, a ``--html`` page) is claimed
once here and refused with one line when it is a folder, lies in a folder that is missing or not writable, or is
an input or another claimed path — whatever the spelling: the same path, ``./`` or ``..`` forms, a symlink or a
hard link to it. The writes themselves go through ``ccstereo.atomic`` (a temporary beside the target, renamed
when complete), so a run that stops for any reason leaves the targets as they were.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ccstereo.atomic import partial_path, remove_stale_partials
from ccstereo.errors import CCStereoError
from ccstereo.runtime.media import MediaInfo
from ccstereo.runtime.writers import OutputError, SameFileError


@dataclass
class WritePlan:
    """The inputs of a run (read only) and the paths it will write, each with the role it was claimed for."""

    inputs: list[Path]
    claimed: dict[tuple, tuple[Path, str]] = field(default_factory=dict)  # identity -> (path, role)
    writable: set[str] = field(default_factory=set)  # folders a temporary file was made in and removed

    def __post_init__(self) -> None:
        # identities, not paths: one lookup per check whatever the number of inputs (a folder of thousands)
        self.sources = {_identity(p): p for p in self.inputs}

    def check(self, path: Path, role: str) -> None:
        """Raise OutputError (SameFileError for an input) when ``path`` cannot be written as ``role``."""
        path = Path(path)
        if path.is_dir():
            raise OutputError(f"{path}: {role} names a folder; give a file name")
        if path.exists() and not path.is_file():  # a device or a pipe: the rename would replace the node itself
            raise OutputError(f"{path}: {role} names a special file (device, pipe or socket); give a regular file")
        folder = path.parent
        if not folder.is_dir():
            raise OutputError(f"{folder}: folder does not exist ({role} {path})")
        self._check_writable(folder, f"{role} {path}")
        key = _identity(path)
        if key in self.sources:
            source = self.sources[key]
            raise SameFileError(f"{path}: {role} names the input {source}; writing it would destroy the input")
        if key in self.claimed:
            raise OutputError(f"{path}: {role} is also the {self.claimed[key][1]}; give them different names")

    def _check_writable(self, folder: Path, what: str) -> None:
        """Make and remove a temporary file in ``folder`` (as root, access() says yes even where a write fails)."""
        key = os.path.realpath(folder)
        if key in self.writable:
            return
        try:
            partial_path(folder / "write-check").unlink()
        except OSError as exc:  # WriteError included: it names the folder and the cause
            raise OutputError(f"{exc} ({what})") from exc
        self.writable.add(key)

    def claim(self, path: Path, role: str) -> Path:
        """Check ``path`` (``check``) and record it as written by this run; return it."""
        self.check(path, role)
        self.claimed[_identity(path)] = (Path(path), role)
        return Path(path)

    def tidy(self) -> list[Path]:
        """Remove the provably stale temporaries (of dead runs on this host) in every folder this run writes."""
        folders = {os.path.realpath(p.parent) for p, _ in self.claimed.values()}
        return [removed for folder in sorted(folders) for removed in remove_stale_partials(Path(folder))]


def _identity(path: Path) -> tuple:
    """Return what makes two spellings one file (``writers.same_file``'s rule as a key): device and inode of an
    existing file (hard links, symlinks), the resolved path of one not yet there (``./``, ``..``)."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


@dataclass(frozen=True)
class FileJob:
    """One file of a run, resolved once (before any work): its probe and planned output, or why it cannot run."""

    path: Path
    info: MediaInfo | None = None
    target: Path | None = None
    error: Exception | None = None


def plan_files(files: list[Path], out: Path | None, fmt: str | None, writes: WritePlan) -> list[FileJob]:
    """Probe every file and claim its output in ``writes``; a file that cannot be probed or whose output cannot be
    written carries its error (it fails alone; the others run)."""
    from ccstereo.runtime.binauralizer import output_format, output_path
    from ccstereo.runtime.media import probe

    planned = []
    for path in files:
        try:
            info = probe(path)
            target = output_path(path, out, output_format(path, fmt, info.video_codec, out))
            writes.claim(target, f"output of {path}")
            planned.append(FileJob(path, info, target))
        except (CCStereoError, OSError, ValueError) as exc:
            planned.append(FileJob(path, error=exc))
    return planned
