"""Device buffers, page-locked staging and a CUDA stream through pycuda.

The only module of reclnet that imports ``pycuda`` (lazily, in the constructor;
never ``pycuda.autoinit``). Implements the contract of :mod:`.memory`, following
pycuda's driver documentation:

* ``Device.retain_primary_context()`` returns the device's *primary* context,
  the one the CUDA runtime and TensorRT use ("Unlike make_context(), the newly
  created context is not made current"), so it is pushed here, before the
  caller deserializes the engine; ``make_context()`` would create a second,
  private context whose pointers TensorRT's runtime context cannot use.
* ``Context.pop()`` is static and pops whatever is on top of this thread's
  stack, so :meth:`DeviceMemory.close` pops only when the top is this object's
  context (``Context.get_current()``), and raises otherwise.
* ``memcpy_htod_async`` / ``memcpy_dtoh_async``: the host buffer "must be
  page-locked memory", so staging arrays come from ``pagelocked_empty``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .memory import CudaError, check_aligned

__all__ = ["CudaError", "DeviceMemory"]


class DeviceMemory:
    """The device's primary context (pushed), a stream and allocations (a context manager).

    Parameters
    ----------
    device : int
        CUDA device ordinal.
    """

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        self._cuda = cuda
        self._allocs: list[Any] = []
        self._host: list[np.ndarray] = []
        self._stream: Any = None
        self._ctx: Any = None
        self._pushed = False
        cuda.init()
        self._device = cuda.Device(int(device))
        self._ctx = self._device.retain_primary_context()
        self._ctx.push()
        self._pushed = True
        try:
            self._stream = cuda.Stream()
        except Exception:
            self.close()
            raise

    @property
    def stream(self) -> int:
        """The stream handle as an int (what ``execute_async_v3`` takes)."""
        return int(self._stream.handle)

    def identity(self) -> dict[str, object]:
        """Name and compute capability of this object's device."""
        major, minor = self._device.compute_capability()
        return {"name": str(self._device.name()), "compute_capability": f"{major}.{minor}"}

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns the (256-byte aligned) pointer."""
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs.append(allocation)  # keeps it alive; close() frees it
        return check_aligned(int(allocation), "mem_alloc pointer")

    def pinned(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """A page-locked host array (``pagelocked_empty``), released by :meth:`close`."""
        host = self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))
        self._host.append(host)
        return host

    def htod(self, ptr: int, host: np.ndarray) -> None:
        """Copy a page-locked, C-contiguous host array to ``ptr`` (async on the stream)."""
        if not host.flags.c_contiguous:
            raise ValueError("htod needs a C-contiguous (page-locked) host array")
        self._cuda.memcpy_htod_async(ptr, host, self._stream)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        """Copy ``host.nbytes`` from ``ptr`` into page-locked ``host`` (async on the stream)."""
        if not host.flags.c_contiguous:
            raise ValueError("dtoh needs a C-contiguous (page-locked) host array")
        self._cuda.memcpy_dtoh_async(host, ptr, self._stream)

    def synchronize(self) -> None:
        """Wait for the stream."""
        self._stream.synchronize()

    def close(self) -> None:
        """Synchronize, free allocations and pinned memory, pop and detach the context (idempotent)."""
        if self._ctx is None:
            return
        errors: list[str] = []
        try:
            if self._stream is not None:
                # In-flight copies may still use the buffers freed below.
                self._stream.synchronize()
        except Exception as exc:  # pycuda raises its own driver error types
            errors.append(f"stream synchronize: {exc}")
        while self._allocs:
            try:
                self._allocs.pop().free()
            except Exception as exc:
                errors.append(f"free: {exc}")
        for host in self._host:
            base = getattr(host, "base", None)
            if base is not None and hasattr(base, "free"):
                base.free()
        self._host.clear()
        self._stream = None
        if self._pushed:
            current = self._cuda.Context.get_current()
            if current != self._ctx:
                # Context.pop() would pop someone else's context: leave the stack alone.
                errors.append("the current CUDA context is not this runner's; not popped")
            else:
                self._cuda.Context.pop()
                self._pushed = False
        ctx, self._ctx = self._ctx, None
        ctx.detach()  # releases the retained primary context
        if errors:
            raise CudaError("pycuda close: " + "; ".join(errors))

    def __enter__(self) -> DeviceMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
