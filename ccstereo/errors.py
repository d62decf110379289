"""The one family of domain errors: every error the package raises on purpose is a ``CCStereoError``.

Each subclass lives where it is raised and also derives from the builtin that matches its kind (``ValueError``
for bad input, ``RuntimeError`` for a step that cannot run), so callers may catch either. Messages name the
offending file or value. The CLIs catch ``CCStereoError`` (plus ``OSError`` for the file system) and turn it
into one line and an exit status.
"""

from __future__ import annotations


class CCStereoError(Exception):
    """Base of every CCStereo domain error."""
