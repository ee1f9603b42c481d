"""Device buffers and a CUDA stream through pycuda.

The only module of reclnet that imports ``pycuda`` (lazily, in the constructor).
Same interface as :mod:`.cuda_python_memory`. A context is created on the
device and pushed for the lifetime of the object (no ``pycuda.autoinit``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DeviceMemory"]


class DeviceMemory:
    """A CUDA context + stream and the device allocations made through it (a context manager).

    Parameters
    ----------
    device : int
        CUDA device ordinal.
    """

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._ctx = cuda.Device(device).make_context()
        self._stream = cuda.Stream()
        self._allocs: list[object] = []

    @property
    def stream(self) -> int:
        """The stream handle as an int (what ``execute_async_v3`` takes)."""
        return int(self._stream.handle)

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns the device pointer."""
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs.append(allocation)  # keeps it alive
        return int(allocation)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        """Copy a C-contiguous host array to device pointer ``ptr`` (async on the stream)."""
        self._cuda.memcpy_htod_async(ptr, np.ascontiguousarray(host), self._stream)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        """Copy ``host.nbytes`` from device pointer ``ptr`` into ``host`` (async on the stream)."""
        if not host.flags.c_contiguous:
            raise ValueError("dtoh needs a C-contiguous host array")
        self._cuda.memcpy_dtoh_async(host, ptr, self._stream)

    def synchronize(self) -> None:
        """Wait for the stream."""
        self._stream.synchronize()

    def close(self) -> None:
        """Free every allocation, the stream and the context (idempotent)."""
        if self._ctx is None:
            return
        for allocation in self._allocs:
            allocation.free()
        self._allocs.clear()
        self._stream = None
        self._ctx.pop()
        self._ctx.detach()
        self._ctx = None

    def __enter__(self) -> DeviceMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
