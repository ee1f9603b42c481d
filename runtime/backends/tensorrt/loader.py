"""TensorRT engines: deserialize one built by :mod:`reclnet.export.tensorrt_engine`.

The only module of reclnet that imports ``tensorrt`` (lazily, inside
:func:`import_tensorrt`); the engine builder in ``export/`` gets the module from here.
"""

from __future__ import annotations

import os
from typing import Any

from reclnet.runtime.artifacts import Artifact, load_artifact

__all__ = ["EngineLoadError", "deserialize_engine", "import_tensorrt"]


class EngineLoadError(RuntimeError):
    """TensorRT could not deserialize an engine file."""


def import_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module (the project's one import of it)."""
    import tensorrt

    return tensorrt


def deserialize_engine(engine_path: str | os.PathLike, *, trt: Any = None) -> tuple[Any, Artifact]:
    """Verify an engine against its sidecar and deserialize it.

    Returns
    -------
    engine : tensorrt.ICudaEngine
    artifact : Artifact
        The verified sidecar (``artifact.format == "tensorrt"``).
    """
    artifact = load_artifact(engine_path)
    if artifact.format != "tensorrt":
        raise ValueError(f"{engine_path}: sidecar says {artifact.format!r}, not a TensorRT engine")
    if trt is None:
        trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(artifact.path.read_bytes())
    if engine is None:
        raise EngineLoadError(f"{engine_path}: TensorRT could not deserialize the engine")
    return engine, artifact
