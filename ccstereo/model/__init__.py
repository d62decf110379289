"""The CCStereo network in PyTorch."""

from ccstereo.model.network import CCStereo

__all__ = ["CCStereo"]
