"""`reclnet serve` from the command line, without Ray (`--local`): errors before any start."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from reclnet_serve_fixtures import serve_config

from reclnet.runtime.serve.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("yaml") is None, reason="PyYAML is not installed (the cluster extra)"
)


def write(tmp_path: Path, raw: dict) -> Path:
    import yaml

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_local_run_writes_events_and_status(model_dir, scenes, tmp_path, capsys) -> None:
    one = {"cam1": scenes["cam1"]}
    raw = serve_config(tmp_path, model_dir, one, status=str(tmp_path / "status.json"))
    assert main([str(write(tmp_path, raw)), "--local", "--quiet"]) == 0
    assert "cam1: done, frame 49" in capsys.readouterr().out
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["done"] and status["cameras"]["cam1"]["frame"] == 49
    first = (tmp_path / "events" / "cam1.jsonl").read_bytes()
    # Again: done already, nothing written twice; --fresh starts over to the same events.
    assert main([str(write(tmp_path, raw)), "--local", "--quiet"]) == 0
    assert main([str(write(tmp_path, raw)), "--local", "--quiet", "--fresh"]) == 0
    assert (tmp_path / "events" / "cam1.jsonl").read_bytes() == first


def test_bad_configs_are_refused_before_anything_starts(
    model_dir, scenes, tmp_path, capsys
) -> None:
    raw = serve_config(tmp_path, model_dir, scenes)
    raw["cameras"][2]["source"] = str(tmp_path / "gone.avi")
    assert main([str(write(tmp_path, raw)), "--local"]) == 2
    err = capsys.readouterr().err
    assert "cameras[2].source: video file" in err and "gone.avi" in err
    assert not (tmp_path / "events").exists() and not (tmp_path / "state").exists()
    # An events file that is an input (the sink folder holds cam0's tracks as cam0.jsonl).
    raw = serve_config(tmp_path, model_dir, scenes)
    tracks = tmp_path / "events" / "cam0.jsonl"
    tracks.parent.mkdir()
    tracks.write_bytes(scenes["cam0"][1].read_bytes())
    raw["cameras"][0]["tracks"] = str(tracks)
    assert main([str(write(tmp_path, raw)), "--local"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
