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


def engine_problem(engine: Any, trt: Any, artifact: Any) -> str:
    """How a deserialized engine's I/O tensors disagree with its sidecar ("" when they agree).

    Checks, through the ``ICudaEngine`` I/O tensor API, that the tensor names
    are exactly the sidecar's inputs and outputs with the right mode, that every
    one is FLOAT (the runner's buffers are float32), that the fixed sizes match
    the model, and that profile 0 covers N from the sidecar's min to its
    ``max_tracks`` (``get_tensor_profile_shape(name, 0) -> [min, opt, max]``).
    """
    cfg = artifact.config
    meta = artifact.metadata["tensorrt"]
    sizes = {**cfg.modalities, "state": cfg.state_size}
    out_sizes = {"probs": cfg.num_classes, "state_out": cfg.state_size}
    names = [engine.get_tensor_name(i) for i in range(int(engine.num_io_tensors))]
    if set(names) != set(sizes) | set(out_sizes) or len(names) != len(sizes) + len(out_sizes):
        return f"engine tensors {sorted(names)}, the model has {sorted([*sizes, *out_sizes])}"
    if int(engine.num_optimization_profiles) < 1:
        return "the engine has no optimization profile"
    lo_want = int(meta.get("profile", {}).get("state", [[1]])[0][0])
    hi_want = int(meta["max_tracks"])
    for name in names:
        is_input = name in sizes
        mode = trt.TensorIOMode.INPUT if is_input else trt.TensorIOMode.OUTPUT
        if engine.get_tensor_mode(name) != mode:
            return f"tensor {name!r} is not an engine {'input' if is_input else 'output'}"
        if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
            return f"tensor {name!r} is {engine.get_tensor_dtype(name)}, the runner needs FLOAT"
        shape = tuple(engine.get_tensor_shape(name))
        width = sizes[name] if is_input else out_sizes[name]
        if len(shape) != 2 or shape[1] != width:
            return f"tensor {name!r} has shape {list(shape)}, expected [N, {width}]"
        if is_input:
            lo, _, hi = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
            if lo[0] != lo_want or hi[0] != hi_want:
                return (
                    f"input {name!r}: engine profile N in [{lo[0]}, {hi[0]}], "
                    f"sidecar says [{lo_want}, {hi_want}]"
                )
    return ""


class TensorRTStepRunner(StepRunner):
    """One engine, one execution context, device buffers for up to ``max_tracks`` tracks.

    Order of construction (each step undone if a later one fails): the device is
    selected by the memory module (``cudaSetDevice`` / pycuda primary context
    pushed), the GPU is compared with the one in the sidecar, the engine is
    deserialized and checked against the sidecar, the execution context is
    created (``create_execution_context()`` may return None), then the device
    buffers and page-locked staging buffers are allocated.

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
        from reclnet.runtime.artifacts import load_artifact
        from reclnet.runtime.backends.tensorrt.loader import deserialize_engine, import_tensorrt

        self._mem: Any = None
        self._context: Any = None
        self._engine: Any = None
        artifact = load_artifact(engine)  # read before any device work: cheap failures first
        if artifact.format != "tensorrt" or artifact.kind != "step":
            raise ValueError(
                f"{engine}: the runner takes a TensorRT step engine, got "
                f"{artifact.format!r} {artifact.kind!r}"
            )
        trt = import_tensorrt()
        self._mem = _memory(memory, device)  # selects the device before deserialization
        try:
            gpu = artifact.metadata.get("tensorrt", {}).get("gpu")
            self._open(engine, trt, deserialize_engine, gpu if isinstance(gpu, dict) else None)
        except BaseException:
            self._release()
            raise
        self.config = self.artifact.config
        self.postprocess = postprocess or self.artifact.postprocess

    def _open(self, engine: Any, trt: Any, deserialize_engine: Any, built_on: Any) -> None:
        self._engine, self.artifact = deserialize_engine(engine, trt=trt)
        if built_on is not None:
            here = self._mem.identity()
            if here.get("compute_capability") != built_on.get("compute_capability"):
                raise ValueError(
                    f"{engine}: built on {built_on.get('name')} (compute capability "
                    f"{built_on.get('compute_capability')}), this GPU is {here.get('name')} "
                    f"({here.get('compute_capability')}); rebuild the engine here"
                )
        problem = engine_problem(self._engine, trt, self.artifact)
        if problem:
            raise ValueError(f"{engine}: engine does not match its sidecar: {problem}")
        meta = self.artifact.metadata["tensorrt"]
        self.max_tracks = int(meta["max_tracks"])
        self.min_tracks = int(meta.get("profile", {}).get("state", [[1]])[0][0])
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"{engine}: TensorRT could not create an execution context")
        cfg = self.artifact.config
        m, f32 = self.max_tracks, np.float32
        itemsize = np.dtype(f32).itemsize
        self._inputs = {n: self._mem.alloc(m * d * itemsize) for n, d in cfg.modalities.items()}
        self._state = [self._mem.alloc(m * cfg.state_size * itemsize) for _ in range(2)]
        self._probs = self._mem.alloc(m * cfg.num_classes * itemsize)
        # Page-locked staging: async copies from pageable memory are not asynchronous
        # (cudaMemcpyAsync) or not allowed (pycuda memcpy_*_async).
        self._host_in = {n: self._mem.pinned((m, d), f32) for n, d in cfg.modalities.items()}
        self._host_state = self._mem.pinned((m, cfg.state_size), f32)
        self._host_probs = self._mem.pinned((m, cfg.num_classes), f32)
        self._generation = 0
        self._current = 0  # ping-pong buffer holding the latest states

    # ------------------------------------------------------------------ step
    def step(self, features: Any, state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks (see :meth:`StepRunner.step`); N must also be >= the profile's min."""
        if not self.closed and isinstance(state, np.ndarray) and state.ndim == 2:
            n = int(state.shape[0])
            if 1 <= n < self.min_tracks:
                raise ValueError(
                    f"tensorrt backend: N={n} tracks below the engine profile's minimum "
                    f"{self.min_tracks} (rebuild with --min-tracks 1)"
                )
        return super().step(features, state)

    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks on checked inputs (see :class:`StepRunner`).

        ``state`` is float32 ``[N, S]`` host states or the :class:`DeviceState` the
        previous step returned; returns host probs and a :class:`DeviceState`.
        The base class has checked N against ``max_tracks`` and every input, and
        every shape and address is set (and its return value checked) before the
        first copy, so a failure leaves the device states as they were.
        """
        cfg = self.config
        ctx = self._context
        src = self._current
        dst = 1 - src
        n = state.n if isinstance(state, DeviceState) else int(state.shape[0])
        if not 1 <= n <= self.max_tracks:  # the base class checked; never write past a buffer
            raise ValueError(f"N={n} outside the engine profile [1, {self.max_tracks}]")
        shapes = {name: x.shape for name, x in features.items()}
        shapes["state"] = (n, cfg.state_size)
        for name, shape in shapes.items():
            if not ctx.set_input_shape(name, shape):
                raise RuntimeError(f"TensorRT set_input_shape({name!r}, {list(shape)}) failed")
        addresses = {**self._inputs, "state": self._state[src], "state_out": self._state[dst]}
        addresses["probs"] = self._probs
        for name, ptr in addresses.items():
            if not ctx.set_tensor_address(name, ptr):
                raise RuntimeError(f"TensorRT set_tensor_address({name!r}) failed")
        for name, x in features.items():
            staging = self._host_in[name][:n]
            np.copyto(staging, x)
            self._mem.htod(self._inputs[name], staging)
        if not isinstance(state, DeviceState):
            staging = self._host_state[:n]
            np.copyto(staging, state)
            self._mem.htod(self._state[src], staging)
        if not ctx.execute_async_v3(self._mem.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        out = self._host_probs[:n]
        self._mem.dtoh(out, self._probs)
        self._mem.synchronize()
        self._generation += 1
        self._current = dst
        return out.copy(), DeviceState(dst, n, self._generation)

    def _state_rows(self, state: Any) -> int:
        """N of a :class:`DeviceState` of the last step (an older one is stale)."""
        if not isinstance(state, DeviceState):
            return super()._state_rows(state)
        if state.generation != self._generation or state.buffer != self._current:
            raise ValueError("stale device state handle: pass the handle of the last step")
        return state.n

    def _fetch_state(self, state: Any) -> np.ndarray:
        out = self._host_state[: state.n]
        self._mem.dtoh(out, self._state[state.buffer])
        self._mem.synchronize()
        return out.copy()

    def _release(self) -> None:
        # The context and engine go before the memory (and the pycuda context) they use.
        self._context = None
        self._engine = None
        if self._mem is not None:
            mem, self._mem = self._mem, None
            mem.close()

    def _close(self) -> None:
        """Free the context, the engine, then device memory (stream synchronized first)."""
        self._release()
