"""Domain errors of the runtime; each message names the offending file or value."""

from __future__ import annotations

from ccstereo.errors import CCStereoError


class CCStereoRuntimeError(CCStereoError, RuntimeError):
    """Base class of runtime errors the CLI turns into an exit code."""


class OptionError(CCStereoRuntimeError, ValueError):
    """An option value that cannot work (batch size 0, unknown format or clip mode, hop outside the window)."""


class ModelMetadataError(CCStereoRuntimeError):
    """A model file whose CCStereo metadata is missing or inconsistent."""


class EngineMismatchError(CCStereoRuntimeError):
    """A TensorRT engine built for another GPU, TensorRT version, precision, profile or ONNX file."""


class BackendUnavailableError(CCStereoRuntimeError):
    """A backend that cannot run on this machine (missing package, no GPU)."""


def printable(text: object) -> str:
    """Return ``text`` with control characters (a newline in a file name) written as escapes; other characters,
    non-ASCII letters included, as they are."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def failure_line(path, exc: BaseException) -> tuple[str, bool]:
    """Return (one line naming ``path`` and the cause, whether the cause is a defect of ours rather than of the
    input). FFmpeg's data errors reach us as ValueError / OSError subclasses: the input's fault, not ours."""
    internal = not isinstance(exc, (CCStereoError, OSError, ValueError, MemoryError))
    shown = printable(path)
    text = " ".join(str(exc).replace(str(path), shown).split()) or type(exc).__name__
    if isinstance(exc, BrokenPipeError):  # `ccs-run ... -o - | player`, and the player was closed
        text = "the output's reader closed the pipe (broken pipe): nothing more could be sent"
    if internal:  # still one line, and says so
        text = f"internal error ({type(exc).__name__}: {text}); please report it with this file"
    return (text if shown in text else f"{shown}: {text}"), internal
