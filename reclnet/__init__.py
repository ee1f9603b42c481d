"""reclnet: online spatio-temporal action localization with RecLNet.

Parts, each its own top-level folder in the repository:

- ``reclnet.train``   (train/)   PyTorch model, datasets, training;
- ``reclnet.export``  (export/)  ONNX / TensorRT / Triton artifacts;
- ``reclnet.runtime`` (runtime/) online scorer, post-processing, evaluation;
  needs only numpy and onnxruntime.

This package holds what all parts share: the model configuration
(:mod:`reclnet.config`) and the command line (:mod:`reclnet.cli`).
"""

from reclnet.config import RecLNetConfig

__version__ = "0.1.0"
__all__ = ["RecLNetConfig", "__version__"]
