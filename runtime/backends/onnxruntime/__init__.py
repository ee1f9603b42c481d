"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers (imports onnxruntime only when loaded)."""
