"""Forged snapshots: the C bank state and the scorer's zip refuse them with a clear error.

A checksum catches accidents, not forgery: every case here recomputes the bank's FNV
checksum (and the zip's CRCs) after editing, so only the loaders' own checks stand
between the edit and a crash, a memory blow-up or a scorer failing later.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from reclnet.config import RecLNetConfig
from reclnet.runtime import OnlineScorer
from reclnet.runtime.backends.base import StepRunner
from reclnet.runtime.snapshot import MAX_META_DEPTH, SnapshotError, bank_state_tracks

pytest.importorskip("reclnet.runtime.postproc._core", reason="the C core extension is not built")
from reclnet.runtime.postproc import PostprocError, SegmentBank  # noqa: E402

CONFIG = RecLNetConfig(
    num_actions=3, modalities={"x": 5}, projection_size=4, memory_size=4, num_layers=1
)
SETTINGS = dict(window=5, lookahead=2, threshold=0.3, top_k=3, min_length=2, max_age=3)


class NumpyRunner(StepRunner):
    """A tiny exact numpy recurrent step (test double; no model_id)."""

    name = "numpy"

    def __init__(self, config: RecLNetConfig = CONFIG, seed: int = 0) -> None:
        from reclnet.config import PostprocessConfig

        rng = np.random.default_rng(seed)
        self.config, self.postprocess = config, PostprocessConfig()
        d = sum(config.modalities.values())
        self.w = rng.standard_normal((d + config.state_size, config.state_size)).astype(np.float32)
        self.h = rng.standard_normal((config.state_size, config.num_classes)).astype(np.float32)

    def _step(self, features, state):
        x = np.concatenate([*[features[k] for k in self.config.modalities], state], axis=1)
        new = np.tanh(x @ self.w).astype(np.float32)
        logits = new @ self.h
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32), new


def _inputs(f: int, ids: list[int]):
    rng = np.random.default_rng(f)
    ids_arr = np.array(ids, np.int64)
    feats = {"x": rng.standard_normal((len(ids), 5), dtype=np.float32) * 3}
    boxes = np.array([[0, 0, 4 + f, 4 + f]] * len(ids), np.float32)
    return ids_arr, feats, boxes


def _schedule(f: int) -> list[int]:
    return [t for t in range(6) if (f + 2 * t) % 7 != 0]


def _run(scorer: OnlineScorer, frames) -> list[tuple]:
    out = []
    for f in frames:
        out += scorer.update(f, *_inputs(f, _schedule(f))).events
    return [(e.kind, e.track_id, e.label, e.first_frame, e.last_frame, e.num_samples) for e in out]


@pytest.fixture()
def snap(tmp_path: Path) -> Path:
    scorer = OnlineScorer(NumpyRunner(), **SETTINGS)
    _run(scorer, range(25))
    assert scorer.pool.open_starts, "the cut must fall inside started segments"
    return scorer.snapshot(tmp_path / "good.snap")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path: Path, members: dict[str, bytes], compress: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            kind = zipfile.ZIP_DEFLATED if name == compress else zipfile.ZIP_STORED
            zf.writestr(name, data, compress_type=kind)
    return path


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _load_npy(data: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def _fnv(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _reseal(state: bytearray) -> bytes:
    state[-4:] = struct.pack("<I", _fnv(bytes(state[:-4])))
    return bytes(state)


def _field_offsets(state: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the header fields and every track record's fixed fields."""
    cfg, tracks = bank_state_tracks(state)
    fields = [(8, 4), (12, 4)] + [(16 + 4 * i, 4) for i in range(7)] + [(44, 8), (52, 4), (56, 4)]
    pos = 60
    L1, w = cfg["lookahead"] + 1, cfg["window"]
    for t in tracks:
        fields += [
            (pos, 4),
            (pos + 4, 8),
            (pos + 12, 8),
            (pos + 20, 8),
            (pos + 28, 8),
            (pos + 36, 8),
        ]
        pos += 44
        fields += [(pos + 8 * j, 8) for j in range(L1)]
        pos += 8 * L1
        for _ in range(cfg["num_classes"]):
            pos += 4 * min(t["count"], w)
            fields += [
                (pos, 1),
                (pos + 1, 1),
                (pos + 2, 4),
                (pos + 6, 8),
                (pos + 14, 8),
                (pos + 22, 4),
            ]
            (hn,) = struct.unpack_from("<i", state, pos + 22)
            pos += 26 + 4 * hn
    assert pos + 4 == len(state)
    return fields


EXTREMES = [0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 2**62, 255, 1 << 20]


def test_forged_bank_states_load_consistently_or_fail_cleanly(snap: Path) -> None:
    """600 edits of a real bank state with the checksum recomputed: from_state either
    refuses (PostprocError / MemoryError) or gives a bank that saves back the same
    bytes and keeps working."""
    state = _load_npy(_members(snap)["bank_state.npy"]).tobytes()
    fields = _field_offsets(state)
    rng = np.random.default_rng(1)
    outcomes = {"refused": 0, "loaded": 0}
    for _ in range(600):
        buf = bytearray(state)
        for _ in range(int(rng.integers(1, 3))):
            off, width = fields[int(rng.integers(len(fields)))]
            old = int.from_bytes(buf[off : off + width], "little", signed=True)
            value = [old + 1, old - 1, int(rng.choice(EXTREMES))][int(rng.integers(3))]
            value &= (1 << (8 * width)) - 1
            buf[off : off + width] = value.to_bytes(width, "little")
        forged = _reseal(buf)
        try:
            bank = SegmentBank.from_state(forged)
        except (PostprocError, MemoryError) as exc:
            assert "from_state" in str(exc)
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        assert bank.get_state() == forged
        for slot in range(min(bank.capacity, 64)):
            try:
                _, count, last = bank.track_info(slot)
            except PostprocError:
                continue
            if last is None or last < 2**62:
                bank.push(0 if last is None else last + 1, [slot], np.full((1, 3), 0.5))
            bank.close_track(slot)
        assert bank.num_tracks == 0
    assert outcomes["refused"] > 400 and outcomes["loaded"] > 0, outcomes


def test_forged_count_through_restore_is_refused(snap: Path, tmp_path: Path) -> None:
    members = _members(snap)
    state = bytearray(_load_npy(members["bank_state.npy"]).tobytes())
    # The first track's sample count and processed count, edited together (consistent
    # for the C core's own record checks), then the checksum recomputed.
    (count,) = struct.unpack_from("<q", state, 60 + 12)
    struct.pack_into("<qq", state, 60 + 12, count + 1000, count + 1000 - 2)
    members["bank_state.npy"] = _npy(np.frombuffer(_reseal(state), np.uint8))
    forged = _write(tmp_path / "forged.snap", members)
    with pytest.raises(SnapshotError, match=r"forged\.snap.*bank_state"):
        OnlineScorer.restore(forged, backend=NumpyRunner())


def _restore_error(tmp_path: Path, members: dict[str, bytes], **kw) -> str:
    path = _write(tmp_path / "bad.snap", members, **kw)
    with pytest.raises(SnapshotError) as info:
        OnlineScorer.restore(path, backend=NumpyRunner())
    assert "bad.snap" in str(info.value)
    return str(info.value)


def _edit(members: dict[str, bytes], key: str, fn) -> dict[str, bytes]:
    out = dict(members)
    arr = _load_npy(members[f"{key}.npy"]).copy()
    out[f"{key}.npy"] = _npy(fn(arr))
    return out


def _meta_edit(members: dict[str, bytes], **changes) -> dict[str, bytes]:
    meta = json.loads(members["meta.json"])
    meta.update(changes)
    return {**members, "meta.json": json.dumps(meta).encode()}


def _drop_row(a: np.ndarray) -> np.ndarray:
    return a[1:]


def _bump(a: np.ndarray) -> np.ndarray:
    a[0] += 1
    return a


def _new_id(a: np.ndarray) -> np.ndarray:
    a[0] += 1000
    return a


def _swap(a: np.ndarray) -> np.ndarray:
    return a[::-1].copy()


HOSTILE = {
    # zip members
    "compressed member": (lambda m: m, {"compress": "states.npy"}, "compressed"),
    "unknown member": (lambda m: {**m, "notes.txt": b"hi"}, {}, "unexpected member"),
    "missing array": (lambda m: {k: v for k, v in m.items() if k != "count.npy"}, {}, "missing"),
    "object dtype": (
        lambda m: {**m, "count.npy": _npy(np.array([1, 2], np.int64)).replace(b"<i8", b"|O8")},
        {},
        "dtype|cannot be read|pickle",
    ),
    "shape larger than the data": (
        lambda m: {
            **m,
            "states.npy": _npy(_load_npy(m["states.npy"])).replace(b"(6, 4)", b"(6000000, 4000)"),
        },
        {},
        "bytes but its header|header needs",
    ),
    "deep meta.json": (
        lambda m: {**m, "meta.json": b"[" * 100_000 + b"]" * 100_000},
        {},
        f"deeper than {MAX_META_DEPTH}",
    ),
    "NaN in meta.json": (
        lambda m: {**m, "meta.json": m["meta.json"].replace(b'"nms": false', b'"nms": NaN')},
        {},
        "NaN|nms",
    ),
    # meta.json against the arrays
    "wrong state_size": (lambda m: _meta_edit(m, state_size=3), {}, "state_size"),
    "frame before the last samples": (lambda m: _meta_edit(m, frame=3), {}, "at or before frame"),
    "history not a power of two": (lambda m: _meta_edit(m, history=100), {}, "power of two"),
    "other window": (
        lambda m: _meta_edit(
            m, postprocess={**json.loads(m["meta.json"])["postprocess"], "window": 7}
        ),
        {},
        "differ from meta.json",
    ),
    "bool capacity": (lambda m: _meta_edit(m, capacity=True), {}, "capacity"),
    # the arrays against each other and the bank
    "one row missing": (lambda m: _edit(m, "track_ids", _drop_row), {}, "shape"),
    "track id not in the bank": (lambda m: _edit(m, "track_ids", _new_id), {}, "not in bank_state"),
    "sample count off by one": (lambda m: _edit(m, "count", _bump), {}, "not in bank_state"),
    "slots not increasing": (lambda m: _edit(m, "slots", _swap), {}, "strictly increasing"),
    "ring frames": (lambda m: _edit(m, "hist_frames", lambda a: a * 0), {}, "box ring"),
    "open segment forgotten": (
        lambda m: _edit(m, "open_starts", lambda a: a[1:]),
        {},
        "open_starts",
    ),
    "open segment moved": (
        lambda m: _edit(m, "open_starts", lambda a: a + np.array([0, 0, 1])),
        {},
        "open_starts",
    ),
    "NaN state": (
        lambda m: _edit(m, "states", lambda a: np.where(a == a.max(), np.nan, a)),
        {},
        "NaN",
    ),
    "bank slot swapped": (lambda m: _edit(m, "bank_slot", _swap), {}, "not in bank_state"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_snapshot_is_refused_before_anything_is_restored(
    snap: Path, tmp_path: Path, case: str
) -> None:
    make, kw, match = HOSTILE[case]
    members = _members(snap)
    assert _load_npy(members["states.npy"]).shape == (6, 4)  # what the edits assume
    message = _restore_error(tmp_path, make(members), **kw)
    assert re.search(match, message), message


def test_forged_capacity_costs_no_memory_and_continues_identically(
    snap: Path, tmp_path: Path
) -> None:
    """A capacity of 2^31 - 1 in meta.json (and the bank) must not allocate 2^31 rows;
    the restored scorer still hands out the same slots as the saved one."""
    whole = OnlineScorer(NumpyRunner(), **SETTINGS)
    want = _run(whole, range(25, 45))
    members = _members(snap)
    state = bytearray(_load_npy(members["bank_state.npy"]).tobytes())
    struct.pack_into("<i", state, 52, 2**31 - 1)
    members["bank_state.npy"] = _npy(np.frombuffer(_reseal(state), np.uint8))
    path = _write(tmp_path / "big.snap", _meta_edit(members, capacity=2**31 - 1))
    scorer = OnlineScorer.restore(path, backend=NumpyRunner())
    assert scorer.pool.capacity <= 64 and scorer.bank.capacity == 2**31 - 1
    ref = OnlineScorer.restore(snap, backend=NumpyRunner())
    assert _run(scorer, range(25, 45)) == _run(ref, range(25, 45))
    # (want is the uninterrupted run from frame 25 of a fresh scorer: a sanity check
    # that these frames do produce events)
    assert want


def test_snapshot_of_another_model_is_refused(exported, tmp_path: Path) -> None:
    """Same configuration, other weights: model_id differs."""
    pytest.importorskip("torch")
    from reclnet_test_helpers import CONFIG as TINY
    from reclnet_test_helpers import frame_inputs, make_tracks, tiny_model

    from reclnet.runtime.backends import load_backend

    model, _ = exported
    tracks = make_tracks(3)
    with load_backend("torch", model=model) as runner:
        scorer = OnlineScorer(runner, window=5, lookahead=1, threshold=0.25)
        for f in range(12):
            scorer.update(f, *frame_inputs(tracks, f, TINY.modalities))
        path = scorer.snapshot(tmp_path / "a.snap")
        assert OnlineScorer.restore(path, backend=runner).frame == 11
    assert json.loads(_members(path)["meta.json"])["model_id"]
    with load_backend("torch", model=tiny_model(seed=1)) as other:
        with pytest.raises(SnapshotError, match="other weights"):
            OnlineScorer.restore(path, backend=other)
