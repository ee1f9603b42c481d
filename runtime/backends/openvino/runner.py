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
    step_graph_problem,
)
from reclnet.runtime.backends.base import BackendError, StepRunner

from .loader import PRECISION_OPTIONS, compile_model, port_specs, read_model

__all__ = ["OpenVinoRunner", "graph_mismatch"]


def _match(
    kind: str, ports: list[tuple[frozenset[str], tuple, str]], declared: tuple[TensorSpec, ...]
) -> str:
    """How the ports of one side disagree with the sidecar's specs ('' when they agree)."""
    by_name = {}
    for names, shape, dtype in ports:
        for name in names:
            by_name[name] = (shape, dtype)
    want = {t.name for t in declared}
    if len(ports) != len(want) or not want <= set(by_name):
        got = sorted(min(names) if names else "?" for names, _, _ in ports)
        return f"graph {kind} {got}, sidecar declares {sorted(want)}"
    for spec in declared:
        shape, dtype = by_name[spec.name]
        if dtype != spec.dtype:
            return f"{kind[:-1]} {spec.name!r} is {dtype} in the graph, {spec.dtype} in the sidecar"
        fixed = [(a, b) for a, b in zip(shape, spec.shape, strict=False) if isinstance(a, int)]
        if len(shape) != len(spec.shape) or any(a != b for a, b in fixed):
            return (
                f"{kind[:-1]} {spec.name!r} has shape {list(shape)} in the graph, "
                f"{list(spec.shape)} in the sidecar"
            )
    return ""


def graph_mismatch(model: Any, artifact: Artifact) -> str:
    """How an OpenVINO model's inputs / outputs disagree with the step artifact's sidecar.

    The sidecar was validated against its model configuration at load; this
    checks the graph itself (names, dtypes, ranks, fixed sizes), so a mismatched
    sidecar fails at load, not with OpenVINO's shape error at the first frame.

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
    problem = _match("inputs", port_specs(model.inputs), artifact.inputs) or _match(
        "outputs", port_specs(model.outputs), artifact.outputs
    )
    if problem:
        return problem
    if {t.name for t in artifact.outputs} != {"probs", "state_out"}:
        return f"graph outputs {artifact.output_names}, a step model has probs, state_out"

    def symbolic(specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(t.name, tuple(d if isinstance(d, int) else "N" for d in t.shape), t.dtype)
            for t in specs
        )

    return (
        step_graph_problem(artifact.config, symbolic(artifact.inputs), symbolic(artifact.outputs))
        or ""
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
