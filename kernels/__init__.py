"""``ccstereo.kernels`` (folder ``kernels/``): operators that must export to ONNX and fuse in TensorRT, each with a
numpy reference; imports no runtime, export or model code.

- ``dsp_basis``: the fixed DFT/window bases shared by the torch modules and the numpy references (numpy only).
- ``reference``: numpy references of STFT, inverse STFT, RMS normalisation and the complex mask.
- ``stft``: torch modules (STFT and ISTFT as convolutions, RMS normalisation, complex mask).

The torch modules are imported lazily so ``ccstereo.kernels.reference`` works without torch.
"""

from __future__ import annotations

from typing import Any

_TORCH_NAMES = {"ConvSTFT", "ConvISTFT", "RMSNormalize", "complex_mask"}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from ccstereo.kernels import stft

        return getattr(stft, name)
    raise AttributeError(f"module 'ccstereo.kernels' has no attribute {name!r}")
