"""Camera workers without Ray: same events as `reclnet stream`, exactly-once after a crash.

A crash is a real one: the worker runs in a subprocess that ends itself with
``os._exit`` right after a given frame (the test hook), losing whatever was
queued for the sink; the next worker restores the snapshots and replays. The
events files must then be byte for byte those of an uninterrupted run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reclnet_serve_fixtures import serve_config

from reclnet.runtime.serve.config import parse_config
from reclnet.runtime.serve.driver import Driver, LocalBackend, assign, plan_workers
from reclnet.runtime.serve.worker import CameraState, CameraStateError


def run_local(raw: dict) -> dict[str, bytes]:
    config = parse_config(raw)
    backend = LocalBackend(config)
    try:
        status = Driver(config, backend).run()
    finally:
        backend.shutdown()
    assert all(c["status"] == "done" for c in status["cameras"].values()), status
    return {c.name: (config.sink.dir / f"{c.name}.jsonl").read_bytes() for c in config.cameras}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir: Path, scenes) -> dict[str, bytes]:
    """The events files of an uninterrupted local run."""
    return run_local(serve_config(tmp_path_factory.mktemp("reference"), model_dir, scenes))


def lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.decode().splitlines()]


def test_events_equal_reclnet_stream_per_camera(
    reference, model_dir: Path, scenes, tmp_path
) -> None:
    from reclnet.runtime.camera.cli import main as stream_main

    for name, (video, tracks) in scenes.items():
        out = tmp_path / f"{name}.jsonl"
        args = [str(video), "--model", str(model_dir), "--tracks", str(tracks)]
        args += ["--events", str(out), "--threshold", "0.2", "--lookahead", "2"]
        assert stream_main([*args, "--threads", "1", "--quiet"]) == 0
        ours = lines(reference[name])
        assert {e.pop("camera") for e in ours} == {name}
        ids = [e.pop("event_id") for e in ours]
        assert len(set(ids)) == len(ids)
        theirs = lines(out.read_bytes())
        assert ours == theirs
        # Segments start and end in the middle of the clips, not only at the end.
        assert {"start", "end"} <= {e["kind"] for e in theirs}


CRASH = r"""
import json, sys
from reclnet.runtime.serve.config import parse_config
from reclnet.runtime.serve.worker import CameraWorker
config = parse_config(json.loads(sys.argv[1]))
worker = CameraWorker(list(config.cameras), sink=config.sink, state_dir=config.state_dir,
                      snapshot_every=config.snapshot_every, exit_at=json.loads(sys.argv[2]))
while not worker.advance(10.0)["done"]:
    pass
worker.close()
sys.exit(3)  # never reached: the hook ends the process first
"""


def crash(raw: dict, exit_at: dict[str, int]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, json.dumps(raw), json.dumps(exit_at)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 17, proc.stderr[-3000:]


def test_a_crashed_worker_resumes_with_no_event_lost_or_duplicated(
    reference, model_dir: Path, scenes, tmp_path: Path
) -> None:
    raw = serve_config(tmp_path, model_dir, scenes)
    # cam1 at frame 40: its last snapshot is after frame 31, the others' after 31 / 15.
    crash(raw, {"cam1": 40})
    config = parse_config(raw)
    partial = {c.name: (config.sink.dir / f"{c.name}.jsonl").read_bytes() for c in config.cameras}
    for name, data in partial.items():
        assert reference[name].startswith(data)  # a prefix: nothing wrong written
    assert any(len(partial[n]) < len(reference[n]) for n in partial)  # the crash cost events
    state = CameraState(config.state_dir / "cam1").load()
    assert state is not None and state["frame"] == 31 and not state["done"]
    # A torn line as a crash inside a write leaves it: cut off and replayed.
    with (config.sink.dir / "cam0.jsonl").open("ab") as fh:
        fh.write(b'{"event_id":"cam0:3:1:')
    assert run_local(raw) == reference
    # Run again: every camera is done, nothing is written twice.
    assert run_local(raw) == reference


def test_a_stopped_run_resumes_where_it_stopped(reference, model_dir, scenes, tmp_path) -> None:
    raw = serve_config(tmp_path, model_dir, scenes)
    config = parse_config(raw)
    backend = LocalBackend(config)
    backend.start(0, list(config.cameras))
    backend.submit(0, 0.0)  # one frame per camera
    (report,) = [r for _, r in backend.poll(1.0)]
    assert [c["frame"] for c in report["cameras"]] == [0, 0, 0]
    backend.shutdown()  # a clean stop snapshots every camera at its frame
    assert CameraState(config.state_dir / "cam0").load()["frame"] == 0
    assert run_local(raw) == reference


def test_a_changed_camera_setting_refuses_the_old_state(model_dir, scenes, tmp_path) -> None:
    raw = serve_config(tmp_path, model_dir, {"cam1": scenes["cam1"]}, snapshot_every=8)
    crash(raw, {"cam1": 12})
    raw["defaults"]["threshold"] = 0.3
    config = parse_config(raw)
    backend = LocalBackend(config)
    status = Driver(config, backend).run()
    backend.shutdown()
    error = status["cameras"]["cam1"]["error"]
    assert status["cameras"]["cam1"]["status"] == "failed"
    assert "threshold=0.2" in error and "--fresh" in error
    with pytest.raises(CameraStateError, match="threshold"):
        CameraState(config.state_dir / "cam1").check_fingerprint(config.cameras[0].fingerprint())


def test_assignment_and_worker_count(model_dir, scenes, tmp_path) -> None:
    config = parse_config(serve_config(tmp_path, model_dir, scenes))
    groups = assign(config.cameras, 2)
    assert [[c.name for c in g] for g in groups] == [["cam0", "cam2"], ["cam1"]]
    with pytest.raises(ValueError, match="workers must be in"):
        assign(config.cameras, 4)
    assert plan_workers(config, 2.0) == 2  # auto: 1 CPU per worker
    assert plan_workers(config, 16.0) == 3  # never more workers than cameras
    assert plan_workers(config, None) == 3
    assert plan_workers(parse_config(serve_config(tmp_path, model_dir, scenes, workers=1)), 8) == 1
