"""The stateless batched step: many cameras' requests in one model step, state in the request.

A request is one camera's frame: per-modality features ``[N_i, D]`` and the
tracks' recurrent states ``[N_i, S]``; the answer is its probabilities
``[N_i, C+1]`` and new states. Nothing stays behind in the service, so any
replica serves any track and replicas scale out. This module holds the plain
Python parts, testable without Ray:

* :func:`batched_step` concatenates requests along the track axis, runs the
  runner once per ``max_tracks`` rows and splits the results back;
* :class:`StepService` is the deployment's body (a runner + :func:`batched_step`);
  :mod:`.ray_backend` wraps it in a Ray Serve deployment whose ``@serve.batch``
  method collects requests from every worker;
* :class:`ServiceStepRunner` is the worker's side: a
  :class:`~reclnet.runtime.backends.StepRunner` whose ``_step`` calls the service,
  so the scorer, with all its checks, is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.runtime.backends.base import StepRunner

__all__ = ["ServiceStepRunner", "StepService", "batched_step"]

# (features {modality: float32 [N, D]}, state float32 [N, S])
Request = tuple[Mapping[str, np.ndarray], np.ndarray]


def batched_step(
    runner: StepRunner, requests: Sequence[Request]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One runner step over several requests' tracks, results split back per request.

    Parameters
    ----------
    runner : StepRunner
        A host-state runner (its states come back as float32 arrays).
    requests : sequence of (features, state)
        ``features`` float32 ``[N_i, D_modality]`` per modality, ``state``
        float32 ``[N_i, S]``; ``N_i >= 1``.

    Returns
    -------
    list of (probs, state)
        Per request: float32 ``[N_i, C+1]`` and float32 ``[N_i, S]`` (own copies).

    Raises
    ------
    TypeError, ValueError
        A request is malformed (checked by ``runner.step`` on the whole batch;
        the message names the modality or the state).
    """
    if not requests:
        return []
    sizes = []
    for i, (features, state) in enumerate(requests):
        if not isinstance(state, np.ndarray) or state.ndim != 2 or state.shape[0] < 1:
            raise ValueError(f"request {i}: state must be float32 [N >= 1, S], got {state!r:.60}")
        sizes.append(state.shape[0])
        if not isinstance(features, Mapping):
            raise TypeError(f"request {i}: features must be a dict modality -> array")
    modalities = list(runner.config.modalities)
    for i, (features, _) in enumerate(requests):
        if set(features) != set(modalities):
            raise ValueError(
                f"request {i}: modalities {sorted(features)} are not the model's {modalities}"
            )
    feats = {m: np.concatenate([np.asarray(f[m]) for f, _ in requests]) for m in modalities}
    state = np.concatenate([s for _, s in requests])
    total = state.shape[0]
    limit = runner.max_tracks or total
    probs_parts, state_parts = [], []
    for lo in range(0, total, limit):
        hi = min(total, lo + limit)
        p, s = runner.step({m: x[lo:hi] for m, x in feats.items()}, state[lo:hi])
        probs_parts.append(np.array(p, np.float32))
        state_parts.append(np.array(runner.fetch_state(s), np.float32))
    probs = np.concatenate(probs_parts)
    states = np.concatenate(state_parts)
    bounds = np.cumsum([0, *sizes])
    return [
        (probs[a:b].copy(), states[a:b].copy())
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


class StepService:
    """The step service's body: one ONNX Runtime runner of a model, stepping batches.

    Parameters
    ----------
    model : str or Path
        ``step.onnx`` (or ``step.int8.onnx``).
    threads : int, optional
        ONNX Runtime threads.
    **options
        More :func:`~reclnet.runtime.backends.load_backend` options
        (``providers=["cuda"]`` on GPU nodes).
    """

    def __init__(self, model: str | Path, threads: int | None = None, **options: Any) -> None:
        from reclnet.runtime.backends import load_backend

        self.runner = load_backend("onnxruntime", model=model, threads=threads, **options)
        self.requests = 0
        self.batches = 0

    def step_batch(self, requests: Sequence[Request]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:func:`batched_step` on this service's runner."""
        out = batched_step(self.runner, requests)
        self.requests += len(requests)
        self.batches += 1
        return out

    def stats(self) -> dict[str, int]:
        """Requests and batches served (mean batch = requests / batches)."""
        return {"requests": self.requests, "batches": self.batches}

    def close(self) -> None:
        """Release the runner."""
        self.runner.close()

    def __enter__(self) -> StepService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServiceStepRunner(StepRunner):
    """A :class:`StepRunner` whose step runs in a remote service.

    The inputs and outputs are checked here as for every backend (by
    :meth:`StepRunner.step`); the state goes to the service and comes back
    with the probabilities (host arrays, never device handles).

    Parameters
    ----------
    call : callable
        ``(features, state) -> (probs, new_state)``, the remote call.
    model : str or Path
        The step model file the service runs: its sidecar gives the
        configuration, post-processing defaults, class names and weights' id
        (checked against snapshots).
    close : callable, optional
        Called once by :meth:`close` (releasing the handle).
    """

    name = "service"

    def __init__(
        self,
        call: Callable[[dict[str, np.ndarray], np.ndarray], tuple[np.ndarray, np.ndarray]],
        model: str | Path,
        close: Callable[[], None] | None = None,
    ) -> None:
        from reclnet.runtime.artifacts import load_artifact

        self.artifact = load_artifact(model, kind="step")
        self.config = self.artifact.config
        self.postprocess = self.artifact.postprocess
        self._call = call
        self._on_close = close

    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        probs, new_state = self._call(features, state)
        return np.asarray(probs), np.asarray(new_state)

    def _close(self) -> None:
        if self._on_close is not None:
            self._on_close()
