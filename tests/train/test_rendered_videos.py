"""Rendered action videos: reproducibility, decoding, labels vs tubes, motion signal, timing, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from reclnet.runtime.camera.persons import read_mot
from reclnet.runtime.camera.source import FileSource
from reclnet.runtime.offline.tubes import read_tubes
from reclnet.train import rendered_videos as rv
from reclnet.train.data import assign_labels, box_iou_rows
from reclnet.train.synthetic import default_ucf_root, main

SMALL = dict(videos=3, frames=(48, 64))


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _labels_from_files(root: Path, video: rv.VideoTruth, num_actions: int) -> np.ndarray:
    """Per MOT row: the IoU > 0.3 label of its track's box against the written tubes."""
    tubes = [
        t
        for t in read_tubes(root / "tubes.jsonl", num_classes=num_actions, require_score=False)
        if t.video == video.name
    ]
    mot = read_mot(root / "tracks" / f"{video.name}.txt", frame_size=(rv.WIDTH, rv.HEIGHT))
    np.testing.assert_array_equal(mot.frames, video.mot_frames)
    np.testing.assert_array_equal(mot.ids, video.mot_ids)
    labels = np.empty(len(mot), np.int64)
    for track in np.unique(mot.ids):
        rows = mot.ids == track
        labels[rows] = assign_labels(
            mot.frames[rows], mot.boxes[rows], tubes, 0.3, num_actions=num_actions
        )
    return labels


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = rv.render_set(tmp_path / "a", seed=7, **SMALL)
    b = rv.render_set(tmp_path / "b", seed=7, **SMALL)
    ha, hb = _hashes(a.root), _hashes(b.root)
    assert ha == hb
    assert {"manifest.json", "tubes.jsonl"} <= set(ha)
    assert sum(k.startswith("videos/") for k in ha) == 3
    assert sum(k.startswith("tracks/") for k in ha) == 3
    c = rv.render_set(tmp_path / "c", seed=8, **SMALL)
    hc = _hashes(c.root)
    assert all(ha[k] != hc[k] for k in ha if k.startswith("videos/"))
    # Tracker errors draw from their own streams: videos and tubes do not change.
    d = rv.render_set(tmp_path / "d", seed=7, jitter=0.1, id_switches=0.5, **SMALL)
    hd = _hashes(d.root)
    for k in ha:
        if k.startswith("videos/") or k == "tubes.jsonl":
            assert hd[k] == ha[k], k
    assert any(hd[k] != ha[k] for k in ha if k.startswith("tracks/"))


def test_frames_decode_and_manifest(tmp_path: Path) -> None:
    s = rv.render_set(tmp_path / "set", seed=1, videos=2, frames=(40, 70), actions=["spin", "kick"])
    manifest = json.loads((s.root / "manifest.json").read_text())
    assert manifest == s.manifest
    assert manifest["format"] == rv.MANIFEST_FORMAT
    assert manifest["classes"] == ["spin", "kick"]
    assert manifest["fps"] == rv.FPS and manifest["size"] == [320, 240]
    assert manifest["seed"] == 1 and manifest["timing"] == {"kind": "builtin"}
    assert [v["name"] for v in manifest["videos"]] == [v.name for v in s.videos]
    for entry, video in zip(manifest["videos"], s.videos, strict=True):
        assert 40 <= video.num_frames <= 70 and entry["frames"] == video.num_frames
        with FileSource(s.root / entry["video"]) as src:
            shapes = [f.image.shape for f in src]
        assert len(shapes) == video.num_frames
        assert set(shapes) == {(240, 320, 3)}
        assert len(video.figures) >= 1 and len(video.tubes) >= 1
        for t in video.tubes:
            assert t.video == video.name and 0 <= t.label < 2


def test_labels_from_tracks_equal_rendered_truth(tmp_path: Path) -> None:
    s = rv.render_set(tmp_path / "set", seed=3, videos=6)
    c = len(s.classes)
    acting_rows = 0
    for video in s.videos:
        labels = _labels_from_files(s.root, video, c)
        np.testing.assert_array_equal(labels, video.mot_labels)
        # The acting figure's track has the class on exactly the action frames.
        for tube in video.tubes:
            owners = [
                i
                for i, fig in enumerate(video.figures)
                if np.isin(tube.frames, fig.frames).all()
                and np.array_equal(fig.boxes[np.searchsorted(fig.frames, tube.frames)], tube.boxes)
            ]
            assert len(owners) == 1
            rows = (video.mot_figures == owners[0]) & np.isin(video.mot_frames, tube.frames)
            assert rows.sum() == len(tube.frames)
            assert (video.mot_labels[rows] == tube.label).all()
        acting = labels < c
        assert acting.sum() == sum(len(t.frames) for t in video.tubes)
        acting_rows += int(acting.sum())
        # one track per figure (no switches asked for)
        for i in range(len(video.figures)):
            assert len(np.unique(video.mot_ids[video.mot_figures == i])) == 1
    assert acting_rows > 0
    # several figures per video, some of them overlapping (occlusion)
    assert max(len(v.figures) for v in s.videos) >= 3


def test_labels_with_tracker_jitter_and_id_switches(tmp_path: Path) -> None:
    s = rv.render_set(tmp_path / "set", seed=3, videos=6, jitter=0.1, id_switches=0.5)
    c = len(s.classes)
    same = total = 0
    ious = []
    for video in s.videos:
        labels = _labels_from_files(s.root, video, c)
        same += int((labels == video.mot_labels).sum())
        total += len(labels)
        for i, fig in enumerate(video.figures):
            rows = video.mot_figures == i
            np.testing.assert_array_equal(video.mot_frames[rows], fig.frames)
            ious.append(box_iou_rows(video.mot_boxes[rows], fig.boxes))
    assert same >= 0.95 * total
    ious = np.concatenate(ious)
    assert ious.mean() < 0.9  # the jitter is real ...
    assert np.percentile(ious, 5) > 0.3  # ... and tracker-like, not random boxes
    assert sum(v.id_switches for v in s.videos) > 0
    # a switched id carries rows of more than one figure, or a figure more than one id
    assert any(
        len(np.unique(v.mot_ids[v.mot_figures == i])) > 1
        for v in s.videos
        for i in range(len(v.figures))
    )


def test_actions_differ_from_idle_in_motion(tmp_path: Path) -> None:
    """Median flow magnitude in the box: every action's middle phase moves, idle does not."""
    s = rv.render_set(tmp_path / "set", seed=11, videos=14, actions=list(rv.MOTIONS))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    per_phase: dict[str, list[float]] = {}
    for video in s.videos:
        with FileSource(s.root / "videos" / f"{video.name}.mp4") as src:
            gray = [cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY) for f in src]
        mag = [None] + [
            np.hypot(*dis.calc(a, b, None).transpose(2, 0, 1))
            for a, b in zip(gray[:-1], gray[1:], strict=True)
        ]
        for fig in video.figures:
            for f, box, label, phase in zip(
                fig.frames, fig.boxes, fig.labels, fig.phase, strict=True
            ):
                if f == 0 or phase not in (rv.PHASE_IDLE, rv.PHASE_MIDDLE):
                    continue
                x1, y1, x2, y2 = np.round(box).astype(int)
                key = "idle" if phase == rv.PHASE_IDLE else s.classes[label]
                per_phase.setdefault(key, []).append(float(mag[f][y1:y2, x1:x2].mean()))
    assert set(per_phase) == {"idle", *rv.MOTIONS}
    idle = np.median(per_phase.pop("idle"))
    for motion, values in per_phase.items():
        assert np.median(values) > 2.0 * idle, (motion, np.median(values), idle)


def test_motion_patterns_are_distinct_and_mirror() -> None:
    t = np.arange(40.0)
    poses = {m: rv.motion_pose(m, t, 16.0) for m in rv.MOTIONS}
    names = list(poses)
    for i, a in enumerate(names):
        assert np.ptp(poses[a], axis=0).max() > 0.3, a  # it moves
        for b in names[i + 1 :]:
            assert np.abs(poses[a] - poses[b]).max() > 0.3, (a, b)
    # mirroring twice is the identity, once exchanges the two sides
    p = poses["kick"]
    np.testing.assert_allclose(rv._mirror(rv._mirror(p)), p)
    assert np.abs(rv._mirror(p)[:, rv.LU_A] + p[:, rv.LU_B]).max() < 1e-12
    with pytest.raises(ValueError, match="unknown motion 'fly'"):
        rv.motion_pose("fly", t, 10.0)


def _mean_iou(boxes: np.ndarray, xywh) -> float:
    b = np.asarray(xywh, np.float64)  # stored as uint8/uint16: cast before adding
    b[:, 2:] += b[:, :2]
    return float(box_iou_rows(boxes, b).mean())


@pytest.mark.data
def test_ucf_timing_uses_the_annotated_tubes(tmp_path: Path) -> None:
    try:
        root = default_ucf_root()
    except FileNotFoundError as exc:  # an installed package without RECLNET_DATA
        pytest.skip(str(exc))
    pkl = root / "pyannot_with_class_names.pkl"
    if not pkl.is_file():
        pytest.skip(f"UCF101-24 annotations not found at {pkl} (see ../shared/data/README.md)")
    from reclnet.runtime.offline import safe_pickle

    data = safe_pickle.load(pkl)
    db, classes = data["db"], list(data["classes"])

    def first(pred) -> str:
        return next(n for n in sorted(db) if db[n]["annotations"] and pred(n, db[n]))

    names = [
        first(lambda n, e: n.startswith("Basketball/")),  # a short class
        first(lambda n, e: n.startswith("TennisSwing/")),
        first(lambda n, e: len(e["annotations"]) >= 2),  # several people / actions
    ]
    s = rv.render_set(tmp_path / "ucf", timing="ucf101-24", ucf_root=root, names=names, seed=2)
    assert s.classes == [m for m in rv.MOTIONS if m != "clap"]
    assert s.manifest["timing"]["kind"] == "ucf101-24"
    assert s.manifest["timing"]["ucf_motions"] == rv.UCF_MOTIONS
    for video, name in zip(s.videos, names, strict=True):
        entry = db[name]
        assert video.name == name
        assert video.num_frames == max(
            int(entry["numf"]), max(int(a["ef"]) for a in entry["annotations"])
        )
        anns = entry["annotations"]
        assert len(video.tubes) == len(anns)
        used = set()
        for tube in video.tubes:
            # the annotated tube(s) with the same frames; the best-overlapping one is its source
            cands = [
                k
                for k, a in enumerate(anns)
                if k not in used
                and int(a["sf"]) == tube.frames[0]
                and len(a["boxes"]) == len(tube.frames)
            ]
            assert cands, f"{name}: rendered tube {tube.frames[0]}+{len(tube.frames)} not annotated"

            ious = {k: _mean_iou(tube.boxes, anns[k]["boxes"]) for k in cands}
            k = max(cands, key=ious.__getitem__)
            used.add(k)
            a = anns[k]
            assert len(tube.frames) == int(a["ef"]) - int(a["sf"])  # the real duration
            assert s.classes[tube.label] == rv.UCF_MOTIONS[classes[int(a["label"])]]
            assert ious[k] > 0.4  # the box trajectory follows the annotation
        labels = _labels_from_files(s.root, video, len(s.classes))
        np.testing.assert_array_equal(labels, video.mot_labels)
        with FileSource(s.root / "videos" / f"{name}.mp4") as src:
            assert sum(1 for _ in src) == video.num_frames


def test_cli_writes_the_same_set_as_the_api(tmp_path: Path, capsys) -> None:
    assert (
        main(["--kind", "video", "--out", str(tmp_path / "cli"), "--videos", "2", "--seed", "5"])
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    api = rv.render_set(tmp_path / "api", videos=2, seed=5)
    assert _hashes(tmp_path / "cli") == _hashes(api.root)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jitter", "1.5"], "--jitter: must be in [0, 1]"),
        (["--id-switches", "-0.1"], "--id-switches: must be in [0, 1]"),
        (["--id-switches", "nan"], "must be a finite number"),
        (["--actions", "wave,fly"], "unknown action(s) 'fly'"),
        (["--actions", "wave,wave"], "actions repeat a name"),
        (["--timing", "daly"], "invalid choice: 'daly'"),
        (["--timing", "ucf101-24", "--actions", "wave"], "--actions does not apply"),
        (["--timing", "ucf101-24", "--ucf-root", "/nonexistent"], "annotations not found"),
        (["--videos", "0"], "must be >= 1"),
    ],
)
def test_cli_bad_arguments(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        code = main(["--kind", "video", "--out", str(out), *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_cli_refuses_a_non_empty_folder_and_feature_kinds_refuse_video_flags(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["--kind", "video", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty" in err
    with pytest.raises(SystemExit) as exc:
        main(["--kind", "builtin", "--out", str(tmp_path / "x.h5"), "--jitter", "0.1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jitter: only with --kind video" in err
    with pytest.raises(ValueError, match="frames must be a range"):
        rv.render_set(tmp_path / "y", frames=(10, 20))
