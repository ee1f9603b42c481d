"""Device buffers, page-locked staging and a CUDA stream through NVIDIA's cuda-python (cuda.bindings).

The only module of reclnet that imports ``cuda`` (lazily, in the functions that
need it). Implements the contract of :mod:`.memory` (shared with
:mod:`.pycuda_memory`). Written against cuda-python 12.6.1+/13 ``cuda.bindings.runtime``:
every call returns a tuple whose first item is a ``cudaError_t`` and whose
further items are the results (``cudaMalloc(size) -> (err, devPtr)``,
``cudaStreamCreate() -> (err, stream)``, ``cudaSetDevice(d) -> (err,)``,
``cudaMallocHost(size) -> (err, ptr)``, ``cudaGetDeviceProperties(d) -> (err, prop)``).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .memory import CudaError, check_aligned

__all__ = ["CudaError", "DeviceMemory", "gpu_identity"]


def _runtime() -> Any:
    from cuda.bindings import runtime as cudart

    return cudart


def _check(rt: Any, result: Any, what: str) -> Any:
    """Unpack a ``(cudaError_t, *values)`` result; raise :class:`CudaError` naming the error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        raise CudaError(f"{what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_identity(device: int = 0) -> dict[str, object]:
    """Name and compute capability of CUDA device ``device`` (``cudaGetDeviceProperties``)."""
    rt = _runtime()
    prop = _check(rt, rt.cudaGetDeviceProperties(int(device)), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, bytes | bytearray):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return {"name": str(name), "compute_capability": f"{prop.major}.{prop.minor}"}


class DeviceMemory:
    """A CUDA stream plus the device and page-locked allocations made through it (a context manager).

    Parameters
    ----------
    device : int
        CUDA device ordinal; selected with ``cudaSetDevice`` here, before the
        caller deserializes an engine.
    """

    def __init__(self, device: int = 0) -> None:
        self._rt = _runtime()
        self._device = int(device)
        self._ptrs: list[int] = []
        self._host: list[int] = []
        self._stream: Any = None
        self._check(self._rt.cudaSetDevice(self._device), f"cudaSetDevice({self._device})")
        self._stream = self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result: Any, what: str) -> Any:
        return _check(self._rt, result, what)

    @property
    def stream(self) -> int:
        """The stream handle as an int (what ``execute_async_v3`` takes)."""
        return int(self._stream)

    def identity(self) -> dict[str, object]:
        """Name and compute capability of this object's device."""
        return gpu_identity(self._device)

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns the (256-byte aligned) pointer."""
        ptr = int(self._check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._ptrs.append(ptr)  # tracked before the check, so close() frees it either way
        return check_aligned(ptr, "cudaMalloc pointer")

    def pinned(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """A page-locked host array (``cudaMallocHost``), freed by :meth:`close`."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(ptr)
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype, count=int(np.prod(shape))).reshape(shape)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        """Copy a page-locked, C-contiguous host array to ``ptr`` (async on the stream)."""
        if not host.flags.c_contiguous:
            raise ValueError("htod needs a C-contiguous (page-locked) host array")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self._stream),
            "cudaMemcpyAsync(HtoD)",
        )

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        """Copy ``host.nbytes`` from ``ptr`` into page-locked ``host`` (async on the stream)."""
        if not host.flags.c_contiguous:
            raise ValueError("dtoh needs a C-contiguous (page-locked) host array")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self._stream),
            "cudaMemcpyAsync(DtoH)",
        )

    def synchronize(self) -> None:
        """Wait for the stream."""
        self._check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        """Synchronize the stream, then free every allocation and the stream (idempotent).

        Freeing goes on after a failed call so that nothing leaks; the first
        error is raised at the end.
        """
        errors: list[str] = []

        def call(result: Any, what: str) -> None:
            try:
                self._check(result, what)
            except CudaError as exc:
                errors.append(str(exc))

        if self._stream is not None:
            # In-flight copies may still read or write the buffers freed below.
            call(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        while self._ptrs:
            call(self._rt.cudaFree(self._ptrs.pop()), "cudaFree")
        while self._host:
            call(self._rt.cudaFreeHost(self._host.pop()), "cudaFreeHost")
        if self._stream is not None:
            stream, self._stream = self._stream, None
            call(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")
        if errors:
            raise CudaError("; ".join(errors))

    def __enter__(self) -> DeviceMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
