"""CCStereo Deploy: visually guided mono-to-binaural audio with the CCStereo model.

Importing the package is light: torch-based entry points (``load_checkpoint``, ``save_checkpoint``,
``CCStereo``) are resolved lazily so that ``ccstereo.runtime`` and ``ccstereo.metrics`` work without torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "CCStereo",
    "CheckpointError",
    "ConfigError",
    "ModelConfig",
    "__version__",
    "load_checkpoint",
    "save_checkpoint",
]

_LAZY = {
    "ConfigError": "ccstereo.config",
    "ModelConfig": "ccstereo.config",
    "load_checkpoint": "ccstereo.checkpoint",
    "save_checkpoint": "ccstereo.checkpoint",
    "CheckpointError": "ccstereo.checkpoint",
    "CCStereo": "ccstereo.model",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ccstereo' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
