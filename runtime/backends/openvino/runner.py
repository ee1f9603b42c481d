"""OpenVINO step runner: the step on OpenVINO's CPU runtime, compiled once for a dynamic N.

The model is compiled by :func:`~reclnet.runtime.backends.openvino.loader.compile_model`
(the one OpenVINO compile; see the loader's docstring for why one dynamic-N
compile beats per-N static compiles). States stay on the host: OpenVINO's CPU
plugin works in host memory, so a step is one synchronous ``infer`` whose
outputs are fresh float32 arrays.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig
from reclnet.runtime.artifacts import (
    Artifact,
    ArtifactError,
    TensorSpec,
    load_artifact,
    step_graph_mismatch,
)
from reclnet.runtime.backends.base import BackendError, StepRunner

from .loader import PRECISION_OPTIONS, compile_model, port_specs, read_model

__all__ = ["OpenVinoRunner", "graph_mismatch"]


def _port_tensor_specs(model_ports: Any, declared: tuple[TensorSpec, ...]) -> list[TensorSpec]:
    # A port may carry several tensor names: it goes by the one the sidecar declares.
    want = {t.name for t in declared}
    out = []
    for names, shape, dtype in port_specs(model_ports):
        name = min(names & want) if names & want else (min(names) if names else "?")
        out.append(TensorSpec(name, shape, dtype))
    return out


def graph_mismatch(model: Any, artifact: Artifact) -> str:
    """How an OpenVINO model's inputs / outputs disagree with the step artifact's sidecar
    (:func:`reclnet.runtime.artifacts.step_graph_mismatch`; empty when they agree).

    Parameters
    ----------
    model : openvino.Model
        The model read from ``artifact.path``.
    artifact : Artifact
        A loaded step artifact.

    Returns
    -------
    str
        The first disagreement; empty when there is none.
    """
    return step_graph_mismatch(
        artifact,
        _port_tensor_specs(model.inputs, artifact.inputs),
        _port_tensor_specs(model.outputs, artifact.outputs),
    )


class OpenVinoRunner(StepRunner):
    """An exported step model compiled by OpenVINO for its CPU plugin.

    Parameters
    ----------
    model : path-like
        ``step.onnx`` with its sidecar (an fp32 file: OpenVINO picks the compute
        precision itself).
    precision : str
        ``"default"``, ``"f32"`` or ``"bf16"`` (see
        :func:`reclnet.runtime.backends.openvino.loader.load`).
    threads : int, optional
        Inference threads (``INFERENCE_NUM_THREADS``).
    postprocess : PostprocessConfig, optional
        Overrides the sidecar's post-processing defaults.

    Attributes
    ----------
    requested_precision : str
        The ``precision`` option.
    precision : str or None
        The precision the compiled model runs, read back from it (``"fp32"``,
        ``"bf16"``, ...; None when OpenVINO reports something unknown).
    inference_precision_hint : str
        The raw ``INFERENCE_PRECISION_HINT`` read back.
    """

    name = "openvino"

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        precision: str = "default",
        threads: int | None = None,
        postprocess: PostprocessConfig | None = None,
    ) -> None:
        if precision not in PRECISION_OPTIONS:
            raise ValueError(
                f"openvino backend: unknown precision {precision!r}; use one of "
                f"{list(PRECISION_OPTIONS)}"
            )
        try:
            self.artifact = load_artifact(model, kind="step")
        except ArtifactError as exc:
            raise BackendError(f"openvino backend: {exc}") from exc
        self.config = self.artifact.config
        self.postprocess = postprocess or self.artifact.postprocess
        self.requested_precision = precision
        self.threads = threads
        try:
            graph = read_model(self.artifact.path)
        except Exception as exc:  # OpenVINO raises its own exception types
            raise BackendError(
                f"openvino backend: cannot read {self.artifact.path}: {exc}"
            ) from exc
        problem = graph_mismatch(graph, self.artifact)
        if problem:
            raise BackendError(
                f"openvino backend: {self.artifact.path} does not match its sidecar "
                f"{self.artifact.sidecar.name}: {problem}"
            )
        # One compile for every N: the first dimension dynamic, the widths fixed.
        shapes = {t.name: [-1, int(t.shape[1])] for t in self.artifact.inputs}
        try:
            # No thread pinning, as for the feature networks (features.py): pinned, every
            # process's OpenVINO threads take the same first cores (serve runs several).
            self._compiled = compile_model(
                graph,
                shapes=shapes,
                hint=PRECISION_OPTIONS[precision],
                threads=threads,
                pinning=False,
            )
        except Exception as exc:  # OpenVINO raises its own exception types
            raise BackendError(
                f"openvino backend: cannot compile {self.artifact.path}: {exc}"
            ) from exc
        self.precision = self._compiled.inference_precision
        self.inference_precision_hint = self._compiled.hint
        self._request = self._compiled.request

    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks on checked inputs (see :class:`StepRunner`)."""
        feeds = {k: np.ascontiguousarray(v) for k, v in features.items()}
        feeds["state"] = np.ascontiguousarray(state)
        # share_inputs: the contiguous arrays are read in place (infer is synchronous);
        # the outputs are copies, so the next infer does not overwrite what we return.
        out = self._request.infer(feeds, share_inputs=True)
        # Outputs by name: no port object of the compiled model outlives it.
        return out["probs"], out["state_out"]

    def _close(self) -> None:
        self._request = None
        self._compiled = None
