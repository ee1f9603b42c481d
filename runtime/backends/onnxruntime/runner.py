"""ONNX Runtime step runner (the one runtime module importing onnxruntime).

On CPU the step is a plain ``session.run``. With IO binding (default on the
CUDA / TensorRT providers) the new states are bound to the provider's device
and returned as an ``OrtValue`` handle that the scorer feeds straight back as
the next step's state while the batch of tracks does not change, so states stay
on the device; only the probabilities come back to the host each frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from reclnet.config import PostprocessConfig
from reclnet.runtime.artifacts import (
    Artifact,
    ArtifactError,
    TensorSpec,
    load_artifact,
    step_graph_mismatch,
)
from reclnet.runtime.backends.base import BackendError, StepRunner

from .loader import device_of, trt_profile_options

__all__ = ["OrtRunner", "graph_mismatch", "make_session", "provider_fallback"]


def provider_fallback(requested: Sequence[str], active: Sequence[str]) -> list[str]:
    """Requested device providers that the session does not use.

    ``onnxruntime.get_available_providers()`` lists what the build was compiled
    with, not what loads: the TensorRT EP is listed even when ``libnvinfer``
    cannot be loaded, and the session then silently falls back to the next
    provider, dropping that provider's options (``device_id`` included). Only
    ``InferenceSession.get_providers()`` says what the session really uses.

    Parameters
    ----------
    requested, active : sequence of str
        Provider names asked for, and ``session.get_providers()``.

    Returns
    -------
    list of str
        Requested names other than the CPU provider missing from ``active``.
    """
    return [p for p in requested if p != "CPUExecutionProvider" and p not in set(active)]


def make_session(
    path: str | os.PathLike,
    *,
    providers: Sequence[tuple[str, dict[str, Any]]] = (("CPUExecutionProvider", {}),),
    threads: int | None = None,
    spinning: bool = False,
    allow_fallback: bool = False,
) -> ort.InferenceSession:
    """An ONNX Runtime session for any reclnet artifact (step or feature network).

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file (its sidecar is checked by the caller).
    providers : list of (str, dict)
        Execution providers with their options, in priority order.
    threads : int, optional
        Intra-op threads; ONNX Runtime's default when None.
    spinning : bool
        Let idle intra-op threads spin (lower latency on an otherwise idle machine,
        but they compete with the host work that follows on the same cores).
    allow_fallback : bool
        Warn (``RuntimeWarning``) instead of failing when the session does not use
        a requested CUDA / TensorRT provider (see :func:`provider_fallback`).

    Raises
    ------
    BackendError
        A provider missing from this onnxruntime build, a requested device
        provider the session fell back from, or a model it cannot load.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    available = set(ort.get_available_providers())
    missing = [name for name, _ in providers if name not in available]
    if missing:
        raise BackendError(
            f"onnxruntime backend: provider(s) {missing} not in this onnxruntime build "
            f"(available: {sorted(available)})"
        )
    try:
        session = ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=[name for name, _ in providers],
            provider_options=[dict(o) for _, o in providers],
        )
    except Exception as exc:  # ORT raises its own exception types
        raise BackendError(f"onnxruntime backend: cannot load {path}: {exc}") from exc
    dropped = provider_fallback([name for name, _ in providers], session.get_providers())
    if dropped:
        message = (
            f"onnxruntime backend: {path}: provider(s) {dropped} requested but the session "
            f"runs on {session.get_providers()} (the provider failed to load, e.g. "
            "libnvinfer / libcudart missing; its options were dropped)"
        )
        if not allow_fallback:
            raise BackendError(message)
        import warnings

        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return session


# ONNX Runtime's type strings of the dtypes an artifact may declare.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _session_specs(args: Sequence[Any]) -> list[TensorSpec]:
    # ORT reports a dimension as an int, a symbolic name or None (unknown): keep
    # None as "?", a name that matches any declared symbol.
    return [
        TensorSpec(
            a.name,
            tuple("?" if d is None else d for d in (a.shape or [])),
            _ORT_TYPES.get(a.type, a.type),
        )
        for a in args
    ]


def graph_mismatch(session: ort.InferenceSession, artifact: Artifact) -> str:
    """How an opened step session's inputs / outputs disagree with the artifact's sidecar
    (:func:`reclnet.runtime.artifacts.step_graph_mismatch`; empty when they agree).

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    artifact : Artifact
        A loaded step artifact.

    Returns
    -------
    str
        The first disagreement; empty when there is none.
    """
    return step_graph_mismatch(
        artifact, _session_specs(session.get_inputs()), _session_specs(session.get_outputs())
    )


class OrtRunner(StepRunner):
    """An exported step model in an ONNX Runtime session.

    Parameters
    ----------
    model : path-like
        ``step.onnx`` (or ``step.int8.onnx``) with its sidecar.
    providers : list of (str, dict)
        From :func:`reclnet.runtime.backends.onnxruntime.loader.provider_list`.
    io_binding : bool, optional
        Device-resident states (see the module docstring); default: on unless on CPU.
    threads : int, optional
        Intra-op threads.
    spinning : bool
        Let idle intra-op threads spin (lower step latency on an otherwise idle machine,
        but they compete with the scorer's host work on the same cores).
    postprocess : PostprocessConfig, optional
        Overrides the sidecar's post-processing defaults.
    trt_profile_tracks : (int, int, int)
        Min / opt / max N of the TensorRT EP profile (``trt_profile_*_shapes``).
    allow_fallback : bool
        Warn instead of failing when a requested device provider is not used.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        providers: Sequence[tuple[str, dict[str, Any]]] = (("CPUExecutionProvider", {}),),
        io_binding: bool | None = None,
        threads: int | None = None,
        spinning: bool = False,
        postprocess: PostprocessConfig | None = None,
        trt_profile_tracks: tuple[int, int, int] = (1, 32, 256),
        allow_fallback: bool = False,
    ) -> None:
        try:
            self.artifact = load_artifact(model, kind="step")
        except ArtifactError as exc:
            raise BackendError(f"onnxruntime backend: {exc}") from exc
        self.config = self.artifact.config
        self.postprocess = postprocess or self.artifact.postprocess
        self.device, self.device_id = device_of(providers)
        self.device_resident = self.device != "cpu" if io_binding is None else bool(io_binding)
        # Spinning worker threads would keep the cores busy after each step, slowing the
        # scorer's own work (checks, post-processing) that follows it on the same cores.
        # The TensorRT EP gets one profile over N unless the caller set its own.
        widths = {t.name: int(t.shape[1]) for t in self.artifact.inputs if len(t.shape) == 2}
        profile = trt_profile_options(widths, *trt_profile_tracks)
        providers = [
            (name, {**profile, **opts} if name == "TensorrtExecutionProvider" else dict(opts))
            for name, opts in providers
        ]
        self.providers = list(providers)
        self.session = make_session(
            self.artifact.path,
            providers=providers,
            threads=threads,
            spinning=spinning,
            allow_fallback=allow_fallback,
        )
        #: Providers the session really runs on (``session.get_providers()``).
        self.active_providers = list(self.session.get_providers())
        if self.device != "cpu" and self.active_providers[0] == "CPUExecutionProvider":
            # Fallen back to the CPU (allowed): keep states on the host.
            self.device, self.device_id = "cpu", 0
            self.device_resident = bool(io_binding)
        problem = graph_mismatch(self.session, self.artifact)
        if problem:
            self.session = None
            raise BackendError(
                f"onnxruntime backend: {self.artifact.path} does not match its sidecar "
                f"{self.artifact.sidecar.name}: {problem}"
            )
        self._outputs = ["probs", "state_out"]

    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks on checked inputs (see :class:`StepRunner`)."""
        if not self.device_resident:
            feeds = {k: np.ascontiguousarray(v) for k, v in features.items()}
            feeds["state"] = np.ascontiguousarray(state)
            probs, new_state = self.session.run(self._outputs, feeds)
            return probs, new_state
        binding = self.session.io_binding()
        for k, v in features.items():
            binding.bind_cpu_input(k, np.ascontiguousarray(v))
        if isinstance(state, ort.OrtValue):
            # The previous step's output, still on the device: no copy.
            binding.bind_ortvalue_input("state", state)
        else:
            binding.bind_cpu_input("state", np.ascontiguousarray(state))
        binding.bind_output("probs", "cpu")
        binding.bind_output("state_out", self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        probs_val, state_val = binding.get_outputs()
        return probs_val.numpy(), state_val

    def _state_rows(self, state: Any) -> int:
        """N of an ``OrtValue`` state of shape ``[N, S]``."""
        if not isinstance(state, ort.OrtValue):
            return super()._state_rows(state)
        shape = tuple(state.shape())
        if len(shape) != 2 or shape[1] != self.config.state_size:
            raise ValueError(
                f"onnxruntime backend: state handle has shape {list(shape)}, "
                f"expected [N, {self.config.state_size}]"
            )
        return int(shape[0])

    def _fetch_state(self, state: Any) -> np.ndarray:
        return state.numpy()

    def _close(self) -> None:
        self.session = None
