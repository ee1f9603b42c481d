"""Hostile ground-truth files: crafted pickles never run code, huge labels stay cheap.

Pickles are built at test time by objects whose ``__reduce__`` names the callable a
crafted file would (``os.system``, ``eval``, numpy's ``runstring``, ...). Each must be
refused with a message naming the problem, through the restricted unpickler itself and
through ``reclnet eval`` and ``reclnet synth``, and the marker file the payload would
create must not exist afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from reclnet.paths import data_dir
from reclnet.runtime.offline import safe_pickle
from reclnet.runtime.offline.cli import main as eval_main
from reclnet.runtime.offline.cli import present_classes
from reclnet.runtime.offline.datasets import DatasetError, load_ucf101_24
from reclnet.runtime.offline.safe_pickle import SafePickleError
from reclnet.runtime.offline.tubes import Tube, write_tubes
from reclnet.runtime.offline.video_ap import evaluate_video_ap

# numpy's own array / scalar rebuild functions (numpy.core or numpy._core by version)
_reconstruct = np.zeros(1).__reduce__()[0]
scalar = np.float64(0).__reduce__()[0]
REPO = Path(__file__).resolve().parents[3]
UCF = (data_dir() or Path("data")) / "ucf101-24" / "pyannot_with_class_names.pkl"


class Reduce:
    """Pickles as ``func(*args)`` (+ ``state`` applied by BUILD): what a crafted file holds."""

    def __init__(self, func, args, state=None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


def ucf_like(payload) -> dict:
    """A dict shaped like the UCF101-24 annotations with ``payload`` inside one video."""
    boxes = np.array([[1, 2, 3, 4]], dtype=np.uint16)
    ann = {"label": 0, "sf": 0, "ef": 1, "boxes": boxes, "extra": payload}
    return {
        "classes": ["A"],
        "trainvideos": ["A/v"],
        "db": {"A/v": {"numf": 1, "label": 0, "annotations": [ann]}},
    }


def code_payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """name -> (object whose unpickling would create ``marker``, expected refused global)."""
    from numpy.testing._private.utils import runstring

    create = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (Reduce(os.system, (f"touch '{marker}'",)), r"\w+\.system"),
        "builtins.eval": (Reduce(eval, (create,)), r"builtins\.eval"),
        "builtins.exec": (Reduce(exec, (create,)), r"builtins\.exec"),
        "numpy runstring": (
            Reduce(runstring, (create, {})),
            r"numpy\.testing\._private\.utils\.runstring",
        ),
        "numpy.load": (Reduce(np.load, (str(marker),)), r"numpy\.load"),
        "numpy.frombuffer": (Reduce(np.frombuffer, (b"\0" * 8,)), r"numpy\.\S*frombuffer"),
    }


def refused(data: bytes, pattern: str) -> None:
    with pytest.raises(SafePickleError, match=pattern):
        safe_pickle.loads(data)


@pytest.mark.parametrize(
    "name", ["os.system", "builtins.eval", "builtins.exec", "numpy runstring", "numpy.load"]
)
def test_code_in_a_pickle_is_refused_and_never_runs(name: str, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "executed"
    payload, global_name = code_payloads(marker)[name]
    data = pickle.dumps(ucf_like(payload), protocol=4)
    refused(data, rf"refused: global {global_name} is not allowed")
    path = tmp_path / "pyannot_with_class_names.pkl"
    path.write_bytes(data)
    (tmp_path / "testlist01.txt").write_text("A/v\n")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: cannot load .*refused"):
        load_ucf101_24(path)
    dets = tmp_path / "det.jsonl"
    write_tubes(dets, [Tube("A/v", 0, np.arange(1), np.ones((1, 4), np.float32), 0.5)])
    assert eval_main(["--gt", str(path), "--detections", str(dets)]) == 2
    err = capsys.readouterr().err
    assert f"reclnet eval: {path}: cannot load UCF101-24 annotations: refused: global" in err

    from reclnet.train.synthetic import main as synth_main

    out = tmp_path / "synth.h5"
    args = ["--out", str(out), "--kind", "ucf101-24", "--ucf-root", str(tmp_path)]
    assert synth_main(args) == 2
    assert f"reclnet synth: {path}: refused: global" in capsys.readouterr().err
    assert not out.exists()
    assert not marker.exists(), "the pickle's payload ran"


def test_numpy_callables_other_than_arrays_are_refused(tmp_path: Path) -> None:
    payload, global_name = code_payloads(tmp_path / "x")["numpy.frombuffer"]
    refused(pickle.dumps(payload, protocol=4), rf"global {global_name} is not allowed")
    # Each admitted numpy name only accepts what numpy itself writes.
    cases = {
        "object dtype": (Reduce(np.dtype, ("O8", False, True)), "'O8' is not a plain"),
        "void dtype": (Reduce(np.dtype, ("V8", False, True)), "'V8' is not a plain"),
        "structured dtype": (Reduce(np.dtype, ([("a", "O")],)), "is not a plain"),
        "object-flag state": (
            Reduce(np.dtype, ("i8", False, True), (3, "<", None, None, None, -1, -1, 1)),
            "does not describe a plain <i8 dtype",
        ),
        "field state": (
            Reduce(np.dtype, ("i8", False, True), (3, "<", None, ("a",), {}, -1, -1, 0)),
            "does not describe a plain",
        ),
        "reconstruct of another type": (
            Reduce(_reconstruct, (np.dtype, (0,), b"b")),
            r"_reconstruct called with other than",
        ),
        "ndarray called": (Reduce(np.ndarray, ((3,), "O")), "numpy.ndarray may not be called"),
        "short array data": (
            Reduce(
                _reconstruct,
                (np.ndarray, (0,), b"b"),
                (1, (10,), np.dtype("f8"), False, b"\0" * 8),
            ),
            "needs 80 bytes, the file holds 8",
        ),
        "array shape": (
            Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (-1,), np.dtype("u1"), False, b"")),
            "invalid array shape",
        ),
        "array of objects": (np.array([1, "x"], dtype=object), "'O8' is not a plain"),
        "scalar bytes": (Reduce(scalar, (np.dtype("f8"), b"\0")), "needs 8 bytes, got 1"),
        "scalar of objects": (Reduce(scalar, (np.dtype("O"), 5)), "'O8' is not a plain"),
        "state on a scalar": (
            Reduce(scalar, (np.dtype("f8"), b"\0" * 8), {"x": 1}),
            "state applied to a numpy scalar",
        ),
    }
    for name, (obj, message) in cases.items():
        with pytest.raises(SafePickleError, match=message):
            safe_pickle.loads(pickle.dumps({"db": [obj]}, protocol=4))
        assert name


def test_structure_bombs_and_broken_files_are_refused(tmp_path: Path) -> None:
    # A million nested lists: PROTO 4, EMPTY_LIST x N, APPEND x (N - 1), STOP.
    n = 1_000_000
    refused(b"\x80\x04" + b"]" * n + b"a" * (n - 1) + b".", "nested deeper than 64 levels")
    loop: list = []
    loop.append(loop)
    refused(pickle.dumps(loop, protocol=4), "recursive structure")
    good = pickle.dumps(ucf_like(None), protocol=4)
    for cut in (len(good) // 2, len(good) - 1, 1, 0):
        refused(good[:cut], "not a complete pickle")
    refused(b"not a pickle", "not a complete pickle|malformed pickle")
    path = tmp_path / "cut.pkl"
    path.write_bytes(good[:-5])
    with pytest.raises(SafePickleError, match=rf"^{re.escape(str(path))}: not a complete pickle"):
        safe_pickle.load(path)
    # The same nesting 64 deep is data, and so is sharing one list in two places.
    deep: list = []
    for _ in range(63):
        deep = [deep]
    assert safe_pickle.loads(pickle.dumps(deep, protocol=4)) == deep
    shared = [1, 2]
    out = safe_pickle.loads(pickle.dumps({"a": shared, "b": shared}, protocol=4))
    assert out == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("protocol", [3, 4])
def test_plain_data_round_trips_exactly(protocol: int) -> None:
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 255, (7, 4)).astype(np.uint8),
        rng.integers(0, 60000, (3, 4)).astype(np.uint16),
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.asfortranarray(rng.random((3, 5))),
        rng.random(4).astype(np.float32),
        np.array([1 + 2j, 3j], dtype=np.complex128),
        np.array([True, False]),
        np.array(["ab", "cde"]),
        np.array([b"x", b"yz"]),
        np.zeros((0, 4), np.uint16),
        np.array(7, dtype=np.int64),
    ]
    scalars = [np.float64(2.5), np.int64(-3), np.str_("Basketball"), np.bool_(True), np.uint8(9)]
    obj = {
        "arrays": arrays,
        "scalars": scalars,
        "plain": (None, True, 1, 2**70, 1.5, "s", b"b", {1, 2}, frozenset({"x"})),
    }
    back = safe_pickle.loads(pickle.dumps(obj, protocol=protocol))
    assert back["plain"] == obj["plain"]
    for a, b in zip(arrays, back["arrays"], strict=True):
        assert type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape
        assert b.flags.writeable and b.flags.owndata
        np.testing.assert_array_equal(b, a)
    for a, b in zip(scalars, back["scalars"], strict=True):
        assert type(b) is type(a) and b == a


@pytest.mark.data
@pytest.mark.skipif(not UCF.exists(), reason=f"UCF101-24 annotations not found at {UCF}")
def test_real_ucf_file_loads_exactly_as_pickle_does() -> None:
    raw = UCF.read_bytes()
    # The reference twin: plain pickle on the trusted shared copy of the public file.
    expected = pickle.loads(raw)  # noqa: S301
    got = safe_pickle.loads(raw)

    def same(a, b, where: str) -> None:
        assert type(a) is type(b), where
        if isinstance(a, dict):
            assert list(a) == list(b), where
            for k in a:
                same(a[k], b[k], f"{where}[{k!r}]")
        elif isinstance(a, list | tuple):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{where}[{i}]")
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, where
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b and getattr(a, "dtype", None) == getattr(b, "dtype", None), where

    same(expected, got, "data")


def test_no_unrestricted_unpickling_in_the_package() -> None:
    # Every loader goes through safe_pickle; these are the ways to unpickle a user's file.
    patterns = re.compile(
        r"(?<!\w)_?pickle\.(?:loads?|Unpickler)\b|from\s+_?pickle\s+import|Unpickler\("
        r"|allow_pickle\s*=\s*True|weights_only\s*=\s*False|read_pickle\("
        r"|\b(?:dill|cloudpickle|joblib|shelve)\b|marshal\.loads?\b"
    )
    offenders = []
    for folder in ("reclnet", "train", "export", "runtime", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "runtime" / "offline" / "safe_pickle.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if patterns.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert offenders == []
    text = (REPO / "runtime" / "offline" / "safe_pickle.py").read_text()
    assert "pickle.load(" not in text and "pickle.loads(" not in text


# ------------------------------------------------------- labels bounded by the data


def line(label: int, video: str = "v", score: float | None = None) -> str:
    obj = {"video": video, "label": label, "tube": [[0, 0, 0, 10, 10], [1, 0, 0, 10, 10]]}
    if score is not None:
        obj["score"] = score
    return json.dumps(obj)


def test_huge_label_makes_one_class_not_a_million(tmp_path: Path, capsys) -> None:
    gt, det = tmp_path / "gt.jsonl", tmp_path / "det.jsonl"
    gt.write_text(line(1_000_000) + "\n" + line(3, "w") + "\n")
    det.write_text(line(1_000_000, score=0.9) + "\n" + line(3, "x", score=0.8) + "\n")
    out = tmp_path / "r.json"
    assert eval_main(["--gt", str(gt), "--detections", str(det), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert [c["name"] for c in res["classes"]] == ["3", "1000000"]
    assert [c["ap"]["0.5"] for c in res["classes"]] == [0.0, 100.0]
    assert res["mAP"]["0.5"] == 50.0
    assert "1000000" in table and len(table.splitlines()) < 10
    # detections still may not name a class above every ground-truth label
    det.write_text(line(1_000_001, score=0.9) + "\n")
    assert eval_main(["--gt", str(gt), "--detections", str(det)]) == 2
    assert f"{det}:1: unknown label 1000001" in capsys.readouterr().err


def test_present_classes_matches_the_full_label_range() -> None:
    rng = np.random.default_rng(5)

    def tube(video: str, label: int, score: float | None) -> Tube:
        first = int(rng.integers(0, 20))
        n = int(rng.integers(1, 15))
        xy = rng.uniform(0, 50, 2)
        box = np.r_[xy, xy + rng.uniform(5, 30, 2)].astype(np.float32)
        shift = rng.normal(0, 2, (n, 2))  # moves the box, keeps its size
        boxes = (box[None] + np.concatenate([shift, shift], axis=1)).astype(np.float32)
        return Tube(video, label, np.arange(first, first + n), boxes, score)

    labels = [0, 3, 7, 11]
    gt = [tube(f"v{i % 5}", labels[i % 3], None) for i in range(30)]  # 11: detections only
    # near copies of most ground truths (true positives at some thresholds) plus clutter
    dets = [
        Tube(g.video, g.label, g.frames, g.boxes + rng.normal(0, 3, 4).astype(np.float32), s)
        for g in gt
        if (s := float(rng.random())) > 0.2
    ]
    dets += [tube(f"v{i % 5}", labels[i % 4], float(rng.random())) for i in range(40)]
    full = evaluate_video_ap(gt, dets, num_classes=12, thresholds=(0.2, 0.5))
    cgt, cdets, names = present_classes(gt, dets)
    assert names == ["0", "3", "7", "11"]
    small = evaluate_video_ap(cgt, cdets, num_classes=4, thresholds=(0.2, 0.5), class_names=names)
    for t in (0.2, 0.5):
        np.testing.assert_array_equal(small.class_ap(t), full.class_ap(t)[labels])
        assert small.mAP(t) == full.mAP(t)
    np.testing.assert_array_equal(small.num_det, full.num_det[labels])
    assert np.isnan(small.class_ap(0.5)[3])  # a class with detections only has no AP
    assert np.all((full.class_ap(0.2)[labels[:3]] > 0.1) & (full.class_ap(0.2)[labels[:3]] < 1))
