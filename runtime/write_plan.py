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

from ccstereo.atomic import WriteError, partial_path, remove_stale_partials
from ccstereo.errors import CCStereoError
from ccstereo.runtime.media import MediaInfo
from ccstereo.runtime.writers import OutputError, SameFileError, same_file


@dataclass
class WritePlan:
    """The inputs of a run (read only) and the paths it will write, each with the role it was claimed for."""

    inputs: list[Path]
    claimed: list[tuple[Path, str]] = field(default_factory=list)
    writable: set[str] = field(default_factory=set)  # folders a temporary file was made in and removed

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
        for source in self.inputs:
            if same_file(source, path):
                raise SameFileError(f"{path}: {role} names the input {source}; writing it would destroy the input")
        for other, other_role in self.claimed:
            if same_file(other, path):
                raise OutputError(f"{path}: {role} is also the {other_role}; give them different names")

    def _check_writable(self, folder: Path, what: str) -> None:
        """Make and remove a temporary file in ``folder`` (as root, access() says yes even where a write fails)."""
        key = os.path.realpath(folder)
        if key in self.writable:
            return
        try:
            partial_path(folder / "write-check").unlink()
        except (WriteError, OSError) as exc:
            cause = str(exc).split("(", 1)[-1].rstrip(")") if isinstance(exc, WriteError) else exc.strerror
            raise OutputError(f"{folder}: folder is not writable ({cause}; {what})") from exc
        self.writable.add(key)

    def claim(self, path: Path, role: str) -> Path:
        """Check ``path`` (``check``) and record it as written by this run; return it."""
        self.check(path, role)
        self.claimed.append((Path(path), role))
        return Path(path)

    def tidy(self) -> list[Path]:
        """Remove the provably stale temporaries (of dead runs on this host) in every folder this run writes."""
        folders = {os.path.realpath(p.parent) for p, _ in self.claimed}
        return [removed for folder in sorted(folders) for removed in remove_stale_partials(Path(folder))]


@dataclass(frozen=True)
class PlannedFile:
    """One input of a run, probed once: its stream facts and output, or why it cannot be run."""

    path: Path
    info: MediaInfo | None = None
    target: Path | None = None
    error: Exception | None = None


def plan_files(files: list[Path], out: Path | None, fmt: str | None, writes: WritePlan) -> list[PlannedFile]:
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
            planned.append(PlannedFile(path, info, target))
        except (CCStereoError, OSError, ValueError) as exc:
            planned.append(PlannedFile(path, error=exc))
    return planned
