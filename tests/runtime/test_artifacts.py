"""Sidecar reading and verification (reclnet.runtime.artifacts): good, corrupt and foreign files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reclnet.config import PostprocessConfig, RecLNetConfig
from reclnet.export.sidecar import write_sidecar
from reclnet.runtime.artifacts import (
    ArtifactError,
    TensorSpec,
    check_same_model,
    load_artifact,
    sidecar_path,
)

CFG = RecLNetConfig(num_actions=3, modalities={"rgb": 8}, projection_size=4, memory_size=2)


def _make(folder: Path, content: bytes, *, model_id: str = "abc", name: str = "step.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    write_sidecar(
        path,
        kind="step",
        config=CFG,
        postprocess=PostprocessConfig(window=9, threshold=0.3),
        inputs=[TensorSpec("rgb", ("N", 8), "float32"), TensorSpec("state", ("N", 4), "float32")],
        outputs=[TensorSpec("probs", ("N", 4), "float32")],
        opset=18,
        model_id=model_id,
    )
    return path


def test_roundtrip(tmp_path: Path) -> None:
    path = _make(tmp_path, b"model bytes " * 100)
    art = load_artifact(path)
    assert art.kind == "step" and art.format == "onnx"
    assert art.config == CFG
    assert art.postprocess == PostprocessConfig(window=9, threshold=0.3)
    assert art.input_names == ["rgb", "state"] and art.output_names == ["probs"]
    assert art.input("rgb").shape == ("N", 8) and art.input("rgb").np_dtype.name == "float32"
    assert art.metadata["opset"] == 18 and "python" in art.metadata["tool_versions"]
    assert sidecar_path(path) == tmp_path / "step.json"
    # the sidecar path works as well as the model path
    assert load_artifact(tmp_path / "step.json").path == path
    with pytest.raises(KeyError, match="no input 'flow'"):
        art.input("flow")


def test_int8_name_has_its_own_sidecar(tmp_path: Path) -> None:
    path = _make(tmp_path, b"q" * 10, name="step.int8.onnx")
    assert sidecar_path(path).name == "step.int8.json"
    assert load_artifact(path).path.name == "step.int8.onnx"


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_corrupt_model_is_refused(tmp_path: Path, damage: str) -> None:
    path = _make(tmp_path, bytes(range(256)) * 50)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[1234] ^= 0x01
    elif damage == "truncate":
        data = data[:-10]
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"step\.onnx: sha256 mismatch"):
        load_artifact(path)
    assert load_artifact(path, verify=False).kind == "step"


def test_sidecar_from_another_model_is_refused(tmp_path: Path) -> None:
    a = _make(tmp_path / "a", b"model A", model_id="A")
    b = _make(tmp_path / "b", b"model B", model_id="B")
    shutil.copy(sidecar_path(a), sidecar_path(b))  # A's sidecar beside B's model
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(b)
    # a sidecar that names another file
    other = _make(tmp_path / "c", b"seq", name="sequence.onnx")
    shutil.copy(sidecar_path(other), tmp_path / "c" / "step.json")
    (tmp_path / "c" / "step.onnx").write_bytes(b"seq")
    with pytest.raises(ArtifactError, match="describes 'sequence.onnx', not 'step.onnx'"):
        load_artifact(tmp_path / "c" / "step.onnx")


def test_mixed_models_are_detected(tmp_path: Path) -> None:
    a = load_artifact(_make(tmp_path / "a", b"A", model_id="A"))
    a2 = load_artifact(_make(tmp_path / "a2", b"A2", model_id="A"))
    b = load_artifact(_make(tmp_path / "b", b"B", model_id="B"))
    assert check_same_model(a, a2) == "A"
    with pytest.raises(ArtifactError, match="different models"):
        check_same_model(a, b)


def test_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="model file not found"):
        load_artifact(tmp_path / "nope.onnx")
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="sidecar lone.json not found"):
        load_artifact(lone)
    path = _make(tmp_path / "m", b"m")
    side = sidecar_path(path)
    side.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(path)
    good = _make(tmp_path / "g", b"g")
    data = json.loads(sidecar_path(good).read_text())
    for key, value, message in [
        ("format", "other/9", "unknown sidecar format"),
        ("kind", "weird", "unknown artifact kind"),
        ("model_config", {"num_actions": 3, "bogus": 1}, "invalid sidecar contents"),
        ("inputs", [{"name": "x", "shape": [1], "dtype": "notadtype"}], "invalid sidecar"),
    ]:
        sidecar_path(good).write_text(json.dumps({**data, key: value}))
        with pytest.raises(ArtifactError, match=message):
            load_artifact(good)
    sidecar_path(good).write_text(json.dumps({k: v for k, v in data.items() if k != "sha256"}))
    with pytest.raises(ArtifactError, match="lacks the required key 'sha256'"):
        load_artifact(good)
    sidecar_path(good).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="is a 'step' artifact, expected 'sequence'"):
        load_artifact(good, kind="sequence")
