"""``ccstereo.runtime`` (folder ``runtime/``): ccs-run, the streaming runtime — media I/O, windows, backends,
overlap-add, writers. Imports neither torch, onnx, tensorrt nor ``ccstereo.export``/``ccstereo.model``
(tests/test_architecture.py)."""
