"""``reclnet serve``: many cameras on a Ray cluster, with exactly-once events and failover.

The folder is the architecture:

* :mod:`.config` — the YAML configuration, validated before anything starts;
* :mod:`.sink` — stable event ids and the exactly-once event sink (JSON Lines per camera);
* :mod:`.worker` — a camera worker: the camera pipeline of its cameras, snapshots, resume;
* :mod:`.step_service` — the stateless batched step (request batching, the remote runner);
* :mod:`.driver` — assignment of cameras to workers, progress, status file, failover;
* :mod:`.ray_backend` — the one module importing Ray (actors, Ray Serve deployment);
* :mod:`.cli` — ``reclnet serve CONFIG.yaml``.

Everything but :mod:`.ray_backend` is plain Python: ``import reclnet.runtime.serve``
imports neither Ray nor PyYAML.
"""
