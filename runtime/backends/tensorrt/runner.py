"""Native TensorRT step runner: execute_async_v3 with named tensor addresses, states on the device.

A :class:`~reclnet.runtime.backends.base.StepRunner`: the base class checks the
batch (N within the engine profile's ``max_tracks``) and every input and output;
this module only moves buffers and runs the engine. Device
buffers are sized once for the engine profile's ``max_tracks``; the packed
states live in two device buffers used in ping-pong (``state`` reads one,
``state_out`` writes the other, then they swap), so in the steady state (same
tracks, same order) a state never crosses the bus: :meth:`TensorRTStepRunner.step`
returns a :class:`DeviceState` handle that the caller passes back unchanged.
Memory goes through cuda-python (default) or pycuda. Imports neither tensorrt
(that is :mod:`.loader`) nor a CUDA binding at module level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig
from reclnet.runtime.backends.base import StepRunner

__all__ = ["DeviceState", "TensorRTStepRunner"]


@dataclass(frozen=True)
class DeviceState:
    """Handle of the N packed states a step left in a device buffer."""

    buffer: int  # 0 or 1: which ping-pong buffer holds them
    n: int
    generation: int  # the step that produced it; older handles are stale


def _memory(kind: str, device: int) -> Any:
    if kind == "cuda-python":
        from reclnet.runtime.backends.tensorrt.cuda_python_memory import DeviceMemory
    elif kind == "pycuda":
        from reclnet.runtime.backends.tensorrt.pycuda_memory import DeviceMemory
    else:
        raise ValueError(f"memory must be 'cuda-python' or 'pycuda', got {kind!r}")
    return DeviceMemory(device)


class TensorRTStepRunner(StepRunner):
    """One engine, one execution context, device buffers for up to ``max_tracks`` tracks.

    Parameters
    ----------
    engine : path-like
        ``*.engine`` built by :func:`reclnet.export.tensorrt_engine.build_engine`
        (its sidecar is verified).
    memory : str
        ``"cuda-python"`` or ``"pycuda"``.
    device : int
        CUDA device ordinal.
    postprocess : PostprocessConfig, optional
        Overrides the sidecar's post-processing defaults.
    """

    name = "tensorrt"
    device_resident = True
    max_tracks_origin = "the engine profile"
    max_tracks_hint = "rebuild the engine with a larger max_tracks"

    def __init__(
        self,
        engine: str | os.PathLike,
        *,
        memory: str = "cuda-python",
        device: int = 0,
        postprocess: PostprocessConfig | None = None,
    ) -> None:
        from reclnet.runtime.backends.tensorrt.loader import deserialize_engine

        self._mem = None
        self._engine, self.artifact = deserialize_engine(engine)
        if self.artifact.kind != "step":
            raise ValueError(
                f"{engine}: the runner takes a step engine, got {self.artifact.kind!r}"
            )
        self.config = self.artifact.config
        self.postprocess = postprocess or self.artifact.postprocess
        self.max_tracks = int(self.artifact.metadata["tensorrt"]["max_tracks"])
        self._context = self._engine.create_execution_context()
        self._mem = _memory(memory, device)
        s, c = self.config.state_size, self.config.num_classes
        itemsize = np.dtype(np.float32).itemsize
        self._inputs = {
            name: self._mem.alloc(self.max_tracks * d * itemsize)
            for name, d in self.config.modalities.items()
        }
        self._state = [self._mem.alloc(self.max_tracks * s * itemsize) for _ in range(2)]
        self._probs = self._mem.alloc(self.max_tracks * c * itemsize)
        self._generation = 0
        self._current = 0  # ping-pong buffer holding the latest states

    # ------------------------------------------------------------------ step
    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks on checked inputs (see :class:`StepRunner`).

        ``state`` is float32 ``[N, S]`` host states or the :class:`DeviceState` the
        previous step returned; returns host probs and a :class:`DeviceState`.
        """
        cfg = self.config
        src = self._current
        if isinstance(state, DeviceState):
            n = state.n
        else:
            n = state.shape[0]
            self._mem.htod(self._state[src], np.ascontiguousarray(state))
        dst = 1 - src
        for name, x in features.items():
            self._mem.htod(self._inputs[name], np.ascontiguousarray(x))
            self._context.set_input_shape(name, x.shape)
            self._context.set_tensor_address(name, self._inputs[name])
        self._context.set_input_shape("state", (n, cfg.state_size))
        self._context.set_tensor_address("state", self._state[src])
        self._context.set_tensor_address("state_out", self._state[dst])
        self._context.set_tensor_address("probs", self._probs)
        if not self._context.execute_async_v3(self._mem.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        probs = np.empty((n, cfg.num_classes), np.float32)
        self._mem.dtoh(probs, self._probs)
        self._mem.synchronize()
        self._generation += 1
        self._current = dst
        return probs, DeviceState(dst, n, self._generation)

    def _state_rows(self, state: Any) -> int:
        """N of a :class:`DeviceState` of the last step (an older one is stale)."""
        if not isinstance(state, DeviceState):
            return super()._state_rows(state)
        if state.generation != self._generation or state.buffer != self._current:
            raise ValueError("stale device state handle: pass the handle of the last step")
        return state.n

    def _fetch_state(self, state: Any) -> np.ndarray:
        out = np.empty((state.n, self.config.state_size), np.float32)
        self._mem.dtoh(out, self._state[state.buffer])
        self._mem.synchronize()
        return out

    def _close(self) -> None:
        """Free device memory, the context and the engine."""
        if self._mem is not None:
            self._mem.close()
            self._mem = None
        self._context = None
        self._engine = None
