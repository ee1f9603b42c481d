"""The registry of step backends: pick one by name, list those installed.

The contract every backend keeps (inputs and outputs checked once, for all of
them) is :class:`~reclnet.runtime.backends.base.StepRunner`. Backends are chosen
by name plus options::

    runner = load_backend("onnxruntime", model="model/step.onnx", providers=["cpu"])
    runner = load_backend("torch", checkpoint="runs/best.pt")
    runner = load_backend("tensorrt", engine="model/step.engine")

Each backend lives in ``reclnet.runtime.backends.<name>`` and is imported only
when chosen, so the heavy import (torch, onnxruntime, tensorrt) happens only
then; :func:`available_backends` only looks the packages up, importing none.
Runners own sessions or device memory, so they are context managers.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .base import BackendError, StepRunner

__all__ = ["BACKENDS", "BackendError", "StepRunner", "available_backends", "load_backend"]

# name -> module with ``load(**options) -> StepRunner`` (imported on demand).
BACKENDS: dict[str, str] = {
    "torch": "reclnet.runtime.backends.torch.loader",
    "onnxruntime": "reclnet.runtime.backends.onnxruntime.loader",
    "tensorrt": "reclnet.runtime.backends.tensorrt.loader",
    "openvino": "reclnet.runtime.backends.openvino.loader",
}

# name -> top-level packages a backend needs: all of the first tuple, and one of each
# further tuple (TensorRT takes its device memory from cuda-python or pycuda).
_REQUIRES: dict[str, tuple[tuple[str, ...], ...]] = {
    "torch": (("torch",),),
    "onnxruntime": (("onnxruntime",),),
    "tensorrt": (("tensorrt",), ("cuda", "pycuda")),
    "openvino": (("openvino",),),
}


def _installed(package: str) -> bool:
    # A top-level name only: find_spec of "a.b" would import "a".
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> list[str]:
    """Backends whose packages are installed here (looked up, not imported).

    Returns
    -------
    list of str
        Names of :data:`BACKENDS`, in its order. A listed backend may still fail
        to load (no GPU, a broken install): :func:`load_backend` says why.
    """
    out = []
    for name, groups in _REQUIRES.items():
        first, *alternatives = groups
        if all(_installed(p) for p in first) and all(
            any(_installed(p) for p in group) for group in alternatives
        ):
            out.append(name)
    return out


def load_backend(name: str, **options: Any) -> StepRunner:
    """Load a step backend by name.

    Parameters
    ----------
    name : str
        One of :data:`BACKENDS`.
    **options
        Passed to the backend's ``load`` (see each loader's docstring).

    Returns
    -------
    StepRunner
        A context manager; close it (or use ``with``) to free its resources.

    Raises
    ------
    BackendError
        Unknown name, or the backend's package or model cannot be loaded.
    """
    module = BACKENDS.get(name)
    if module is None:
        raise BackendError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    try:
        loader = importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} is not available: {exc}") from exc
    return loader.load(**options)
