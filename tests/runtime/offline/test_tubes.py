"""Tube dataclass and the JSON Lines format: round trip and errors naming file, line, problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.offline.tubes import (
    Tube,
    TubeFormatError,
    read_tubes,
    tube_to_dict,
    write_tubes,
)


def make_tube(video="a/v1", label=2, first=5, n=4, score=0.5) -> Tube:
    boxes = np.array([[10 + i, 20, 50.5 + i, 80] for i in range(n)], dtype=np.float32)
    return Tube(video, label, np.arange(first, first + n), boxes, score)


def line(video="a/v1", label=1, score=0.25, tube=None, **extra) -> str:
    obj = {"video": video, "label": label, "score": score}
    obj["tube"] = tube if tube is not None else [[3, 0, 0, 10, 10], [4, 1, 1, 11, 11]]
    obj.update(extra)
    return json.dumps(obj)


def test_round_trip(tmp_path: Path) -> None:
    tubes = [make_tube(), make_tube("b", 0, 0, 1, 0.75), make_tube("c", 1, 9, 3, None)]
    kf = Tube("d", 3, np.arange(2, 8), np.zeros((6, 4)), None, keyframes=np.array([6, 3]))
    path = tmp_path / "t.jsonl"
    assert write_tubes(path, [*tubes, kf]) == 4
    back = read_tubes(path)
    for a, b in zip([*tubes, kf], back, strict=True):
        assert (a.video, a.label, a.score) == (b.video, b.label, b.score)
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert b.frames.dtype == np.int64 and b.boxes.dtype == np.float32
    np.testing.assert_array_equal(back[-1].keyframes, [3, 6])
    assert tube_to_dict(tubes[0])["tube"][0] == [5, 10.0, 20.0, 50.5, 80.0]
    assert "score" not in tube_to_dict(tubes[2])


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(line() + "\n\n" + line(score=0.5) + "\n")
    assert [t.score for t in read_tubes(path, num_classes=2, require_score=True)] == [0.25, 0.5]


@pytest.mark.parametrize(
    ("lines", "lineno", "problem"),
    [
        ([line(), line(tube=[[3, 0, 0, 1, 1], [5, 0, 0, 1, 1]])], 2, "frames not consecutive"),
        ([line(label=7)], 1, r"unknown label 7 \(expected 0..4\)"),
        ([line(), line(), line().replace("0.25", "NaN")], 3, "score must be finite"),
        ([line(label=-1)], 1, "unknown label -1"),
        ([line(label="1")], 1, "label must be an integer"),
        ([line(tube=[])], 1, "tube must be a non-empty list"),
        ([line(tube=[[1, 0, 0, 1]])], 1, "tube row 0 must be 5 numbers"),
        ([line(tube=[[1.5, 0, 0, 1, 1]])], 1, "frame must be an integer"),
        ([line(tube=[[1, 5, 0, 1, 1]])], 1, "x2 < x1"),
        ([line(tube=[[1, 0, 0, 1e400, 1]])], 1, "non-finite box"),
        ([json.dumps({"video": "v", "label": 0})], 1, "missing key"),
        ([line(color="red")], 1, "unknown key"),
        ([line(video="")], 1, "video must be a non-empty string"),
        (["[1, 2]"], 1, "expected a JSON object"),
        ([line(), "{not json"], 2, "invalid JSON"),
    ],
)
def test_bad_lines_name_file_line_and_problem(
    tmp_path: Path, lines: list[str], lineno: int, problem: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TubeFormatError, match=rf"^{path}:{lineno}: .*{problem}"):
        read_tubes(path, num_classes=5)


def test_empty_and_truncated_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TubeFormatError, match=rf"^{empty}:1: empty file"):
        read_tubes(empty)
    full = line() + "\n" + line(score=0.5) + "\n"
    cut = tmp_path / "cut.jsonl"
    cut.write_text(full[: len(full) - 9])  # the second line loses its end
    with pytest.raises(TubeFormatError, match=rf"^{cut}:2: invalid JSON \(file truncated\?\)"):
        read_tubes(cut)
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(TubeFormatError, match=rf"^{missing}: cannot read"):
        read_tubes(missing)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(line().encode() + b"\n\xff\xfe\n")
    with pytest.raises(TubeFormatError, match=rf"^{binary}:2: not UTF-8"):
        read_tubes(binary)


def test_score_presence_rules(tmp_path: Path) -> None:
    path = tmp_path / "gt.jsonl"
    path.write_text(line(score=None) + "\n")
    assert read_tubes(path, require_score=False)[0].score is None
    with pytest.raises(TubeFormatError, match=rf"^{path}:1: detection without a score"):
        read_tubes(path, require_score=True)
    path.write_text(line() + "\n")
    with pytest.raises(TubeFormatError, match=rf"^{path}:1: ground-truth tube must not"):
        read_tubes(path, require_score=False)


def test_tube_validation() -> None:
    with pytest.raises(TubeFormatError, match="frame 3 is followed by 5"):
        Tube("v", 0, np.array([3, 5]), np.zeros((2, 4)))
    with pytest.raises(TubeFormatError, match=r"boxes must have shape \(2, 4\)"):
        Tube("v", 0, np.array([3, 4]), np.zeros((3, 4)))
    with pytest.raises(TubeFormatError, match="score must be finite"):
        Tube("v", 0, np.array([3]), np.zeros((1, 4)), float("nan"))
    with pytest.raises(TubeFormatError, match="keyframes must be non-empty and within"):
        Tube("v", 0, np.array([3]), np.zeros((1, 4)), keyframes=np.array([9]))
    with pytest.raises(TubeFormatError, match="non-empty 1-D"):
        Tube("v", 0, np.array([], dtype=np.int64), np.zeros((0, 4)))
    t = Tube("v", np.int64(3), np.array([7.0, 8.0]), np.ones((2, 4), dtype=np.float64), 1)
    assert t.label == 3 and t.frames.dtype == np.int64 and t.boxes.dtype == np.float32
    assert t.score == 1.0 and isinstance(t.score, float) and len(t) == 2
