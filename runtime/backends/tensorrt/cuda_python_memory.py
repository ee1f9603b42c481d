"""Device buffers and a CUDA stream through NVIDIA's cuda-python runtime bindings (cuda.bindings).

The only module of reclnet that imports ``cuda`` (lazily, in the constructor).
Same interface as :mod:`.pycuda_memory`, so the TensorRT runner takes either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CudaError", "DeviceMemory"]


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


class DeviceMemory:
    """A CUDA stream plus the device allocations made through it (a context manager).

    Parameters
    ----------
    device : int
        CUDA device ordinal.
    """

    def __init__(self, device: int = 0) -> None:
        from cuda.bindings import runtime as cudart

        self._rt = cudart
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self._stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._ptrs: list[int] = []

    def _check(self, result: Any, what: str) -> Any:
        # cuda.bindings returns (err, *values); err is a cudaError_t enum.
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            raise CudaError(f"{what} failed: {err}")
        return values[0] if len(values) == 1 else tuple(values) or None

    @property
    def stream(self) -> int:
        """The stream handle as an int (what ``execute_async_v3`` takes)."""
        return int(self._stream)

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns the device pointer."""
        ptr = int(self._check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._ptrs.append(ptr)
        return ptr

    def htod(self, ptr: int, host: np.ndarray) -> None:
        """Copy a C-contiguous host array to device pointer ``ptr`` (async on the stream)."""
        host = np.ascontiguousarray(host)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self._stream),
            "cudaMemcpyAsync(HtoD)",
        )

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        """Copy ``host.nbytes`` from device pointer ``ptr`` into ``host`` (async on the stream)."""
        if not host.flags.c_contiguous:
            raise ValueError("dtoh needs a C-contiguous host array")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self._stream),
            "cudaMemcpyAsync(DtoH)",
        )

    def synchronize(self) -> None:
        """Wait for the stream."""
        self._check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        """Free every allocation and the stream (idempotent)."""
        for ptr in self._ptrs:
            self._rt.cudaFree(ptr)
        self._ptrs.clear()
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None

    def __enter__(self) -> DeviceMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
