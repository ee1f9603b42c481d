"""Forged and broken exported models: every one fails at load with one error naming the problem.

Each case starts from a copy of the tiny exported ``step.onnx`` (tests/conftest.py),
damages its sidecar or its model file, and loads it. A case that only damages the
sidecar re-signs nothing, so the sha256 check still holds; a case that replaces the
model's bytes re-signs the sidecar (sha256, size_bytes), so that only the loaders' own
checks stand between the file and a failure at the first frame. Every case must end in
:class:`ArtifactError` (from ``load_artifact``) or :class:`BackendError` (from the ONNX
Runtime backend, which also wraps every ``ArtifactError``), with a message naming the
problem, and must leave the model folder exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reclnet.config import MAX_MODEL_SIZE
from reclnet.jsonsafe import JSONLimitError, json_depth, loads_bounded
from reclnet.runtime.artifacts import ArtifactError, load_artifact

pytest.importorskip("onnxruntime")
from reclnet.runtime.backends import BackendError, load_backend  # noqa: E402

Sidecar = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One hostile artifact.

    ``sidecar`` edits the parsed sidecar in place; ``text`` replaces the sidecar file's
    text (given the good one); ``model`` replaces the model file's bytes (given the good
    ones; the sidecar is then re-signed unless ``resign`` is False). ``stage`` says who
    must refuse it: ``"artifact"`` (load_artifact, and the backend wrapping it) or
    ``"backend"`` (only the opened session can tell). ``via`` loads the model file or
    its ``.json`` sidecar.
    """

    name: str
    match: str
    sidecar: Callable[[Sidecar], None] | None = None
    text: Callable[[str], str | bytes] | None = None
    model: Callable[[bytes], bytes] | None = None
    resign: bool = True
    stage: str = "artifact"
    via: str = "model"
    kind: str | None = "step"


def _set(path: str, value: Any) -> Callable[[Sidecar], None]:
    """Edit ``a.b[2].c``-style ``path`` of the sidecar to ``value``."""
    keys = [int(k) if k.isdigit() else k for k in re.split(r"[.\[\]]+", path) if k]

    def edit(data: Sidecar) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


def _drop(path: str) -> Callable[[Sidecar], None]:
    keys = path.split(".")

    def edit(data: Sidecar) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return edit


def _both(*edits: Callable[[Sidecar], None]) -> Callable[[Sidecar], None]:
    def edit(data: Sidecar) -> None:
        for e in edits:
            e(data)

    return edit


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _replace_value(key: str, raw: str) -> Callable[[str], str]:
    """Sidecar text with the value of top-level ``key`` replaced by raw JSON text."""

    def edit(text: str) -> str:
        data = json.loads(text)
        data[key] = "@@RAW@@"
        return json.dumps(data).replace('"@@RAW@@"', raw)

    return edit


def _flip_sha(data: Sidecar) -> None:
    sha = data["sha256"]
    data["sha256"] = ("0" if sha[0] != "0" else "1") + sha[1:]


def _widen_rgb(data: Sidecar) -> None:
    # A self-consistent sidecar (config and declared inputs agree) for a graph it does
    # not describe: only the opened session can tell.
    data["model_config"]["modalities"]["rgb"] = 13
    data["preprocessing"]["modalities"]["rgb"] = 13
    data["inputs"][0]["shape"] = ["N", 13]


def _more_memory(data: Sidecar) -> None:
    data["model_config"]["memory_size"] = 9  # state 2 modalities x 2 layers x 9 = 36
    data["inputs"][2]["shape"] = ["N", 36]
    data["outputs"][1]["shape"] = ["N", 36]


CASES = [
    # --- model_config: exact types and ranges
    Case("num_actions string", r"model_config\.num_actions must be an integer, got '5'",
         _set("model_config.num_actions", "5")),
    Case("num_actions bool", r"model_config\.num_actions must be an integer, got True",
         _set("model_config.num_actions", True)),
    Case("num_actions float", r"model_config\.num_actions must be an integer, got 4\.0",
         _set("model_config.num_actions", 4.0)),
    Case("num_actions zero", r"model_config\.num_actions must be >= 1 and <= \d+, got 0",
         _set("model_config.num_actions", 0)),
    Case("num_actions huge", r"model_config\.num_actions must be >= 1 and <= \d+",
         _set("model_config.num_actions", 2**40)),
    Case("modality size string", r"model_config\.modalities\['rgb'\] must be an integer",
         _set("model_config.modalities.rgb", "12")),
    Case("modalities list", r"model_config\.modalities must be a dict",
         _set("model_config.modalities", [["rgb", 12]])),
    Case("modalities empty", r"model_config\.modalities must name 1 to",
         _set("model_config.modalities", {})),
    Case("modality named state", r"bad modality name 'state'",
         _set("model_config.modalities", {"state": 12})),
    Case("modality name with a slash", r"bad modality name '\.\./x'",
         _set("model_config.modalities", {"../x": 12})),
    Case("config key missing", r"model_config: missing key\(s\) \['memory_size'\]",
         _drop("model_config.memory_size")),
    Case("config key unknown", r"model_config: unknown key\(s\) \['dropout'\]",
         _set("model_config.dropout", 0.5)),
    Case("cell unknown", r"cell must be one of", _set("model_config.cell", "transformer")),
    Case("cell not a string", r"model_config\.cell must be a string",
         _set("model_config.cell", ["gru"])),
    Case("state too large", r"state size \d+ .* exceeds",
         _set("model_config.memory_size", MAX_MODEL_SIZE)),
    Case("model_config not an object", r"model_config must be an object or null",
         _set("model_config", "gru")),
    Case("step without model_config", r"a 'step' artifact needs a model_config",
         _set("model_config", None)),
    # --- postprocess: PostprocessConfig's ranges, named with the file
    Case("window float", r"postprocess\.window must be an integer, got 1000000000\.0",
         _set("postprocess.window", 1e9)),
    Case("window huge", r"postprocess\.window must be >= 1 and <= 65536, got 1000000000",
         _set("postprocess.window", 10**9)),
    Case("top_k huge", r"postprocess\.top_k must be >= 1 and <= 65536", _set("postprocess.top_k", 10**7)),
    Case("nms_iou NaN", r"not valid JSON: NaN is not a JSON value",
         text=lambda t: t.replace('"nms_iou": 0.2', '"nms_iou": NaN')),
    Case("threshold Infinity", r"not valid JSON: Infinity is not a JSON value",
         text=lambda t: t.replace('"threshold": 0.3', '"threshold": Infinity')),
    Case("threshold above 1", r"postprocess\.threshold must be a finite number in \[0, 1\]",
         _set("postprocess.threshold", 1.5)),
    Case("lookahead past the window", r"postprocess\.lookahead must be >= 0 and <= 3",
         _set("postprocess.lookahead", 99)),
    Case("postprocess string", r"postprocess must be an object, got 'fast'",
         _set("postprocess", "fast")),
    Case("postprocess unknown key", r"postprocess: unknown keys \['speed'\]",
         _set("postprocess.speed", 2)),
    # --- top-level keys, format, identity
    Case("unknown top-level key", r"unknown key\(s\) \['evil'\]", _set("evil", {"x": 1})),
    Case("sha256 missing", r"lacks the required key 'sha256'", _drop("sha256")),
    Case("inputs missing", r"lacks the required key 'inputs'", _drop("inputs")),
    Case("sha256 mismatch", r"step\.onnx: sha256 mismatch", _flip_sha),
    Case("sha256 not hex", r"sha256 must be 64 lowercase hex digits", _set("sha256", "zz" * 32)),
    Case("sha256 number", r"sha256 must be a string, got 12", _set("sha256", 12)),
    Case("artifact escapes the folder", r"artifact '\.\./step\.onnx' is not a plain file name",
         _set("artifact", "../step.onnx"), via="json"),
    Case("artifact absolute", r"artifact '/etc/passwd' is not a plain file name",
         _set("artifact", "/etc/passwd"), via="json"),
    Case("artifact names another file", r"describes 'other\.onnx', not 'step\.onnx'",
         _set("artifact", "other.onnx")),
    Case("artifact not a string", r"does not name its artifact file", _set("artifact", 7),
         via="json"),
    Case("format unknown", r"unknown sidecar format 'reclnet-artifact/2'",
         _set("format", "reclnet-artifact/2")),
    Case("kind unknown", r"unknown artifact kind 'sequence'", _set("kind", "sequence")),
    Case("kind unexpected", r"is a 'step' artifact, expected 'features'", kind="features"),
    Case("artifact_format unknown", r"unknown artifact_format 'pickle'",
         _set("artifact_format", "pickle")),
    Case("tensorrt without its object", r"a tensorrt artifact needs the tensorrt object",
         _set("artifact_format", "tensorrt")),
    Case("tensorrt max_tracks huge", r"tensorrt\.max_tracks must be in \[1, \d+\], got 1000000000",
         _both(_set("artifact_format", "tensorrt"), _set("tensorrt", {"max_tracks": 10**9}))),
    Case("size_bytes wrong", r"size_bytes 1, but step\.onnx has \d+ bytes", _set("size_bytes", 1)),
    Case("size_bytes string", r"size_bytes must be an integer, got 'big'",
         _set("size_bytes", "big")),
    Case("class_names not a list", r"class_names must be an array", _set("class_names", "a,b")),
    # --- declared graph against the configuration
    Case("input width off", r"graph does not match model_config: input 'rgb' has shape "
         r"\['N', 13\], model_config\.modalities\['rgb'\] is \[N, 12\]",
         _set("inputs[0].shape", ["N", 13])),
    Case("input missing", r"inputs \['rgb', 'state'\], the model_config needs",
         lambda d: d["inputs"].pop(1)),
    Case("state width off", r"input 'state' has shape \['N', 31\]",
         _set("inputs[2].shape", ["N", 31])),
    Case("probs width off", r"output 'probs' has shape \['N', 4\], num_actions \+ 1",
         _set("outputs[0].shape", ["N", 4])),
    Case("state_out width off", r"output 'state_out' has shape",
         _set("outputs[1].shape", ["N", 33])),
    Case("input float64", r"inputs\[0\]\.dtype must be one of", _set("inputs[0].dtype", "float64")),
    Case("input object dtype", r"inputs\[0\]\.dtype must be one of", _set("inputs[0].dtype", "O")),
    Case("input float16", r"input 'rgb' is float16, model_config", _set("inputs[0].dtype", "float16")),
    Case("tensor extra key", r"inputs\[1\] must have exactly the keys",
         _set("inputs[1].layout", "NC")),
    Case("rank 9", r"inputs\[0\]\.shape has rank 9", _set("inputs[0].shape", [1] * 9)),
    Case("negative dim", r"inputs\[0\]\.shape\[1\] must be in \[0, 2\*\*31\)",
         _set("inputs[0].shape", ["N", -1])),
    Case("bool dim", r"inputs\[0\]\.shape\[1\] must be an integer or a string, got True",
         _set("inputs[0].shape", ["N", True])),
    Case("duplicate input", r"inputs: duplicate name\(s\) \['rgb'\]",
         _set("inputs[1].name", "rgb")),
    Case("inputs an object", r"inputs must be an array", _set("inputs", {"rgb": ["N", 12]})),
    Case("unknown output", r"outputs \['probs', 'state_out', 'logits'\]",
         lambda d: d["outputs"].append({"name": "logits", "shape": ["N", 5], "dtype": "float32"})),
    # --- the JSON itself: nesting, size, encoding
    Case("deep nesting in a value", r"not valid JSON: JSON nests 100002 levels deep \(at most 16\)",
         text=_replace_value("preprocessing", _nest(100_001))),
    Case("deep nesting, whole document", r"JSON nests 100000 levels deep",
         text=lambda t: _nest(100_000)),
    Case("deep objects", r"JSON nests 50001 levels deep",
         text=_replace_value("variant", '{"a":' * 50_000 + "1" + "}" * 50_000)),
    Case("huge sidecar", r"sidecar has \d+ bytes \(at most 1048576\)",
         text=_replace_value("created_utc", '"' + "x" * (2 << 20) + '"')),
    Case("huge integer", r"not valid JSON: invalid JSON", text=_replace_value("seed", "9" * 5000)),
    Case("not JSON", r"not valid JSON: invalid JSON: Expecting value",
         text=lambda t: "\x00\x01binary" + t),
    Case("not UTF-8", r"not valid JSON: not UTF-8 text", text=lambda t: b"\xff\xfe" + t.encode()),
    Case("JSON array", r"sidecar must be a JSON object, got list", text=lambda t: "[" + t + "]"),
    Case("truncated sidecar", r"not valid JSON: invalid JSON", text=lambda t: t[: len(t) // 2]),
    # --- the model file (re-signed: only the backend can tell)
    Case("truncated ONNX", r"onnxruntime backend: cannot load", model=lambda b: b[: len(b) // 2],
         stage="backend"),
    Case("not ONNX bytes", r"onnxruntime backend: cannot load",
         model=lambda b: b"this is not a protobuf " * 50, stage="backend"),
    Case("empty model file", r"onnxruntime backend: cannot load", model=lambda b: b"",
         stage="backend"),
    Case("truncated, not re-signed", r"step\.onnx: sha256 mismatch",
         model=lambda b: b[:-10], resign=False),
    Case("sidecar wider than the graph", r"does not match its sidecar step\.json: input 'rgb' "
         r"has shape \['N', 12\] in the graph, \['N', 13\] in the sidecar",
         _widen_rgb, stage="backend"),
    Case("sidecar with another state size", r"does not match its sidecar step\.json: input "
         r"'state' has shape", _more_memory, stage="backend"),
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _forge(src: Path, folder: Path, case: Case) -> Path:
    folder.mkdir()
    for p in src.parent.iterdir():
        shutil.copy(p, folder / p.name)
    model, side = folder / "step.onnx", folder / "step.json"
    data = json.loads(side.read_text())
    if case.model is not None:
        content = case.model(model.read_bytes())
        model.write_bytes(content)
        if case.resign:
            data["sha256"] = hashlib.sha256(content).hexdigest()
            data["size_bytes"] = len(content)
    if case.sidecar is not None:
        case.sidecar(data)
    text: str | bytes = json.dumps(data, indent=2)
    if case.text is not None:
        text = case.text(text)
    if isinstance(text, bytes):
        side.write_bytes(text)
    else:
        side.write_text(text)
    return side if case.via == "json" else model


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_artifact_is_refused_at_load(
    exported: tuple[Any, Path], tmp_path: Path, case: Case
) -> None:
    _, good = exported
    path = _forge(good, tmp_path / "model", case)
    before = _snapshot(path.parent)
    if case.stage == "artifact":
        with pytest.raises(ArtifactError, match=case.match) as info:
            load_artifact(path, kind=case.kind)
        assert str(path.parent) in str(info.value)  # names the file
        if case.kind == "step":
            # the backend refuses it the same way, wrapped in its own error type
            with pytest.raises(BackendError, match=r"onnxruntime backend: .*" + case.match):
                load_backend("onnxruntime", model=path)
    else:
        load_artifact(path, kind="step")  # the sidecar alone looks right
        with pytest.raises(BackendError, match=case.match) as info:
            load_backend("onnxruntime", model=path)
        assert "step.onnx" in str(info.value)
    assert _snapshot(path.parent) == before  # nothing written, nothing changed


def test_the_untouched_copy_loads_and_runs(exported: tuple[Any, Path], tmp_path: Path) -> None:
    """The forging itself changes nothing: an unedited copy loads and steps."""
    import numpy as np

    _, good = exported
    path = _forge(good, tmp_path / "model", Case("none", ""))
    art = load_artifact(path, kind="step")
    assert load_artifact(path.with_suffix(".json")).path == path
    with load_backend("onnxruntime", model=path) as runner:
        n, cfg = 3, art.config
        feats = {k: np.zeros((n, d), np.float32) for k, d in cfg.modalities.items()}
        probs, _ = runner.step(feats, np.zeros((n, cfg.state_size), np.float32))
    assert probs.shape == (n, cfg.num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- reclnet.jsonsafe


def _slow_depth(text: str) -> int:
    """Character-by-character twin of json_depth (strings skipped, escapes honoured)."""
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


@pytest.mark.parametrize(
    "text",
    [
        "1",
        '"[[["',
        "[]",
        '{"a": [1, {"b": "]]]"}]}',
        r'["\"[", ["\\"], [[{}]]]',
        '[{"k": "\\\\\\"{{{"}, [[[["x"]]]]]',
        _nest(40),
        '{"a":' * 30 + "0" + "}" * 30,
    ],
)
def test_json_depth_matches_the_character_scan(text: str) -> None:
    assert json_depth(text) == _slow_depth(text)
    # and json.loads agrees the text nests that deep where it parses
    assert json_depth(text) == _slow_depth(json.dumps(json.loads(text)))


def test_loads_bounded_limits() -> None:
    assert loads_bounded('{"a": [1, 2]}') == {"a": [1, 2]}
    assert loads_bounded(b'[["x"]]', max_depth=2) == [["x"]]
    with pytest.raises(JSONLimitError, match="nests 3 levels deep"):
        loads_bounded("[[[1]]]", max_depth=2)
    with pytest.raises(JSONLimitError, match="at most 4"):
        loads_bounded("[1, 2]", max_bytes=4)
    with pytest.raises(JSONLimitError, match="NaN is not a JSON value"):
        loads_bounded("[NaN]")
    assert loads_bounded("[NaN]", allow_nan=True)[0] != loads_bounded("[NaN]", allow_nan=True)[0]
    with pytest.raises(JSONLimitError, match=r"line 2, column 1"):
        loads_bounded("[1,\n]")
    with pytest.raises(JSONLimitError, match="nests 100000 levels"):
        loads_bounded(_nest(100_000))
