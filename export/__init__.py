"""reclnet.export: ONNX, TensorRT and Triton artifacts with their JSON sidecars."""
