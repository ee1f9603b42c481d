"""TensorRT engines: deserialize one built by :mod:`reclnet.export.tensorrt_engine`, load a runner.

The only module of reclnet that imports ``tensorrt`` (lazily, inside
:func:`import_tensorrt`); the engine builder in ``export/`` gets the module from here.
"""

from __future__ import annotations

import os
from typing import Any

from reclnet.config import PostprocessConfig
from reclnet.runtime.artifacts import Artifact, load_artifact

__all__ = ["EngineLoadError", "deserialize_engine", "import_tensorrt", "load"]


class EngineLoadError(RuntimeError):
    """TensorRT could not deserialize an engine file."""


def import_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module (the project's one import of it)."""
    import tensorrt

    return tensorrt


def deserialize_engine(engine_path: str | os.PathLike, *, trt: Any = None) -> tuple[Any, Artifact]:
    """Verify an engine against its sidecar and deserialize it.

    The caller must have selected the device first (``cudaSetDevice`` / the
    pycuda primary context pushed): TensorRT deserializes onto the current device.
    A serialized engine is tied to the TensorRT version that built it (TensorRT
    developer guide, "Version compatibility": by default only the same version
    deserializes it), so a version other than the sidecar's is refused here with
    a message, not with TensorRT's own deserialization error.

    Returns
    -------
    engine : tensorrt.ICudaEngine
    artifact : Artifact
        The verified sidecar (``artifact.format == "tensorrt"``).

    Raises
    ------
    EngineLoadError
        Another TensorRT version, or TensorRT returned None.
    """
    artifact = load_artifact(engine_path)
    if artifact.format != "tensorrt":
        raise ValueError(f"{engine_path}: sidecar says {artifact.format!r}, not a TensorRT engine")
    if trt is None:
        trt = import_tensorrt()
    built = str(artifact.metadata.get("tensorrt", {}).get("version", "unknown"))
    here = str(getattr(trt, "__version__", "unknown"))
    if built != here:
        raise EngineLoadError(
            f"{engine_path}: built with TensorRT {built}, this is TensorRT {here}; "
            "rebuild the engine with reclnet build-engine on this machine"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(artifact.path.read_bytes())
    if engine is None:
        raise EngineLoadError(f"{engine_path}: TensorRT could not deserialize the engine")
    return engine, artifact


def load(
    engine: str | os.PathLike,
    *,
    memory: str = "cuda-python",
    device: int = 0,
    postprocess: PostprocessConfig | None = None,
) -> Any:
    """Load a TensorRT step engine (``*.engine`` + sidecar, built by ``reclnet build-engine``).

    The registry's entry point (``load_backend("tensorrt", engine=...)``).

    Parameters
    ----------
    engine : path-like
        The engine file; its sidecar is verified.
    memory : str
        Device-memory binding: ``"cuda-python"`` or ``"pycuda"``.
    device : int
        CUDA device ordinal.
    postprocess : PostprocessConfig, optional
        Overrides the sidecar's post-processing defaults.

    Returns
    -------
    TensorRTStepRunner

    Raises
    ------
    BackendError
        TensorRT or the CUDA binding is missing, or the engine cannot be loaded.
    """
    from reclnet.runtime.backends.base import BackendError

    from .runner import TensorRTStepRunner

    try:
        return TensorRTStepRunner(engine, memory=memory, device=device, postprocess=postprocess)
    except ImportError as exc:
        raise BackendError(
            f"tensorrt backend: {exc} (install the 'trt' or 'trt-pycuda' extra on a machine "
            "with an NVIDIA GPU)"
        ) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"tensorrt backend: {exc}") from exc
