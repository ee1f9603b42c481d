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
from reclnet.runtime.artifacts import ArtifactError, load_artifact
from reclnet.runtime.backends.base import BackendError, StepRunner

from .loader import device_of

__all__ = ["OrtRunner", "make_session"]


def make_session(
    path: str | os.PathLike,
    *,
    providers: Sequence[tuple[str, dict[str, Any]]] = (("CPUExecutionProvider", {}),),
    threads: int | None = None,
    spinning: bool = False,
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

    Raises
    ------
    BackendError
        A provider missing from this onnxruntime build, or a model it cannot load.
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
        return ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=[name for name, _ in providers],
            provider_options=[dict(o) for _, o in providers],
        )
    except Exception as exc:  # ORT raises its own exception types
        raise BackendError(f"onnxruntime backend: cannot load {path}: {exc}") from exc


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
        self.session = make_session(
            self.artifact.path, providers=providers, threads=threads, spinning=spinning
        )
        inputs = {i.name for i in self.session.get_inputs()}
        need = {*self.config.modalities, "state"}
        if inputs != need:
            raise BackendError(
                f"onnxruntime backend: {self.artifact.path.name} has inputs {sorted(inputs)}, "
                f"a step model needs {sorted(need)}"
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
