"""Snapshot / restore of the OnlineScorer: a restored scorer (in another process) continues identically."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import reclnet_test_helpers  # see tests/conftest.py
from reclnet_test_helpers import CONFIG

from reclnet.config import RecLNetConfig
from reclnet.runtime import OnlineScorer
from reclnet.runtime.backends import load_backend
from reclnet.runtime.snapshot import SnapshotError

torch = pytest.importorskip("torch")
pytest.importorskip("reclnet.runtime.postproc._core", reason="the C core extension is not built")

HERE = Path(__file__).resolve().parent
SETTINGS = dict(window=7, lookahead=3, threshold=0.24, top_k=5, min_length=2, max_age=2)
# The shared helpers (tests/helpers.py): make_tracks / frame_inputs; a child process
# loads the same file by path.
HELPERS_PATH = HERE.parent / "helpers.py"


def _helpers():
    """The shared test helpers module (registered by tests/conftest.py)."""
    return reclnet_test_helpers


def _run(scorer: OnlineScorer, tracks, frames, helpers, flush: bool):
    probs, events = [], []
    for f in frames:
        ids, feats, boxes = helpers.frame_inputs(tracks, f, scorer.config.modalities)
        res = scorer.update(f, ids, feats, boxes)
        probs.append(res.probs)
        events += res.events
    if flush:
        events += scorer.flush()
    return probs, [_event_row(e) for e in events]


def _event_row(e) -> list:
    boxes = None if e.tube is None else e.tube.boxes.tolist()
    return [e.kind, e.track_id, e.label, e.first_frame, e.last_frame, e.num_samples, e.score, boxes]


CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import importlib.util
spec = importlib.util.spec_from_file_location("h", {helpers!r})
h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h)
from reclnet.runtime import OnlineScorer
from reclnet.runtime.backends import load_backend
tracks = h.make_tracks({seed})
frames = {frames!r}
with load_backend("onnxruntime", model={model!r}, threads=1) as runner:
    scorer = OnlineScorer.restore({snap!r}, backend=runner)
    probs, events = [], []
    for f in frames:
        ids, feats, boxes = h.frame_inputs(tracks, f, scorer.config.modalities)
        res = scorer.update(f, ids, feats, boxes)
        probs.append(res.probs.tolist())
        for e in res.events:
            events.append([e.kind, e.track_id, e.label, e.first_frame, e.last_frame, e.num_samples,
                           e.score, None if e.tube is None else e.tube.boxes.tolist()])
    for e in scorer.flush():
        events.append([e.kind, e.track_id, e.label, e.first_frame, e.last_frame, e.num_samples,
                       e.score, None if e.tube is None else e.tube.boxes.tolist()])
print(json.dumps({{"probs": probs, "events": events}}))
"""


@pytest.mark.parametrize("cut", [0.35, 0.6])
def test_restore_in_another_process_continues_identically(exported, tmp_path: Path, cut) -> None:
    _, model_path = exported
    helpers = _helpers()
    seed = 6
    tracks = helpers.make_tracks(seed)
    frames = sorted({int(f) for fr, _, _ in tracks.values() for f in fr})
    k = int(len(frames) * cut)
    with load_backend("onnxruntime", model=model_path, threads=1) as runner:
        whole_probs, whole_events = _run(
            OnlineScorer(runner, **SETTINGS), tracks, frames, helpers, flush=True
        )
        first = OnlineScorer(runner, **SETTINGS)
        p1, e1 = _run(first, tracks, frames[:k], helpers, flush=False)
        # The cut falls while segments are open and samples wait for their lookahead.
        assert first.pool.open_starts and first.pool.num_live >= 2
        snap = first.snapshot(tmp_path / "scorer.snap")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD.format(
                tests=str(HERE),
                helpers=str(HELPERS_PATH),
                seed=seed,
                frames=frames[k:],
                model=str(model_path),
                snap=str(snap),
            ),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    got_probs = p1 + [
        np.asarray(p, np.float32).reshape(-1, CONFIG.num_classes) for p in child["probs"]
    ]
    assert len(got_probs) == len(whole_probs)
    for a, b in zip(got_probs, whole_probs, strict=True):
        np.testing.assert_array_equal(a, b)
    want = json.loads(json.dumps(whole_events))  # same float round trip as the child's
    assert json.loads(json.dumps(e1)) + child["events"] == want
    assert any(e[0] == "end" for e in child["events"])


def test_restore_with_another_backend_of_the_same_model(exported, tmp_path: Path) -> None:
    model, model_path = exported
    helpers = _helpers()
    tracks = helpers.make_tracks(7)
    frames = sorted({int(f) for fr, _, _ in tracks.values() for f in fr})
    k = len(frames) // 2
    with load_backend("onnxruntime", model=model_path) as runner:
        whole = _run(OnlineScorer(runner, **SETTINGS), tracks, frames, helpers, flush=True)[1]
        first = OnlineScorer(runner, **SETTINGS)
        e1 = _run(first, tracks, frames[:k], helpers, flush=False)[1]
        first.snapshot(tmp_path / "s.snap")
    with load_backend("torch", model=model) as runner:
        rest = _run(
            OnlineScorer.restore(tmp_path / "s.snap", backend=runner),
            tracks,
            frames[k:],
            helpers,
            flush=True,
        )[1]
    got = e1 + rest
    assert [g[:6] for g in got] == [w[:6] for w in whole]
    np.testing.assert_allclose([g[6] for g in got], [w[6] for w in whole], atol=1e-5)


def test_snapshot_format_is_plain_json_and_npy(exported, tmp_path: Path) -> None:
    _, model_path = exported
    helpers = _helpers()
    tracks = helpers.make_tracks(8)
    with load_backend("onnxruntime", model=model_path) as runner:
        scorer = OnlineScorer(runner, **SETTINGS)
        _run(scorer, tracks, list(range(30)), helpers, flush=False)
        path = scorer.snapshot(tmp_path / "s.snap")
        scorer.snapshot(path)  # overwrite in place: atomic rename, no leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.snap"]
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("meta.json"))
    assert meta["format"] == "reclnet-snapshot/1" and meta["frame"] == 29
    assert meta["model_config"] == CONFIG.to_dict()
    arrays = np.load(path, allow_pickle=False)  # every member is a plain .npy
    assert arrays["states"].dtype == np.float32
    assert arrays["states"].shape == (arrays["slots"].size, CONFIG.state_size)
    assert bytes(arrays["bank_state"][:8]) == b"RPPSTATE"


def test_bad_snapshots_are_refused(exported, tmp_path: Path) -> None:
    model, model_path = exported
    helpers = _helpers()
    tracks = helpers.make_tracks(9)
    with load_backend("onnxruntime", model=model_path) as runner:
        scorer = OnlineScorer(runner, **SETTINGS)
        _run(scorer, tracks, list(range(20)), helpers, flush=False)
        path = scorer.snapshot(tmp_path / "s.snap")
        data = bytearray(path.read_bytes())
        corrupt = tmp_path / "corrupt.snap"
        mid = len(data) // 2
        corrupt.write_bytes(bytes(data[:mid]) + bytes([data[mid] ^ 0xFF]) + bytes(data[mid + 1 :]))
        with pytest.raises(SnapshotError, match="corrupt.snap"):
            OnlineScorer.restore(corrupt, backend=runner)
        truncated = tmp_path / "truncated.snap"
        truncated.write_bytes(bytes(data[: len(data) // 3]))
        with pytest.raises(SnapshotError, match="truncated.snap"):
            OnlineScorer.restore(truncated, backend=runner)
        with pytest.raises(SnapshotError, match="no such file"):
            OnlineScorer.restore(tmp_path / "missing.snap", backend=runner)
    from reclnet.train.model import RecLNet

    other = RecLNet(
        RecLNetConfig(
            num_actions=4, modalities={"rgb": 12}, projection_size=16, memory_size=8, num_layers=2
        )
    )
    with load_backend("torch", model=other) as runner:
        with pytest.raises(SnapshotError, match="does not match"):
            OnlineScorer.restore(path, backend=runner)
