"""``ccstereo.runtime.backends``: the engines that run an exported model — ``protocol`` (the Backend interface),
``select`` (which one ``auto`` picks), ``precision_policy`` (when a reduced precision may run) and one module per
engine (``onnxruntime``, ``openvino``, ``tensorrt``, ``torch``; each imports its library only when used)."""

from ccstereo.runtime.backends.protocol import Backend, as_feeds
from ccstereo.runtime.backends.select import default_model_path, load_backend

__all__ = ["Backend", "as_feeds", "default_model_path", "load_backend"]
