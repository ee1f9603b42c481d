"""Ray for ``reclnet serve``: camera workers as restartable actors, the step as a Ray Serve deployment.

The one module of reclnet importing Ray, and only inside functions, so that
importing it (and ``import reclnet.runtime``) never needs Ray.

* :class:`RayBackend` (a :class:`~reclnet.runtime.serve.driver.Backend`) runs each
  :class:`~reclnet.runtime.serve.worker.CameraWorker` in an actor with
  ``max_restarts``: when the process dies, Ray starts a new one with the same
  arguments, whose first call restores the cameras from their snapshots. A call
  cut by the death comes back as :class:`~reclnet.runtime.serve.driver.WorkerDied`.
* :func:`start_step_service` deploys :class:`~reclnet.runtime.serve.step_service.StepService`
  with ``@serve.batch``: requests from every worker (one camera's frame each, its
  tracks' states inside) are stepped together; :func:`service_step_factory` gives a
  worker its :class:`~reclnet.runtime.serve.step_service.ServiceStepRunner`.
"""

from __future__ import annotations

import importlib.util
import os
from functools import partial
from pathlib import Path
from typing import Any

from .config import CameraConfig, ServeConfig, StepConfig
from .driver import WorkerDied
from .step_service import ServiceStepRunner, StepService

__all__ = [
    "APP_NAME",
    "RayBackend",
    "ray_available",
    "service_step_factory",
    "start_step_service",
    "stop_step_service",
]

APP_NAME = "reclnet-step"


def ray_available() -> bool:
    """Whether Ray with Ray Serve is installed (looked up, not imported)."""
    return all(importlib.util.find_spec(m) is not None for m in ("ray", "yaml")) and (
        importlib.util.find_spec("ray.serve") is not None
    )


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "reclnet serve needs Ray: pip install 'reclnet[cluster]' (ray[serve] and pyyaml)"
        ) from exc
    return ray


def _worker_actor() -> Any:
    """The actor class (built on first use: Ray is imported here)."""
    ray = _ray()
    from .worker import CameraWorker

    @ray.remote
    class CameraWorkerActor:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.worker = CameraWorker(*args, **kwargs)

        def advance(self, seconds: float) -> dict[str, Any]:
            return self.worker.advance(seconds)

        def close(self) -> None:
            self.worker.close()

        def pid(self) -> int:
            return os.getpid()

    return CameraWorkerActor


class RayBackend:
    """Camera workers as Ray actors.

    Parameters
    ----------
    config : ServeConfig
    address : str, optional
        A running cluster (``"auto"``, ``"ray://head:10001"``); default the
        configuration's ``address``, else a local cluster started here.
    init_options : dict, optional
        More ``ray.init`` options (``num_cpus`` for a local cluster, ...).
    exit_at : dict[str, int], optional
        Test hook, see :class:`~reclnet.runtime.serve.worker.CameraWorker`.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        address: str | None = None,
        init_options: dict[str, Any] | None = None,
        exit_at: dict[str, int] | None = None,
    ) -> None:
        ray = self.ray = _ray()
        self.config = config
        self.exit_at = exit_at
        self._owns_ray = False
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": True, **(init_options or {})}
            address = address or config.address
            if address is not None:
                options["address"] = address
            ray.init(**options)
            self._owns_ray = True
        self.actors: dict[int, Any] = {}
        self._pending: dict[Any, int] = {}
        self._service = False
        self.step_factory = None
        if config.step.mode == "service":
            models = {c.step_path for c in config.cameras}
            if len(models) != 1:
                raise ValueError(
                    "step.mode service runs one model: every camera must use the same "
                    f"step model, got {sorted(map(str, models))}"
                )
            start_step_service(config.step, next(iter(models)))
            self._service = True
            self.step_factory = partial(service_step_factory, APP_NAME)

    def cluster_cpus(self) -> float | None:
        return float(self.ray.cluster_resources().get("CPU", 0.0)) or None

    def start(self, index: int, cameras: list[CameraConfig]) -> None:
        c = self.config
        actor = _worker_actor().options(
            num_cpus=c.cpus_per_worker,
            max_restarts=c.max_restarts,
            # The driver re-asks after a death itself: a call is not retried by Ray.
            max_task_retries=0,
        )
        self.actors[index] = actor.remote(
            cameras,
            sink=c.sink,
            state_dir=c.state_dir,
            snapshot_every=c.snapshot_every,
            step_factory=self.step_factory,
            exit_at={
                k: v for k, v in (self.exit_at or {}).items() if k in {x.name for x in cameras}
            },
        )

    def submit(self, index: int, seconds: float) -> None:
        self._pending[self.actors[index].advance.remote(seconds)] = index

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        ray = self.ray
        if not self._pending:
            return []
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            index = self._pending.pop(ref)
            try:
                out.append((index, ray.get(ref)))
            except ray.exceptions.ActorDiedError as exc:
                # Died with no restart left (or killed for good).
                out.append((index, WorkerDied(str(exc).splitlines()[0], permanent=True)))
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                out.append((index, WorkerDied(str(exc).splitlines()[0])))
        return out

    def kill(self, index: int, *, restart: bool = True) -> None:
        """Kill worker ``index``'s process (``ray.kill``); Ray restarts it when ``restart``."""
        self.ray.kill(self.actors[index], no_restart=not restart)

    def shutdown(self) -> None:
        ray = self.ray
        try:
            refs = [a.close.remote() for a in self.actors.values()]
            # Each worker snapshots its unfinished cameras; a dead one has nothing to save.
            ray.wait(refs, num_returns=len(refs), timeout=60)
            for ref in refs:
                try:
                    ray.get(ref, timeout=0)
                except Exception:  # noqa: BLE001 - a dead worker resumes from its last snapshot
                    pass
            for actor in self.actors.values():
                ray.kill(actor, no_restart=True)
            self.actors.clear()
            if self._service:
                stop_step_service()
        finally:
            if self._owns_ray:
                ray.shutdown()


# ------------------------------------------------------------------ step service
def _deployment(settings: StepConfig) -> Any:
    """The Ray Serve deployment class for ``settings`` (batch size and wait from the config)."""
    _ray()
    from ray import serve

    @serve.deployment(
        name="step",
        num_replicas=settings.replicas,
        ray_actor_options={"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus},
        max_ongoing_requests=max(2 * settings.max_batch_size, 8),
    )
    class StepDeployment:
        def __init__(self, model: str, threads: int | None, providers: list[str] | None) -> None:
            options = {"providers": providers} if providers else {}
            self.service = StepService(model, threads=threads, **options)

        @serve.batch(
            max_batch_size=settings.max_batch_size,
            batch_wait_timeout_s=settings.batch_wait_ms / 1e3,
        )
        async def step(self, requests: list[Any]) -> list[Any]:
            return self.service.step_batch(requests)

        def stats(self) -> dict[str, int]:
            return self.service.stats()

    return StepDeployment


def start_step_service(step: StepConfig, model: str | Path) -> Any:
    """Deploy the batched step for ``model`` (a running Ray is needed); returns its handle."""
    _ray()
    from ray import serve

    providers = ["cuda"] if step.num_gpus > 0 else None
    app = _deployment(step).bind(str(model), step.threads, providers)
    # No HTTP proxy: workers call the deployment through handles.
    serve.start(proxy_location="Disabled")
    return serve.run(app, name=APP_NAME, route_prefix=None)


def service_step_factory(app_name: str, camera: CameraConfig) -> ServiceStepRunner:
    """The step-service client of one camera (runs inside a worker)."""
    _ray()
    from ray import serve

    handle = serve.get_app_handle(app_name)

    def call(features: dict[str, Any], state: Any) -> tuple[Any, Any]:
        return handle.step.remote((features, state)).result()

    return ServiceStepRunner(call, camera.step_path)


def stop_step_service() -> None:
    """Delete the step service application (its replicas stop)."""
    _ray()
    from ray import serve

    serve.delete(APP_NAME)


def service_handle() -> Any:
    """The handle of the running step service (benchmarks, tests)."""
    _ray()
    from ray import serve

    return serve.get_app_handle(APP_NAME)
