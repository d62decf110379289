"""ccs-export: checkpoint -> verified ONNX -> FP16 ONNX -> TensorRT engine (issue 3)."""
