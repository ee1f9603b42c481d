"""The contract the two CUDA memory modules share (no CUDA import here).

:mod:`.cuda_python_memory` (NVIDIA cuda-python, ``cuda.bindings.runtime``) and
:mod:`.pycuda_memory` (pycuda's driver API) each implement :class:`DeviceMemory`;
the TensorRT runner takes either. The rules both follow, from the documented APIs:

* Device pointers handed to TensorRT must be 256-byte aligned
  (``IExecutionContext::setTensorAddress``: "The pointer must have at least
  256-byte alignment", NvInferRuntime.h); :func:`check_aligned` enforces it.
* Asynchronous copies use page-locked host memory: pycuda's
  ``memcpy_htod_async`` documents "src must be page-locked memory", and a
  ``cudaMemcpyAsync`` from pageable memory is staged and synchronous with respect
  to the host (CUDA Runtime API, "API synchronization behavior"). Host staging
  buffers come from :meth:`DeviceMemory.pinned`.
* The device is selected (cuda-python: ``cudaSetDevice``; pycuda: the device's
  retained primary context pushed) in the constructor, *before* the engine is
  deserialized, so engine weights and buffers live on the same GPU.
* A constructor that fails part-way frees what it made; ``close()`` first
  synchronizes the stream (in-flight copies may still read the buffers), then
  frees, and is idempotent.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["ALIGNMENT", "CudaError", "DeviceMemory", "check_aligned"]

#: Alignment TensorRT requires of every tensor address (bytes).
ALIGNMENT = 256


class CudaError(RuntimeError):
    """A CUDA call failed (the message names the call and the CUDA error)."""


def check_aligned(ptr: int, what: str = "device pointer") -> int:
    """Return ``ptr`` if it is a non-null multiple of :data:`ALIGNMENT`; raise CudaError otherwise."""
    ptr = int(ptr)
    if ptr == 0 or ptr % ALIGNMENT:
        raise CudaError(f"{what} {ptr:#x} is not {ALIGNMENT}-byte aligned (TensorRT requires it)")
    return ptr


class DeviceMemory(Protocol):
    """What the runner needs from a memory module (a context manager)."""

    @property
    def stream(self) -> int:
        """The CUDA stream handle as an int (what ``execute_async_v3`` takes)."""
        ...

    def alloc(self, nbytes: int) -> int:
        """Device allocation of ``nbytes``; a 256-byte aligned pointer."""
        ...

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A page-locked host array (freed by ``close``)."""
        ...

    def htod(self, ptr: int, host: np.ndarray) -> None:
        """Async copy of a page-locked, C-contiguous ``host`` to ``ptr`` on the stream."""
        ...

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        """Async copy of ``host.nbytes`` from ``ptr`` into page-locked ``host`` on the stream."""
        ...

    def synchronize(self) -> None:
        """Wait for the stream."""
        ...

    def identity(self) -> dict[str, object]:
        """``{"name": str, "compute_capability": "M.m"}`` of the selected device."""
        ...

    def close(self) -> None:
        """Synchronize, then free buffers, pinned memory, the stream (and context)."""
        ...
