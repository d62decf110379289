"""OpenVINO imported once per process, without its model converter, and one ``Core`` shared by every user.

``import openvino`` also imports its model converter (``openvino.tools.ovc``, with numpy.ma, urllib and the
telemetry client): 0.09 s with it, 0.03 s without (numpy already imported; Sapphire Rapids), on the path to a run's
first engine call. The runtime only reads ONNX graphs and compiled blobs, never converts, so the converter is held
back while OpenVINO imports (its ``__init__`` treats the converter as optional: an ImportError there leaves
``openvino.convert_model`` unset) and released right after, so an explicit ``import openvino.tools.ovc`` later
still works.

An import on a thread of its own, begun as the process starts, was measured and is not done: it competes for the
interpreter lock with the rest of start-up (first engine call 0.60-0.66 s instead of 0.55-0.60 s, Sapphire Rapids).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_CONVERTER = "openvino.tools.ovc"
_lock = threading.Lock()
_core: Any = None
_missing: ImportError | None = None  # OpenVINO did not import: not tried again (a few asks per run)


def core() -> Any:
    """Return this process's ``openvino.Core`` (OpenVINO imported on the first call); ImportError without it."""
    global _core, _missing
    with _lock:
        if _missing is not None:
            raise _missing
        if _core is None:
            held_back = _CONVERTER not in sys.modules
            if held_back:
                sys.modules[_CONVERTER] = None  # type: ignore[assignment]  # "import halted": ImportError
            try:
                import openvino as ov
            except ImportError as exc:
                _missing = exc
                raise
            finally:
                if held_back and sys.modules.get(_CONVERTER, 0) is None:
                    del sys.modules[_CONVERTER]
            _core = ov.Core()
        return _core


def installed() -> bool:
    """Return whether OpenVINO imports here."""
    try:
        core()
    except ImportError:
        return False
    return True
