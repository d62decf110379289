"""The one way the project writes a file: into a temporary beside it, then a rename; never a half-written file.

Every temporary has one name scheme, ``.<final stem>.partial-<host>-<pid>-<start>-<random><suffix>``: the host
(a short hash of its name), the writing process and that process's start time (clock ticks since boot, from
/proc) say who made it, so a later run can prove a temporary stale — written on this host by a process that no
longer exists (or whose number now belongs to a process started at another time) — and remove it
(``remove_stale_partials``). A temporary of another host, or of a live process, is never touched.

Only stdlib: every layer (model checkpoints, export, runtime outputs, caches, pages) uses this module.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

from ccstereo.errors import CCStereoError

PARTIAL_MARK = ".partial-"
_PARTIAL = re.compile(r"^\.(?P<stem>.*)\.partial-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-z]+")


class WriteError(CCStereoError, OSError):
    """A file that cannot be written where it was asked for (missing or unwritable folder, a full disk)."""


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_ticks(pid: int) -> int | None:
    """Return the start time of process ``pid`` in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its closing one
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def new_file_mode() -> int:
    """Return the permission bits a newly created file gets under this process's umask (0o666 & ~umask)."""
    try:  # Linux >= 4.7 reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def partial_path(final: Path, suffix: str | None = None) -> Path:
    """Create and return an empty temporary file beside ``final`` (its extension, or ``suffix``).

    It gets the mode a plain new file gets under the umask: the rename that publishes it keeps the mode.
    Raises WriteError when the folder is missing or not writable."""
    final = Path(final)
    folder = final.parent
    if not folder.is_dir():
        raise WriteError(f"{folder}: output folder does not exist")
    if len(os.fsencode(final.name)) > NAME_MAX:
        raise WriteError(f"{final}: file name too long ({len(os.fsencode(final.name))} bytes; at most {NAME_MAX})")
    me = os.getpid()
    stem = f".{_short_stem(final)}{PARTIAL_MARK}{_host()}-{me}-{_start_ticks(me) or 0}-"
    tail = final.suffix if suffix is None else suffix
    mode = new_file_mode()
    for _ in range(100):
        path = folder / f"{stem}{secrets.token_hex(4)}{tail}"
        try:
            if _create(path, mode):
                return path
        except OSError as exc:
            raise WriteError(f"{folder}: output folder is not writable ({exc.strerror})") from exc
    raise WriteError(f"{folder}: no free temporary name for {final.name}")


NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows file systems alike)
# A temporary's name beside its stem: ".", ".partial-", host (8), pid (7), start ticks (20), random (8), three "-",
# a suffix (16 at most): the stem gets the rest, so a temporary fits wherever its file's name does.
_STEM_BYTES = NAME_MAX - 72


def _short_stem(final: Path) -> str:
    """Return ``final``'s stem as temporaries carry it: whole when it fits ``_STEM_BYTES``, else its first
    characters and a hash of the whole (two long names that begin alike keep apart)."""
    stem = final.stem
    if len(os.fsencode(stem)) <= _STEM_BYTES:
        return stem
    keep, used = [], 0
    for char in stem:
        size = len(os.fsencode(char))
        if used + size > _STEM_BYTES - 9:
            break
        keep.append(char)
        used += size
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
    return "".join(keep) + "~" + digest


def _create(path: Path, mode: int) -> bool:
    """Create ``path`` empty, exclusively; False when the name is taken. A signal's exception (Ctrl-C) raised
    between the creation and the return — Python runs its handler right after a C call such as ``os.open`` —
    removes the file again: the caller never learnt its name, so nobody else would."""
    fd = -1
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    except BaseException:
        _unmake(path, fd)
        raise
    try:
        os.close(fd)
    except BaseException:
        _unmake(path, -1)
        raise
    return True


def _unmake(path: Path, fd: int) -> None:
    """Remove a temporary this process may have just made. Safe without knowing whether ``os.open`` returned (a
    signal can land right after it): the name is ours alone (random, with our pid and start time)."""
    with contextlib.suppress(OSError):
        if fd >= 0:
            os.close(fd)
        os.unlink(path)


def publish(tmp: Path, final: Path) -> Path:
    """Move the finished temporary ``tmp`` onto ``final`` in one step; return ``final``."""
    os.replace(tmp, final)
    return Path(final)


@contextlib.contextmanager
def writing(final: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path for ``final``; published when the block ends normally, removed otherwise."""
    tmp = partial_path(final, suffix)
    try:
        yield tmp
        publish(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(final: Path, data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically; a full disk is a WriteError naming the file."""
    try:
        with writing(final) as tmp:
            tmp.write_bytes(data)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(f"{final}: cannot write ({exc.strerror or exc})") from exc
    return Path(final)


def write_text(final: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    return write_bytes(final, text.encode("utf-8"))


def partial_owner(path: Path) -> tuple[str, int, int] | None:
    """Return (host hash, pid, start ticks) from a temporary's name, or None when it is not one of ours."""
    match = _PARTIAL.match(Path(path).name)
    if match is None:
        return None
    return match["host"], int(match["pid"]), int(match["start"])


def is_stale(path: Path) -> bool:
    """Return whether ``path`` is a temporary of ours whose writer is provably gone (this host, process dead)."""
    owner = partial_owner(path)
    if owner is None or owner[0] != _host():
        return False
    _, pid, start = owner
    running = _start_ticks(pid)
    return running is None or (start != 0 and running != start)


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the stale temporaries (``is_stale``) in ``folder``; return what was removed. Never raises."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if PARTIAL_MARK in entry.name and entry.is_file() and not entry.is_symlink() and is_stale(entry):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def writer_id() -> tuple[str, int]:
    """Return (host hash, pid) of this process: whose temporaries are whose (``remove_partials_of``)."""
    return _host(), os.getpid()


def remove_partials_of(final: Path, writer: tuple[str, int]) -> list[Path]:
    """Remove the temporaries of ``final`` that the process ``writer`` (``writer_id``) left, e.g. a worker that
    died mid-file; another process's temporaries are never touched. Return what was removed. Never raises."""
    final = Path(final)
    removed = []
    try:
        entries = list(final.parent.glob(f".{glob.escape(_short_stem(final))}{PARTIAL_MARK}*"))
    except (OSError, ValueError):
        return removed
    for entry in entries:
        owner = partial_owner(entry)
        if owner is not None and owner[:2] == tuple(writer) and entry.is_file() and not entry.is_symlink():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed
