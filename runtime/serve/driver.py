"""The driver of ``reclnet serve``: cameras to workers, the progress loop, status file, failover.

The driver never touches a frame. It plans the workers (:func:`plan_workers`),
assigns cameras to them (:func:`assign`), starts them on a backend, then asks
each worker again and again to advance its cameras for a short while; each
answer is the worker's progress, kept per camera and written to the status
file (atomically, JSON). A worker that dies is restarted by the backend (Ray
restarts the actor; it restores its cameras from their snapshots) and asked
again; a worker that cannot be restarted any more fails the run.

Backends (:class:`Backend`): :class:`LocalBackend` runs the workers in this
process, one after the other (``reclnet serve --local``, tests without Ray);
:class:`reclnet.runtime.serve.ray_backend.RayBackend` runs them as Ray actors.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .config import CameraConfig, ServeConfig
from .worker import CameraWorker, StepFactory, _write_atomic

__all__ = [
    "Backend",
    "Driver",
    "LocalBackend",
    "ServeError",
    "WorkerDied",
    "assign",
    "check_paths",
    "clear_state",
    "plan_workers",
]


class ServeError(RuntimeError):
    """The run cannot go on (a worker died too often, a worker's code failed)."""


class WorkerDied(Exception):
    """A worker's call failed because its process died.

    Attributes
    ----------
    permanent : bool
        The backend will not restart it (its restarts are used up).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def plan_workers(config: ServeConfig, cluster_cpus: float | None) -> int:
    """How many workers to start: the config's ``workers``, else what the CPUs hold.

    Parameters
    ----------
    config : ServeConfig
    cluster_cpus : float, optional
        CPUs of the cluster (None: unknown, one worker per camera).

    Returns
    -------
    int
        Between 1 and the number of cameras (a worker without a camera is useless).
    """
    n = len(config.cameras)
    if config.workers is not None:
        return min(config.workers, n)
    if cluster_cpus is None or config.cpus_per_worker <= 0:
        return n
    reserved = config.step.replicas * config.step.num_cpus if config.step.mode == "service" else 0
    fit = math.floor((cluster_cpus - reserved) / config.cpus_per_worker)
    return max(1, min(n, fit))


def assign(cameras: Sequence[CameraConfig], workers: int) -> list[list[CameraConfig]]:
    """Cameras to workers, round robin in configuration order (counts differ by at most one).

    Raises
    ------
    ValueError
        ``workers < 1`` or more workers than cameras.
    """
    if workers < 1 or workers > len(cameras):
        raise ValueError(f"workers must be in [1, {len(cameras)}] (one camera each at least)")
    groups: list[list[CameraConfig]] = [[] for _ in range(workers)]
    for i, camera in enumerate(cameras):
        groups[i % workers].append(camera)
    return groups


def check_paths(config: ServeConfig) -> None:
    """Refuse events files that would overwrite an input or a model artifact (before any start).

    Raises
    ------
    reclnet.runtime.camera.output_paths.OutputPathError
        Names the camera's events file and what it would destroy.
    """
    from reclnet.runtime.camera.output_paths import check_outputs

    config.sink.dir.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, Any] = {}
    for cam in config.cameras:
        if not cam.live:
            inputs[f"the source of camera {cam.name}"] = cam.source
        inputs[f"the tracks of camera {cam.name}"] = cam.tracks
        inputs[f"the detector of camera {cam.name}"] = cam.detector
    outputs = {
        f"events of camera {c.name}": config.sink.dir / f"{c.name}.jsonl" for c in config.cameras
    }
    if config.status is not None:
        outputs["status"] = config.status
    check_outputs(inputs, outputs, protected_dirs=sorted({c.model for c in config.cameras}))


def clear_state(config: ServeConfig) -> None:
    """``--fresh``: remove the configured cameras' snapshots and events files."""
    for cam in config.cameras:
        shutil.rmtree(config.state_dir / cam.name, ignore_errors=True)
        (config.sink.dir / f"{cam.name}.jsonl").unlink(missing_ok=True)


class Backend(Protocol):
    """Where workers run (see :class:`LocalBackend`, ``RayBackend``)."""

    def cluster_cpus(self) -> float | None:
        """CPUs available to workers (None: unknown)."""

    def start(self, index: int, cameras: list[CameraConfig]) -> None:
        """Start worker ``index`` for ``cameras``."""

    def submit(self, index: int, seconds: float) -> None:
        """Ask worker ``index`` to advance its cameras for about ``seconds``."""

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        """Finished calls: ``(index, progress dict or WorkerDied)``."""

    def shutdown(self) -> None:
        """Stop every worker (each snapshots its unfinished cameras first)."""


class LocalBackend:
    """Workers in this process, run one after the other (no Ray; ``--local``, tests).

    Parameters
    ----------
    config : ServeConfig
    step_factory : callable, optional
        See :class:`~reclnet.runtime.serve.worker.CameraRunner`.
    """

    def __init__(self, config: ServeConfig, *, step_factory: StepFactory | None = None) -> None:
        self.config = config
        self.step_factory = step_factory
        self.workers: dict[int, CameraWorker] = {}
        self._pending: list[tuple[int, float]] = []

    def cluster_cpus(self) -> float | None:
        return 1.0

    def start(self, index: int, cameras: list[CameraConfig]) -> None:
        c = self.config
        self.workers[index] = CameraWorker(
            cameras,
            sink=c.sink,
            state_dir=c.state_dir,
            snapshot_every=c.snapshot_every,
            step_factory=self.step_factory,
        )

    def submit(self, index: int, seconds: float) -> None:
        self._pending.append((index, seconds))

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        pending, self._pending = self._pending, []
        return [(i, self.workers[i].advance(s)) for i, s in pending]

    def shutdown(self) -> None:
        errors = []
        for worker in self.workers.values():
            try:
                worker.close()
            except Exception as exc:  # noqa: BLE001 - close the others, report the first
                errors.append(exc)
        self.workers.clear()
        if errors:
            raise errors[0]


class Driver:
    """Runs a configuration on a backend until every camera is done or failed.

    Parameters
    ----------
    config : ServeConfig
    backend : Backend
    on_progress : callable, optional
        ``status dict -> None`` after every answer (the live display; tests).
    slice_seconds : float
        How long one worker call advances its cameras.

    Attributes
    ----------
    status : dict
        The last status: ``{"time", "done", "workers": [...], "cameras": {name: progress}}``.
    """

    def __init__(
        self,
        config: ServeConfig,
        backend: Backend,
        *,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        slice_seconds: float | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.on_progress = on_progress
        self.slice_seconds = config.poll_seconds if slice_seconds is None else slice_seconds
        self.groups: list[list[CameraConfig]] = []
        self.workers: list[dict[str, Any]] = []
        self.cameras: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}

    def _write_status(self, done: bool) -> None:
        self.status = {
            "time": time.time(),
            "done": done,
            "workers": self.workers,
            "cameras": self.cameras,
        }
        if self.config.status is not None:
            _write_atomic(self.config.status, json.dumps(self.status, indent=1).encode())
        if self.on_progress is not None:
            self.on_progress(self.status)

    def _record(self, index: int, report: Mapping[str, Any]) -> bool:
        worker = self.workers[index]
        if worker["pid"] is not None and report["pid"] != worker["pid"]:
            worker["restarts"] += 1
        worker["pid"] = report["pid"]
        worker["sink"] = report["sink"]
        for cam in report["cameras"]:
            self.cameras[cam["camera"]] = {**cam, "worker": index}
        worker["state"] = "done" if report["done"] else "running"
        return bool(report["done"])

    def run(self) -> dict[str, Any]:
        """Start the workers and drive them to the end; returns the final status.

        Raises
        ------
        ServeError
            A worker died and cannot be restarted, or failed with an error.
        """
        n = plan_workers(self.config, self.backend.cluster_cpus())
        self.groups = assign(self.config.cameras, n)
        self.workers = [
            {
                "worker": i,
                "cameras": [c.name for c in group],
                "pid": None,
                "restarts": 0,
                "state": "starting",
                "sink": {},
            }
            for i, group in enumerate(self.groups)
        ]
        self.cameras = {
            c.name: {"camera": c.name, "status": "starting", "worker": i}
            for i, group in enumerate(self.groups)
            for c in group
        }
        for i, group in enumerate(self.groups):
            self.backend.start(i, group)
        for i in range(n):
            self.backend.submit(i, self.slice_seconds)
        running = set(range(n))
        self._write_status(False)
        while running:
            for index, answer in self.backend.poll(timeout=max(1.0, 4 * self.slice_seconds)):
                if isinstance(answer, WorkerDied):
                    worker = self.workers[index]
                    worker["state"] = "restarting"
                    if answer.permanent:
                        worker["state"] = "dead"
                        self._write_status(False)
                        raise ServeError(
                            f"worker {index} (cameras {', '.join(worker['cameras'])}) died and "
                            f"cannot be restarted (max_restarts={self.config.max_restarts}): {answer}"
                        )
                    # The backend restarts it; the new process restores from the snapshots.
                    time.sleep(0.05)
                    self.backend.submit(index, self.slice_seconds)
                    continue
                if self._record(index, answer):
                    running.discard(index)
                else:
                    self.backend.submit(index, self.slice_seconds)
                self._write_status(False)
        self._write_status(True)
        return self.status
