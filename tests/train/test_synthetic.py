"""Synthetic datasets: feature model, geometry, label consistency, UCF101-24 timing, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reclnet.train.data import assign_labels, box_iou_rows, load_tracks, open_dataset
from reclnet.train.synthetic import (
    FeatureSpec,
    builtin_videos,
    default_ucf_root,
    main,
    make_prototypes,
    paint_features,
    ucf_videos,
)

C = 4


def _clean_spec(**kw) -> FeatureSpec:
    """No noise, no appearance offset: features are exactly the shown prototypes."""
    base = dict(modalities={"rgb": 16, "flow": 8}, noise=0.0, appearance=0.0, dtype="float32")
    return FeatureSpec(**{**base, **kw})


def test_phases_and_shared_middle_prototype() -> None:
    spec = _clean_spec(emit_action=1.0, emit_background=0.0)
    protos = make_prototypes(C, spec, seed=3)
    bg = C
    # Two tracks: class 0 for 8 frames between background, then class 1 for 8 frames.
    labels = [np.array([bg, *[0] * 8, bg]), np.array([1] * 8)]
    feats = paint_features(labels, C, spec, np.random.default_rng(0), protos)
    for s in spec.modalities:
        p = protos[s]
        x0, x1 = feats[0][s], feats[1][s]
        assert not x0[0].any() and not x0[-1].any()  # background shows nothing here
        # onset = first quarter (2 frames), offset = last quarter (2 frames), middle between
        np.testing.assert_array_equal(x0[1:3], np.tile(p[0], (2, 1)))
        np.testing.assert_array_equal(x0[3:7], np.tile(p[1], (4, 1)))
        np.testing.assert_array_equal(x0[7:9], np.tile(p[2], (2, 1)))
        np.testing.assert_array_equal(x1[:2], np.tile(p[3], (2, 1)))
        np.testing.assert_array_equal(x1[6:], np.tile(p[5], (2, 1)))
        # the class pair (0, 1) shares its middle: only onset / offset tell them apart
        np.testing.assert_array_equal(x0[4], x1[4])
        assert not np.allclose(p[0], p[3]) and not np.allclose(p[2], p[5])
        assert not np.allclose(p[1], p[7])  # pair (2, 3) has its own middle
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), spec.amplitude, rtol=1e-5)


def test_emission_rates_make_single_frames_ambiguous() -> None:
    spec = _clean_spec(emit_action=0.6, emit_background=0.12)
    rng = np.random.default_rng(1)
    labels = [np.full(20000, C), np.full(20000, 2)]
    feats = paint_features(labels, C, spec, rng, make_prototypes(C, spec, 0))
    shown_bg = np.abs(feats[0]["rgb"]).sum(1) > 0
    shown_act = np.abs(feats[1]["rgb"]).sum(1) > 0
    assert abs(shown_bg.mean() - 0.12) < 0.01 and abs(shown_act.mean() - 0.6) < 0.015
    # background frames that show something show action prototypes, of every class
    protos = make_prototypes(C, spec, 0)["rgb"]
    shown = feats[0]["rgb"][shown_bg]
    idx = np.argmin(((shown[:, None] - protos[None]) ** 2).sum(-1), axis=1)
    assert set(idx // 3) == set(range(C))


def test_builtin_is_deterministic_and_labels_follow_the_tubes() -> None:
    a = builtin_videos(12, num_actions=C, seed=5)
    b = builtin_videos(12, num_actions=C, seed=5)
    c = builtin_videos(12, num_actions=C, seed=6)
    assert a[3].tracks[0].features["rgb"].dtype == np.float16
    np.testing.assert_array_equal(a[3].tracks[0].features["rgb"], b[3].tracks[0].features["rgb"])
    assert not np.array_equal(a[0].tracks[0].boxes, c[0].tracks[0].boxes)
    assert {v.split for v in a} == {"train", "val"}
    distractors = 0
    for video in a:
        assert 1 <= len(video.tracks) <= 3 and len(video.tubes) <= len(video.tracks)
        labels = []
        for track in video.tracks:
            np.testing.assert_array_equal(track.frames, np.arange(video.num_frames))
            labels.append(assign_labels(track.frames, track.boxes, video.tubes, num_actions=C))
            distractors += bool((labels[-1] == C).all())
        for tube in video.tubes:
            # the actor's track (best overlap) is labelled with the tube's class almost
            # everywhere along the tube: the jitter keeps IoU > 0.3
            overlap = [box_iou_rows(t.boxes[tube.frames], tube.boxes).mean() for t in video.tracks]
            own = labels[int(np.argmax(overlap))][tube.frames]
            assert (own == tube.label).mean() >= 0.9
    assert distractors > 0


def test_cli_writes_a_readable_dataset(tmp_path, capsys) -> None:
    out = tmp_path / "s.h5"
    args = ["--out", str(out), "--videos", "6", "--num-actions", "3", "--feature-size", "10"]
    assert main([*args, "--modalities", "rgb", "--dtype", "float32"]) == 0
    assert "wrote" in capsys.readouterr().out
    with open_dataset(out) as ds:
        assert ds.modalities == {"rgb": 10} and ds.num_actions == 3 and len(ds) == 6
    tracks, _ = load_tracks(out)
    assert all(t.features["rgb"].shape == (len(t), 10) for t in tracks)
    labels = np.concatenate([t.labels for t in tracks])
    assert (labels < 3).any() and (labels == 3).any()


def test_feature_spec_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="dtype"):
        FeatureSpec(dtype="int8")
    with pytest.raises(ValueError, match="emit_action"):
        FeatureSpec(emit_action=1.5)


UCF = default_ucf_root()
needs_ucf = pytest.mark.skipif(
    not (UCF / "pyannot_with_class_names.pkl").is_file(),
    reason=f"UCF101-24 annotations not found under {UCF}",
)


@pytest.mark.data
@needs_ucf
def test_ucf_timing_is_the_real_one() -> None:
    from reclnet.runtime.offline import safe_pickle

    db = safe_pickle.load(Path(UCF) / "pyannot_with_class_names.pkl")["db"]
    spec = FeatureSpec(modalities={"rgb": 8})
    videos, classes = ucf_videos(max_train=6, max_test=3, spec=spec, distractors=1.0, seed=1)
    assert len(classes) == 24 and len(videos) == 9
    assert [v.split for v in videos].count("test") == 3
    for video in videos:
        anns = db[video.name]["annotations"]
        assert len(video.tubes) == len(anns)
        assert len(video.tracks) >= len(anns)
        for tube, ann, track in zip(video.tubes, anns, video.tracks, strict=False):
            assert (tube.label, tube.first_frame, tube.last_frame + 1) == (
                ann["label"],
                ann["sf"],
                ann["ef"],
            )
            xywh = ann["boxes"].astype(np.float32)
            np.testing.assert_array_equal(tube.boxes[:, 2:], xywh[:, :2] + xywh[:, 2:])
            # the tube's person track spans the whole video and acts exactly during the tube
            assert len(track) == video.num_frames
            labels = assign_labels(track.frames, track.boxes, video.tubes, num_actions=24)
            inside = labels[tube.frames]
            assert (inside == tube.label).mean() > 0.9
            outside = np.delete(labels, tube.frames)
            assert outside.size == 0 or len(video.tubes) > 1 or (outside == 24).all()
