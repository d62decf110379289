"""The exporter's error: an export that cannot be completed or fails verification (nothing is left in OUTDIR)."""

from __future__ import annotations

from ccstereo.errors import CCStereoError


class ExportError(CCStereoError, RuntimeError):
    """An export that cannot be completed or fails verification; nothing is left in OUTDIR."""
