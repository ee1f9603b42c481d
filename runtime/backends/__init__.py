"""The step-backend protocol of the online scorer and the registry that picks one by name.

A backend runs one RecLNet *step* for N live tracks: per-stream features
``[N, D]`` and packed states ``[N, S]`` in, probabilities ``[N, C+1]`` and new
states out. Backends are chosen by name plus options::

    runner = load_backend("onnxruntime", model="model/step.onnx", providers=["cpu"])
    runner = load_backend("torch", checkpoint="runs/best.pt")

Each backend lives in ``reclnet.runtime.backends.<name>`` and is imported only
when chosen, so the heavy import (torch, onnxruntime, tensorrt) happens only
then. Runners own sessions or device memory, so they are context managers.

Device-resident state
---------------------
A runner whose ``device_resident`` is True may return, instead of a host array,
an opaque *state handle* living on its device; the scorer passes that handle
back unchanged as the next ``state`` while the batch of tracks is the same
(same slots in the same order, no new track), so states never leave the device
in the steady state. Whenever the batch changes the scorer calls
``fetch_state(handle)`` for a host copy and goes through host rows.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from reclnet.config import PostprocessConfig, RecLNetConfig

__all__ = ["BACKENDS", "BackendError", "StepRunner", "available_backends", "load_backend"]

# name -> module with ``load(**options) -> StepRunner`` (imported on demand).
BACKENDS: dict[str, str] = {
    "torch": "reclnet.runtime.backends.torch.loader",
    "onnxruntime": "reclnet.runtime.backends.onnxruntime.loader",
    "tensorrt": "reclnet.runtime.backends.trt_adapter",
}


class BackendError(RuntimeError):
    """A backend cannot be loaded (unknown name, missing package, bad option or model)."""


@runtime_checkable
class StepRunner(Protocol):
    """What the scorer needs from a backend.

    Attributes
    ----------
    name : str
        Backend name (``"torch"``, ``"onnxruntime"``, ...).
    config : RecLNetConfig
        The model's configuration (modalities and sizes).
    postprocess : PostprocessConfig
        Post-processing defaults stored with the model (sidecar), or the defaults.
    device_resident : bool
        True when :meth:`step` returns state handles that stay on a device.
    """

    name: str
    config: RecLNetConfig
    postprocess: PostprocessConfig
    device_resident: bool

    def step(self, features: Mapping[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks.

        Parameters
        ----------
        features : dict[str, np.ndarray]
            float32 ``[N, D_modality]`` per stream of ``config.modalities``.
        state : np.ndarray or handle
            float32 ``[N, S]`` host array, or a handle returned by a previous step.

        Returns
        -------
        probs : np.ndarray
            float32 ``[N, C+1]`` on the host.
        state : np.ndarray or handle
            The new states (float32 ``[N, S]`` or a device handle).
        """
        ...

    def fetch_state(self, state: Any) -> np.ndarray:
        """Host copy (float32 ``[N, S]``) of a state returned by :meth:`step`."""
        ...

    def close(self) -> None:
        """Release sessions and device memory (idempotent)."""
        ...


def available_backends() -> list[str]:
    """Backends whose packages import on this machine (tries each import)."""
    probes = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}
    out = []
    for name, module in probes.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
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


def check_step_outputs(
    config: RecLNetConfig, n: int, probs: np.ndarray, state: np.ndarray | None
) -> None:
    """Raise BackendError unless a step returned ``[n, C+1]`` probs (and ``[n, S]`` states)."""
    if probs.shape != (n, config.num_classes) or probs.dtype != np.float32:
        raise BackendError(
            f"backend returned probs {probs.dtype}{list(probs.shape)}, "
            f"expected float32[{n}, {config.num_classes}]"
        )
    if state is not None and (state.shape != (n, config.state_size) or state.dtype != np.float32):
        raise BackendError(
            f"backend returned state {state.dtype}{list(state.shape)}, "
            f"expected float32[{n}, {config.state_size}]"
        )


class RunnerBase:
    """Context-manager plumbing shared by the runners."""

    name = "base"
    device_resident = False
    config: RecLNetConfig
    postprocess: PostprocessConfig

    def fetch_state(self, state: Any) -> np.ndarray:
        return np.asarray(state)

    def close(self) -> None:  # pragma: no cover - overridden when there is something to free
        pass

    def __enter__(self) -> RunnerBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
