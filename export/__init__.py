"""``ccstereo.export`` (folder ``export/``): ccs-export — checkpoint -> verified ONNX -> FP16 / int8 ONNX ->
TensorRT engine, with the model's config and measurements in the metadata; heavy imports inside functions."""
