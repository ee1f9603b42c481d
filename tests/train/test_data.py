"""Track-feature datasets: label assignment on hand-made boxes, HDF5 round trip, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from reclnet.runtime.offline.tubes import Tube
from reclnet.train.data import (
    DatasetError,
    DatasetWriter,
    Track,
    Video,
    assign_labels,
    box_iou_rows,
    load_tracks,
    open_dataset,
    write_dataset,
)

C = 3
STREAMS = {"rgb": 8, "flow": 6}


def _tube(label: int, first: int, boxes: list[list[float]]) -> Tube:
    frames = np.arange(first, first + len(boxes))
    return Tube("v", label, frames, np.asarray(boxes, np.float32))


def _iou_slow(a, b) -> float:
    """Area of intersection over union, written out for two boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _assign_slow(frames, boxes, tubes, thr, num_actions):
    """Frame by frame, tube by tube: the obviously-correct twin of assign_labels."""
    out = []
    for f, box in zip(frames, boxes, strict=True):
        best, label = -1.0, num_actions
        for tube in tubes:
            hit = np.flatnonzero(tube.frames == f)
            if hit.size:
                iou = _iou_slow(box, tube.boxes[hit[0]])
                if iou > thr and iou > best:
                    best, label = iou, tube.label
        out.append(label)
    return np.array(out)


def test_hand_made_boxes() -> None:
    # Track of 6 frames (10..15), a 10x10 box at the origin.
    frames = np.arange(10, 16)
    boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (6, 1))
    tubes = [
        # class 0 on frames 11-12: identical box (IoU 1) then shifted by 5 (IoU 50/150 = 1/3)
        _tube(0, 11, [[0, 0, 10, 10], [5, 0, 15, 10]]),
        # class 1 on frame 13: shifted by 6 -> IoU 40/160 = 0.25, not above 0.3
        _tube(1, 13, [[6, 0, 16, 10]]),
        # class 2 on frames 14-15: IoU 1/3 on 14, IoU 0.8 on 15
        _tube(2, 14, [[0, 5, 10, 15], [0, 0, 10, 8]]),
        # class 1 on frame 15 with higher IoU (0.9) than class 2's 0.8: highest IoU wins
        _tube(1, 15, [[0, 0, 10, 9]]),
    ]
    labels = assign_labels(frames, boxes, tubes, 0.3, num_actions=C)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [C, 0, 0, C, 2, 1])


def test_threshold_is_strict_and_ties_go_to_the_first_tube() -> None:
    frames = np.array([0])
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    # IoU exactly 0.5 ([0,0,10,5] inside): at threshold 0.5 it is background.
    half = [_tube(2, 0, [[0, 0, 10, 5]])]
    assert assign_labels(frames, boxes, half, 0.5, num_actions=C)[0] == C
    assert assign_labels(frames, boxes, half, 0.49, num_actions=C)[0] == 2
    tie = [_tube(2, 0, [[0, 0, 10, 5]]), _tube(1, 0, [[0, 5, 10, 10]])]
    assert assign_labels(frames, boxes, tie, 0.3, num_actions=C)[0] == 2
    assert assign_labels(frames, boxes, tie[::-1], 0.3, num_actions=C)[0] == 1


def test_track_with_gaps_and_tube_outside() -> None:
    frames = np.array([0, 2, 4, 9])
    boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (4, 1))
    tubes = [_tube(1, 1, [[0, 0, 10, 10]] * 4), _tube(0, 20, [[0, 0, 10, 10]])]
    np.testing.assert_array_equal(assign_labels(frames, boxes, tubes, num_actions=C), [C, 1, 1, C])
    assert assign_labels(frames, boxes, [], num_actions=C).tolist() == [C] * 4


@pytest.mark.parametrize("seed", range(6))
def test_assign_labels_matches_slow_twin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    frames = np.sort(rng.choice(60, size=n, replace=False))
    xy = rng.uniform(0, 50, size=(n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, size=(n, 2))], axis=1)
    tubes = []
    for _ in range(int(rng.integers(0, 5))):
        first, length = int(rng.integers(0, 50)), int(rng.integers(1, 20))
        txy = rng.uniform(0, 50, size=(length, 2))
        tb = np.concatenate([txy, txy + rng.uniform(5, 30, size=(length, 2))], axis=1)
        tubes.append(_tube(int(rng.integers(0, C)), first, tb.tolist()))
    thr = float(rng.uniform(0.0, 0.6))
    np.testing.assert_array_equal(
        assign_labels(frames, boxes, tubes, thr, num_actions=C),
        _assign_slow(frames, boxes.astype(np.float32), tubes, thr, C),
    )


def test_box_iou_rows_matches_slow() -> None:
    rng = np.random.default_rng(0)
    a = np.concatenate([xy := rng.uniform(0, 20, (50, 2)), xy + rng.uniform(0, 20, (50, 2))], 1)
    b = np.concatenate([xy := rng.uniform(0, 20, (50, 2)), xy + rng.uniform(0, 20, (50, 2))], 1)
    np.testing.assert_allclose(
        box_iou_rows(a, b), [_iou_slow(x, y) for x, y in zip(a, b, strict=True)]
    )


def test_assign_labels_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        assign_labels(np.array([1, 1]), np.zeros((2, 4)), [], num_actions=C)
    with pytest.raises(ValueError, match=r"boxes \[T, 4\]"):
        assign_labels(np.array([1, 2]), np.zeros((3, 4)), [], num_actions=C)
    with pytest.raises(ValueError, match="label 5"):
        assign_labels(np.array([0]), np.zeros((1, 4)), [_tube(5, 0, [[0, 0, 1, 1]])], num_actions=C)


# ------------------------------------------------------------------ HDF5 files
def _video(name: str, rng: np.random.Generator, split: str = "train", n_tracks: int = 2) -> Video:
    tracks = []
    for i in range(n_tracks):
        t = int(rng.integers(3, 12))
        frames = np.arange(t) + int(rng.integers(0, 5))
        boxes = np.tile(np.array([10, 10, 50, 90], np.float32), (t, 1)) + i * 100
        feats = {
            "rgb": rng.standard_normal((t, 8)).astype(np.float16),
            "flow": rng.standard_normal((t, 6)).astype(np.float32),
        }
        tracks.append(Track(i, frames, boxes, feats))
    tube = Tube(name, 1, np.arange(2, 6), np.tile(np.array([10, 10, 50, 90], np.float32), (4, 1)))
    return Video(name, 20, tracks, [tube], split)


def test_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    videos = [_video("a/b", rng), _video("c", rng, "val", 3), _video("d", rng, "train", 0)]
    path = write_dataset(
        tmp_path / "d.h5", videos, modalities=STREAMS, num_actions=C, class_names=["x", "y", "z"]
    )
    assert not (tmp_path / "d.h5.partial").exists()
    with open_dataset(path) as ds:
        assert (
            ds.modalities == STREAMS and ds.num_actions == C and ds.class_names == ["x", "y", "z"]
        )
        assert len(ds) == 3 and ds.splits() == {"train": 2, "val": 1}
        back = list(ds.videos())
        assert [v.name for v in ds.videos("val")] == ["c"]
    for orig, got in zip(videos, back, strict=True):
        assert (got.name, got.num_frames, got.split) == (orig.name, orig.num_frames, orig.split)
        assert len(got.tracks) == len(orig.tracks)
        for a, b in zip(orig.tracks, got.tracks, strict=True):
            assert a.track_id == b.track_id
            np.testing.assert_array_equal(a.frames, b.frames)
            assert b.frames.dtype == np.int64 and b.boxes.dtype == np.float32
            np.testing.assert_array_equal(a.boxes, b.boxes)
            for s in STREAMS:
                assert b.features[s].dtype == a.features[s].dtype
                np.testing.assert_array_equal(a.features[s], b.features[s])
        assert [t.label for t in got.tubes] == [1]
        np.testing.assert_array_equal(got.tubes[0].frames, orig.tubes[0].frames)
    tracks, _ = load_tracks(path, "train")
    assert len(tracks) == 2 and all(t.features["rgb"].dtype == np.float32 for t in tracks)
    for t, orig in zip(tracks, videos[0].tracks, strict=True):
        np.testing.assert_array_equal(
            t.labels, assign_labels(orig.frames, orig.boxes, videos[0].tubes, num_actions=C)
        )
    # track 0 overlaps the tube exactly on frames 2..5, track 1 is 100 px away
    assert (tracks[0].labels == 1).sum() == len(set(tracks[0].frames) & {2, 3, 4, 5})
    assert (tracks[1].labels == C).all()


def _writer_error(tmp_path, mutate) -> str:
    video = _video("v", np.random.default_rng(0))
    mutate(video.tracks[0])
    with DatasetWriter(tmp_path / "w.h5", modalities=STREAMS, num_actions=C) as w:
        with pytest.raises(DatasetError) as err:
            w.add_video(video)
    with open_dataset(tmp_path / "w.h5") as ds:
        assert len(ds) == 0  # the bad video left nothing behind
    return str(err.value)


def test_writer_rejects_bad_tracks(tmp_path) -> None:
    assert "missing feature modalities ['flow']" in _writer_error(
        tmp_path, lambda t: t.features.pop("flow")
    )
    msg = _writer_error(tmp_path, lambda t: t.features.update(rgb=t.features["rgb"][:, :5]))
    assert "features['rgb']" in msg and "feature size 8" in msg

    def nan(t):
        t.features["flow"][1, 2] = np.nan

    assert "features['flow'] contain NaN" in _writer_error(tmp_path, nan)

    def unordered(t):
        t.frames[[0, 1]] = t.frames[[1, 0]]

    assert "strictly increasing" in _writer_error(tmp_path, unordered)


def test_reader_rejects_bad_files(tmp_path) -> None:
    rng = np.random.default_rng(2)
    path = write_dataset(tmp_path / "d.h5", [_video("v", rng)], modalities=STREAMS, num_actions=C)
    raw = path.read_bytes()
    # Truncated file.
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="cut.h5"):
        with open_dataset(tmp_path / "cut.h5") as ds:
            list(ds.videos())
    # Not HDF5 at all / missing.
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file" * 10)
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        open_dataset(tmp_path / "junk.h5")
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(tmp_path / "none.h5")
    # HDF5 but foreign.
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(DatasetError, match="not a reclnet-tracks/1 file"):
        open_dataset(tmp_path / "other.h5")
    # Edited after writing: NaN features, a dropped stream, a wrong feature size.
    for edit, message in [
        (lambda g: g["flow"].__setitem__((0, 0), np.nan), "contain NaN"),
        (lambda g: g.__delitem__("flow"), r"missing feature modalities \['flow'\]"),
        (
            lambda g: (g.__delitem__("rgb"), g.create_dataset("rgb", data=np.zeros((3, 7)))),
            "features\\['rgb'\\]",
        ),
    ]:
        bad = tmp_path / "bad.h5"
        bad.write_bytes(raw)
        with h5py.File(bad, "r+") as f:
            edit(f["videos/v000000/tracks/t000000/features"])
        with pytest.raises(DatasetError, match=message) as err:
            load_tracks(bad)
        assert "video 'v' track 0" in str(err.value)
