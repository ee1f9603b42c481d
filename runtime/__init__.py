"""reclnet.runtime: online scoring, post-processing and evaluation.

Needs only numpy (and onnxruntime for the ONNX backend); torch, tensorrt and
CUDA bindings are imported only by the backend that needs them.
"""
