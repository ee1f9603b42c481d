"""`reclnet serve` on a real local Ray cluster: failover with exactly-once events, the step service.

Slow (a cluster start, actors, Ray Serve): a handful of runs, about a minute
on 2 cores. Skipped when Ray is not installed (the `cluster` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reclnet_serve_fixtures import serve_config

from reclnet.runtime.serve.config import StepConfig, parse_config
from reclnet.runtime.serve.driver import Driver, LocalBackend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir: Path, scenes) -> dict[str, bytes]:
    """The events files of an uninterrupted run in one process (equal to `reclnet stream`'s)."""
    config = parse_config(serve_config(tmp_path_factory.mktemp("ref"), model_dir, scenes))
    backend = LocalBackend(config)
    try:
        Driver(config, backend).run()
    finally:
        backend.shutdown()
    return {c.name: (config.sink.dir / f"{c.name}.jsonl").read_bytes() for c in config.cameras}


def test_killed_workers_resume_and_the_events_equal_an_uninterrupted_run(
    ray_cluster, reference, model_dir: Path, scenes, tmp_path: Path
) -> None:
    from reclnet.runtime.serve.ray_backend import RayBackend

    raw = serve_config(tmp_path, model_dir, scenes, workers=2, status=str(tmp_path / "st.json"))
    raw["cameras"][1]["pace"] = 20.0  # cam1 alone on worker 1, slow enough to be killed mid-file
    config = parse_config(raw)
    # Worker 0 (cam0, cam2) ends its own process after cam0's frame 21 (last snapshot: 15) ...
    backend = RayBackend(config, exit_at={"cam0": 21})
    killed = []

    def on_progress(status: dict) -> None:
        # ... and worker 1 is killed from outside (ray.kill, restart allowed) mid-file.
        cam1 = status["cameras"]["cam1"]
        if not killed and 20 <= (cam1.get("frame") or 0) < 40:
            killed.append(cam1["frame"])
            backend.kill(1)

    try:
        status = Driver(config, backend, on_progress=on_progress).run()
    finally:
        backend.shutdown()
    assert killed, "the kill did not land mid-file"
    assert [w["restarts"] for w in status["workers"]] == [1, 1]
    assert [w["cameras"] for w in status["workers"]] == [["cam0", "cam2"], ["cam1"]]
    for name in ("cam0", "cam1"):
        assert status["cameras"][name]["resumed_from"] is not None
        assert status["cameras"][name]["status"] == "done"
    events = {c.name: (config.sink.dir / f"{c.name}.jsonl").read_bytes() for c in config.cameras}
    assert events == reference  # no event lost, none duplicated, same order
    on_disk = json.loads(Path(raw["status"]).read_text())
    assert on_disk["done"] and set(on_disk["cameras"]) == {"cam0", "cam1", "cam2"}


def test_step_service_equals_the_local_step(ray_cluster, model_dir: Path) -> None:
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.serve.ray_backend import start_step_service, stop_step_service

    handle = start_step_service(
        StepConfig(max_batch_size=16, batch_wait_ms=50, num_cpus=0.5), model_dir / "step.onnx"
    )
    try:
        rng = np.random.default_rng(0)
        with load_backend("onnxruntime", model=model_dir / "step.onnx", threads=1) as local:
            requests = []
            for n in (1, 3, 8, 2, 5, 1):
                feats = {
                    m: rng.standard_normal((n, d)).astype(np.float32)
                    for m, d in local.config.modalities.items()
                }
                state = rng.standard_normal((n, local.config.state_size)).astype(np.float32)
                requests.append((feats, state))
            # Sent together: the deployment batches them (state travels with each request).
            answers = [handle.step.remote(r) for r in requests]
            for (feats, state), answer in zip(requests, answers, strict=True):
                probs, new_state = answer.result()
                want_probs, want_state = local.step(feats, state)
                np.testing.assert_allclose(probs, want_probs, rtol=0, atol=1e-5)
                np.testing.assert_allclose(new_state, want_state, rtol=0, atol=1e-5)
    finally:
        stop_step_service()


def test_cameras_on_the_step_service_give_the_local_events(
    ray_cluster, reference, model_dir: Path, scenes, tmp_path: Path
) -> None:
    from reclnet.runtime.serve.ray_backend import RayBackend

    raw = serve_config(
        tmp_path,
        model_dir,
        scenes,
        workers=2,
        cpus_per_worker=0.5,
        step={"mode": "service", "num_cpus": 0.5, "max_batch_size": 8, "batch_wait_ms": 5},
    )
    config = parse_config(raw)
    backend = RayBackend(config)
    try:
        status = Driver(config, backend).run()
    finally:
        backend.shutdown()
    assert all(c["status"] == "done" for c in status["cameras"].values()), status
    for cam in config.cameras:
        ours = [
            json.loads(x) for x in (config.sink.dir / f"{cam.name}.jsonl").read_text().splitlines()
        ]
        want = [json.loads(x) for x in reference[cam.name].decode().splitlines()]
        assert [e["event_id"] for e in ours] == [e["event_id"] for e in want]
        # The batch may round differently from the local step: scores agree closely.
        np.testing.assert_allclose(
            [e["score"] for e in ours], [e["score"] for e in want], rtol=0, atol=1e-4
        )
