"""Thin adapter of the native TensorRT runner (``backends/tensorrt``) to the backend registry.

The runner itself (engine deserialization, device buffers, ping-pong states) is
:class:`reclnet.runtime.backends.tensorrt.runner.TensorRTStepRunner`; this module
only gives it the registry's ``load(**options)`` entry point, turns its errors
into :class:`~reclnet.runtime.backends.BackendError` and checks the batch against
the engine's ``max_tracks`` before anything is sent to the device. Nothing here
imports tensorrt or a CUDA binding; the runner does, when it is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig

from . import BackendError, RunnerBase

__all__ = ["TensorRTAdapter", "load"]


class TensorRTAdapter(RunnerBase):
    """A :class:`~reclnet.runtime.backends.StepRunner` around a native TensorRT runner.

    Parameters
    ----------
    inner : TensorRTStepRunner
        The runner (anything with ``config``, ``postprocess``, ``max_tracks``,
        ``step``, ``fetch_state``, ``close``).
    """

    name = "tensorrt"
    device_resident = True

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.config = inner.config
        self.postprocess = inner.postprocess
        self.max_tracks = int(inner.max_tracks)

    def step(self, features: Mapping[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks (N <= ``max_tracks`` of the engine)."""
        n = len(next(iter(features.values())))
        if n > self.max_tracks:
            raise BackendError(
                f"tensorrt backend: {n} tracks in one frame, the engine was built for at most "
                f"{self.max_tracks} (rebuild it with a larger max_tracks)"
            )
        try:
            return self.inner.step(features, state)
        except ValueError as exc:
            raise BackendError(f"tensorrt backend: {exc}") from exc

    def fetch_state(self, state: Any) -> np.ndarray:
        """Host copy of a state handle returned by :meth:`step`."""
        return self.inner.fetch_state(state)

    def close(self) -> None:
        self.inner.close()


def load(
    engine: str | os.PathLike,
    *,
    memory: str = "cuda-python",
    device: int = 0,
    postprocess: PostprocessConfig | None = None,
) -> TensorRTAdapter:
    """Load a TensorRT step engine (``*.engine`` + sidecar, built by ``reclnet build-engine``).

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
    TensorRTAdapter
    """
    from .tensorrt.runner import TensorRTStepRunner

    try:
        inner = TensorRTStepRunner(engine, memory=memory, device=device, postprocess=postprocess)
    except ImportError as exc:
        raise BackendError(
            f"tensorrt backend: {exc} (install the 'trt' or 'trt-pycuda' extra on a machine "
            "with an NVIDIA GPU)"
        ) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"tensorrt backend: {exc}") from exc
    return TensorRTAdapter(inner)
