"""The serve configuration: every error names its key; defaults and paths resolve."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from reclnet.runtime.serve.config import ConfigError, load_config, parse_config


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    """A folder with a fake model, a video file and a tracks file (only existence is checked)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "step.onnx").write_bytes(b"x")
    (model / "features_rgb.onnx").write_bytes(b"x")
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("")
    return tmp_path


def base(**extra) -> dict:
    raw = {
        "sink": {"dir": "events"},
        "defaults": {"model": "model"},
        "cameras": [{"name": "a", "source": "a.mp4", "tracks": "a.txt"}],
    }
    raw.update(extra)
    return raw


def test_a_valid_config_resolves_paths_and_defaults(files: Path) -> None:
    raw = base(workers=2)
    raw["cameras"].append(
        {"name": "b", "source": "rtsp://cam/b", "threshold": 0.4, "feature_precision": "bf16"}
    )
    config = parse_config(raw, files)
    a, b = config.cameras
    assert (a.feature_precision, a.feature_backend) == ("auto", "auto")
    assert (b.feature_precision, b.feature_backend) == ("bf16", "auto")
    assert a.source == str(files / "a.mp4") and a.tracks == files / "a.txt"
    assert a.model == files / "model" and a.step_path == files / "model" / "step.onnx"
    assert not a.live and b.live and b.source == "rtsp://cam/b" and b.tracks is None
    assert b.threshold == 0.4 and a.threshold is None
    assert config.sink.dir == files / "events" and config.state_dir == files / "state"
    assert config.workers == 2 and config.step.mode == "local"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda r: r.update(cammeras=[]), "cammeras: unknown key"),
        (lambda r: r["cameras"][0].update(trakcs="a.txt"), "cameras[0].trakcs: unknown key"),
        (lambda r: r["sink"].update(qeue=3), "sink.qeue: unknown key"),
        (lambda r: r.update(step={"mode": "remote"}), "step.mode: must be 'local' or 'service'"),
        (lambda r: r["defaults"].update(name="x"), "defaults.name: unknown key"),
        (lambda r: r["cameras"][0].update(source="missing.mp4"), "cameras[0].source: video file"),
        (lambda r: r["cameras"][0].update(tracks="none.txt"), "cameras[0].tracks: tracks file"),
        (lambda r: r["cameras"][0].update(model="nomodel"), "cameras[0].model: model folder"),
        (lambda r: r["cameras"][0].update(int8=True), "cameras[0].model: "),
        (lambda r: r["cameras"][0].pop("name"), "cameras[0].name: missing"),
        (lambda r: r["cameras"][0].update(name="a/b"), "cameras[0].name: 'a/b' is not a valid"),
        (lambda r: r["cameras"].append(dict(r["cameras"][0])), "cameras[1].name: camera name 'a'"),
        (lambda r: r["cameras"][0].update(max_age=-1), "cameras[0].max_age: must be >= 0"),
        (lambda r: r["cameras"][0].update(threshold=2), "cameras[0].threshold: must be <= 1"),
        (lambda r: r["cameras"][0].update(threads=True), "cameras[0].threads: must be an integer"),
        (lambda r: r["cameras"][0].update(detector="a.txt"), "cameras[0]: give tracks or detector"),
        (lambda r: r.update(workers=0), "workers: must be >= 1"),
        (lambda r: r.update(snapshot_every="10"), "snapshot_every: must be an integer"),
        (lambda r: r.pop("sink"), "sink: missing"),
        (lambda r: r.update(cameras=[]), "cameras: must be a non-empty list"),
        (
            lambda r: r["cameras"][0].update(feature_precision="fp16"),
            "cameras[0].feature_precision: must be one of",
        ),
        (
            lambda r: r["cameras"][0].update(feature_backend="tvm"),
            "cameras[0].feature_backend: must be one of auto, onnxruntime, openvino",
        ),
        (
            lambda r: r["cameras"][0].update(
                feature_precision="bf16", feature_backend="onnxruntime"
            ),
            "cameras[0]: feature_precision bf16 runs on OpenVINO",
        ),
        (
            lambda r: r["cameras"][0].update(hog_regions="edges"),
            "cameras[0].hog_regions: must be one of frame, motion",
        ),
        (lambda r: r.update(poll_seconds=float("nan")), "poll_seconds: must be finite"),
    ],
)
def test_errors_name_the_key(files: Path, change, key: str) -> None:
    raw = base()
    change(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw, files)
    assert str(info.value).startswith(key), str(info.value)


def test_a_camera_tracks_file_replaces_a_default_detector(files: Path) -> None:
    (files / "det.onnx").write_bytes(b"x")
    raw = base()
    raw["defaults"]["detector"] = "det.onnx"
    raw["cameras"].append({"name": "b", "source": "0"})
    a, b = parse_config(raw, files).cameras
    assert a.tracks is not None and a.detector is None
    assert b.detector == files / "det.onnx" and b.tracks is None and b.live


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML is not installed")
def test_yaml_file_paths_are_relative_to_it(files: Path, tmp_path: Path) -> None:
    path = files / "serve.yaml"
    path.write_text(
        "sink: {dir: events}\ndefaults: {model: model}\n"
        "cameras:\n  - {name: a, source: a.mp4, tracks: a.txt}\n"
    )
    assert load_config(path).cameras[0].tracks == files / "a.txt"
    path.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(files / "nothing.yaml")
