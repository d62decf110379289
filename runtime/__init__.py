"""ccs-run: the streaming runtime. Never imports torch, onnx or tensorrt at import time."""
