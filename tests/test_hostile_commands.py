"""The ``reclnet`` commands on bad arguments and hostile files: one line, non-zero exit, no traceback.

Argument errors exit with status 2 and one line on stderr naming the problem. A
missing, corrupt or hostile file ends the command with one line naming the file and
a non-zero status. Most cases call ``reclnet.cli.main(argv)`` in process; two run the
real command in a child process to check what a user sees.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reclnet import cli

torch = pytest.importorskip("torch")
from reclnet_test_helpers import tiny_model  # noqa: E402

from reclnet.train.checkpoint import save_checkpoint  # noqa: E402


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``reclnet ARGV`` in process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse exits; the console script would too
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> None:
    """stderr is exactly one line holding every needle, and no traceback."""
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, err)


# ------------------------------------------------------------------ argument errors
ARGUMENT_ERRORS = [
    (["train", "--out", "x"], "the following arguments are required: --data"),
    (["train", "--data", "d.h5", "--out", "x", "stray"], "expected --key=value, got 'stray'"),
    (
        ["train", "--data", "d.h5", "--out", "x", "--memory_size=abc"],
        "must be an integer, got 'abc'",
    ),
    (["train", "--data", "d.h5", "--out", "x", "--memory_size=0"], "memory_size must be >= 1"),
    (["train", "--data", "d.h5", "--out", "x", "--dropout=0.5"], "unknown training option(s)"),
    (["synth", "--out", "x.h5", "--videos", "0"], "argument --videos: must be >= 1, got 0"),
    (["synth", "--out", "x.h5", "--videos", "many"], "argument --videos: expected an integer"),
    (["synth", "--out", "x.h5", "--feature-size", "-3"], "argument --feature-size: must be >= 1"),
    (["synth", "--out", "x.h5", "--kind", "imagenet"], "argument --kind: invalid choice"),
    (["synth", "--out", "x.h5", "--max-test", "-1"], "argument --max-test: must be >= 0"),
    (["export", "ckpt.pt"], "the following arguments are required: --out"),
    (["export", "ckpt.pt", "--out", "o", "--opset", "zero"], "argument --opset"),
    (["export", "ckpt.pt", "--out", "o", "--int8-variant", "fp4"], "argument --int8-variant"),
    (["export", "ckpt.pt", "--out", "o", "--flow-preset", "slow"], "argument --flow-preset"),
    (["build-engine", "m.onnx", "--fp16", "--int8"], "not allowed with argument --fp16"),
    (["build-engine", "m.onnx", "--workspace-mb", "0"], "argument --workspace-mb: must be >= 1"),
    (["build-engine"], "the following arguments are required: onnx"),
    (["eval", "--detections", "d.jsonl"], "the following arguments are required: --gt"),
    (["eval", "--gt", "g", "--detections", "d", "--thresholds", "nan"], "must be a finite number"),
    (["eval", "--gt", "g", "--detections", "d", "--preset", "x"], "argument --preset: invalid"),
    (["eval", "--gt", "g", "--detections", "d", "--plot-threshold", "inf"], "--plot-threshold"),
    (["stream", "video.mp4"], "the following arguments are required: --model"),
    (["bench", "--only"], "argument --only: expected at least one argument"),
    (
        ["demo", "--video-frames", "many"],
        "argument --video-frames: expected an integer, got 'many'",
    ),
]


@pytest.mark.parametrize(
    ("argv", "message"), ARGUMENT_ERRORS, ids=[" ".join(a) for a, _ in ARGUMENT_ERRORS]
)
def test_argument_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert_one_line(err, f"reclnet {argv[0]}: error:", message)


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "unknown command 'frobnicate'" in err


# ------------------------------------------------------------------ bad files
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", tiny_model())


def _forged_checkpoint(good: Path, dst: Path, edit: Any) -> Path:
    payload = torch.load(good, weights_only=True)
    edit(payload)
    torch.save(payload, dst)
    return dst


def _nan_weight(payload: dict[str, Any]) -> None:
    name = sorted(payload["model"])[3]
    payload["model"][name] = payload["model"][name].clone()
    payload["model"][name].view(-1)[0] = math.nan


def _inf_weight(payload: dict[str, Any]) -> None:
    name = sorted(payload["model"])[-1]
    payload["model"][name] = torch.full_like(payload["model"][name], math.inf)


BAD_CHECKPOINTS = [
    ("nan weight", _nan_weight, r"holds NaN or infinite values"),
    ("inf weight", _inf_weight, r"holds NaN or infinite values"),
    (
        "num_actions string",
        lambda p: p["model_config"].__setitem__("num_actions", "4"),
        r"model_config.num_actions must be an integer, got '4'",
    ),
    (
        "huge memory",
        lambda p: p["model_config"].__setitem__("memory_size", 2**40),
        r"model_config.memory_size must be >= 1 and <= 1048576",
    ),
    ("not a reclnet file", lambda p: p.__setitem__("format", "other"), "not a reclnet-checkpoint"),
    ("no weights", lambda p: p.pop("model"), "missing 'model'"),
    (
        "weights of another model",
        lambda p: p["model_config"].__setitem__("memory_size", 9),
        "weights do not fit the config",
    ),
    (
        "weights not tensors",
        lambda p: p.__setitem__("model", {"w": [1.0, 2.0]}),
        "'model' is not a state dict of tensors",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"),
    [(e, m) for _, e, m in BAD_CHECKPOINTS],
    ids=[n for n, _, _ in BAD_CHECKPOINTS],
)
def test_export_refuses_a_bad_checkpoint(
    checkpoint: Path, tmp_path: Path, edit: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _forged_checkpoint(checkpoint, tmp_path / "bad.pt", edit)
    code, out, err = run(["export", str(bad), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and out == ""
    assert_one_line(err, "reclnet export:", str(bad), message)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"PK\x03\x04 not a zip"], ids=repr)
def test_export_refuses_an_unreadable_checkpoint(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    code, _, err = run(["export", str(bad), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert_one_line(err, "reclnet export:", str(bad), "cannot be read")
    code, _, err = run(["export", str(tmp_path / "missing.pt"), "--out", "o"], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "missing.pt"), "no such file")


def test_export_argument_checks_that_need_the_model(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = run(["export", str(checkpoint), "--out", str(out), "--opset", "5"], capsys)
    assert code == 2
    assert_one_line(err, "argument --opset: must be in [17,")
    code, _, err = run(
        ["export", str(checkpoint), "--out", str(out), "--features", "depth"], capsys
    )
    assert code == 2
    assert_one_line(err, "the model has no modality ['depth']")
    assert not out.exists()


def test_export_into_a_file_names_the_path(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run(["export", str(checkpoint), "--out", str(blocker / "sub")], capsys)
    assert code == 1
    assert_one_line(err, "reclnet export:", str(blocker))
    assert blocker.read_text() == "not a folder"


def test_export_step_refuses_nan_weights(tmp_path: Path) -> None:
    from reclnet.export.onnx_export import export_step

    model = tiny_model()
    name, param = next(iter(model.named_parameters()))
    with torch.no_grad():
        param.view(-1)[0] = math.inf
    with pytest.raises(ValueError, match=rf"refusing to export: parameter '{name}'"):
        export_step(model, tmp_path / "step.onnx")
    assert not (tmp_path / "step.onnx").exists()


def test_build_engine_refuses_a_hostile_sidecar(
    exported: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, good = exported
    onnx = tmp_path / "step.onnx"
    onnx.write_bytes(good.read_bytes())
    data = json.loads(good.with_suffix(".json").read_text())
    data["model_config"]["num_actions"] = "4"
    onnx.with_suffix(".json").write_text(json.dumps(data))
    code, _, err = run(["build-engine", str(onnx)], capsys)
    assert code == 2
    assert_one_line(err, "reclnet build-engine:", str(onnx.with_suffix(".json")), "num_actions")
    code, _, err = run(["build-engine", str(tmp_path / "none.onnx")], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "none.onnx"), "model file not found")


def _tube_line(label: int = 0, score: float | None = 0.5) -> str:
    obj: dict[str, Any] = {"video": "v", "label": label, "tube": [[1, 0, 0, 4, 4], [2, 0, 0, 4, 4]]}
    if score is not None:
        obj["score"] = score
    return json.dumps(obj)


@pytest.mark.parametrize(
    ("detections", "message"),
    [
        ('{"video": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "JSON nests 100001 levels deep"),
        ("[" * 5_000_000 + "\n", "JSON nests 5000000 levels deep"),
        (_tube_line() + "\n" + '{"video": "v", "label": 0, "score": NaN', "file truncated?"),
        (_tube_line(score=None) + "\n", "detection without a score"),
        ("\xff\n", "invalid JSON"),
        ('{"video": "v", "label": 0, "score": 1' + "0" * 5000 + ', "tube": [[1, 0, 0, 4, 4]]}\n',
         "invalid JSON"),
    ],
    ids=["deep", "very deep", "truncated", "no score", "garbage", "long number"],
)  # fmt: skip
def test_eval_refuses_hostile_detections(
    tmp_path: Path, detections: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = tmp_path / "gt.jsonl"
    gt.write_text(_tube_line(score=None) + "\n")
    det = tmp_path / "det.jsonl"
    det.write_text(detections)
    code, out, err = run(["eval", "--gt", str(gt), "--detections", str(det)], capsys)
    assert code == 2 and out == ""
    assert_one_line(err, "reclnet eval:", str(det), message)


def test_eval_output_into_a_missing_folder_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = tmp_path / "gt.jsonl"
    gt.write_text(_tube_line(score=None) + "\n")
    det = tmp_path / "det.jsonl"
    det.write_text(_tube_line() + "\n")
    target = tmp_path / "missing" / "results.json"
    code, _, err = run(
        ["eval", "--gt", str(gt), "--detections", str(det), "--json", str(target)], capsys
    )
    assert code == 1
    assert_one_line(err, "reclnet eval: error:", str(target))


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["train", "--data", "{tmp}/missing.h5", "--out", "{tmp}/run"], ["missing.h5"]),
        (["train", "--data", "{tmp}/junk.h5", "--out", "{tmp}/run"], ["junk.h5", "HDF5"]),
        (["synth", "--out", "{tmp}/junk.h5/x.h5", "--videos", "2"], ["junk.h5"]),
        (["bench", "--from-json", "{tmp}/junk.h5"], ["junk.h5"]),
        (["demo", "--out", "{tmp}/junk.h5", "--quick", "--no-video"], ["junk.h5"]),
    ],
    ids=["train missing data", "train junk data", "synth under a file", "bench junk", "demo"],
)
def test_bad_files_end_with_one_line(
    tmp_path: Path, argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n junk")
    code, _, err = run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code != 0
    assert_one_line(err, f"reclnet {argv[0]}", *needles)


# ------------------------------------------------------------------ as a user sees it
@pytest.mark.parametrize(
    ("argv", "status", "needle"),
    [
        (["synth", "--out", "x.h5", "--num-actions", "-1"], 2, "--num-actions: must be >= 1"),
        (["export", "{tmp}/nope.pt", "--out", "{tmp}/o"], 2, "nope.pt: no such file"),
    ],
    ids=["argument", "file"],
)
def test_the_console_command_prints_one_line(
    tmp_path: Path, argv: list[str], status: int, needle: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reclnet.cli", *(a.format(tmp=tmp_path) for a in argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == status and proc.stdout == ""
    assert_one_line(proc.stderr, needle)
