"""Person detectors (HOG, motion-gated HOG, user ONNX) and the norfair tracker on hand-made and real frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from reclnet.paths import vtest_video
from reclnet.runtime.camera.persons import (
    Detections,
    HogPersonDetector,
    MotionGatedHogDetector,
    OnnxPersonDetector,
)
from reclnet.runtime.camera.tracking import PersonTracker

VTEST = vtest_video() or Path("vtest.avi")

# Rows: x1 y1 x2 y2 score class, in the 640 x 640 input's pixels.
DETS = np.array(
    [
        [10, 20, 110, 220, 0.9, 0],  # person
        [12, 22, 112, 222, 0.6, 0],  # the same person again: removed by NMS
        [300, 40, 360, 200, 0.8, 2],  # a car: not a person
        [400, 100, 500, 300, 0.2, 0],  # below the score threshold
        [500, 500, 700, 700, 0.7, 0],  # partly outside: clipped
    ],
    np.float32,
)


def write_detector(path: Path, rows: np.ndarray, batch_dim: bool) -> Path:
    """A tiny ONNX 'detector' in the documented format (fixed output, depends on the input)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    out = rows[None] if batch_dim else rows
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["dets", "z"], ["detections"]),
    ]
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, list(out.shape))],
        [numpy_helper.from_array(out, "dets"), numpy_helper.from_array(np.float32(0), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("batch_dim", [False, True])
def test_onnx_detector_documented_format(tmp_path: Path, batch_dim: bool) -> None:
    det = OnnxPersonDetector(write_detector(tmp_path / "d.onnx", DETS, batch_dim))
    out = det(np.zeros((576, 768, 3), np.uint8))
    assert isinstance(out, Detections) and len(out) == 2
    sx, sy = 768 / 640, 576 / 640
    np.testing.assert_allclose(out.boxes[0], [10 * sx, 20 * sy, 110 * sx, 220 * sy], rtol=1e-5)
    np.testing.assert_allclose(out.boxes[1], [500 * sx, 500 * sy, 768, 576], rtol=1e-5)
    np.testing.assert_allclose(out.scores, [0.9, 0.7])


def test_onnx_detector_bad_output_and_file(tmp_path: Path) -> None:
    bad = write_detector(tmp_path / "bad.onnx", np.zeros((3, 5), np.float32), False)
    with pytest.raises(ValueError, match=r"output must be \[K, 6\]"):
        OnnxPersonDetector(bad)(np.zeros((64, 64, 3), np.uint8))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load ONNX detector"):
        OnnxPersonDetector(junk)
    with pytest.raises(FileNotFoundError):
        OnnxPersonDetector(tmp_path / "none.onnx")


def test_hog_rejects_bad_images_and_finds_nobody_in_a_blank_frame() -> None:
    hog = HogPersonDetector()
    assert len(hog(np.full((240, 320, 3), 128, np.uint8))) == 0
    with pytest.raises(TypeError, match="uint8"):
        hog(np.zeros((240, 320, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        hog(np.zeros((240, 320), np.uint8))


@pytest.mark.data
def test_hog_finds_people_in_vtest() -> None:
    if not VTEST.exists():
        pytest.skip(f"{VTEST} is absent (see README: Demo)")
    from reclnet.runtime.camera.source import open_source

    hog = HogPersonDetector()
    counts = []
    with open_source(VTEST) as source:
        for frame in source:
            if frame.index % 10 == 0:
                dets = hog(frame.image)
                counts.append(len(dets))
                assert (dets.boxes[:, 2:] > dets.boxes[:, :2]).all()
                assert (dets.boxes >= -1).all() and (dets.boxes[:, 2] <= 769).all()
            if frame.index >= 50:
                break
    assert np.mean(counts) >= 1.5  # about 3 people a frame at native size


def vtest_frames(every: int, count: int) -> list[np.ndarray]:
    """Every ``every``-th frame of vtest.avi, ``count`` of them (the camera path's detector calls)."""
    if not VTEST.exists():
        pytest.skip(f"{VTEST} is absent (see README: Demo)")
    from reclnet.runtime.camera.source import open_source

    frames = []
    with open_source(VTEST) as source:
        for frame in source:
            if frame.index % every == 0:
                frames.append(frame.image)
            if len(frames) == count:
                break
    return frames


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = (np.prod(x[:, 2:] - x[:, :2], axis=1) for x in (a, b))
    return inter / (area_a[:, None] + area_b[None] - inter)


@pytest.mark.data
@pytest.mark.parametrize("gating_off", [{"full_every": 1}, {"max_fraction": 0.0, "warmup": 99}])
def test_gated_hog_without_gating_is_hog(gating_off: dict) -> None:
    # The slow twin: searching the whole frame on every call, the crop path (one
    # region = the frame, offset 0, one NMS) must give HOG's boxes bit for bit.
    hog = HogPersonDetector()
    gated = MotionGatedHogDetector(**gating_off)
    found = 0
    for image in vtest_frames(every=5, count=3):
        want, got = hog(image), gated(image)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(gated.last_regions, [[0, 0, 768, 576]])
        found += len(want)
    assert found >= 3  # real people were compared, not empty sets
    assert gated.full_calls == 3 and gated.crop_calls == 0 and gated.area_fraction == 1.0


@pytest.mark.data
def test_gated_hog_finds_full_frame_people_in_its_regions_on_vtest() -> None:
    # The camera path's schedule: the detector on every 5th frame, 100 frames.
    hog, gated = HogPersonDetector(), MotionGatedHogDetector()
    hits, total = 0, 0
    for image in vtest_frames(every=5, count=20):
        want, got = hog(image), gated(image)
        regions = gated.last_regions
        if len(regions) == 1 and (regions[0] == [0, 0, 768, 576]).all():
            continue  # a full-frame call (the warm-up): the twin test's case
        # Full-frame boxes inside a region (regions are disjoint and apart, so a
        # box inside their union is inside one of them).
        inside = np.zeros(len(want), bool)
        for x1, y1, x2, y2 in regions:
            inside |= (want.boxes[:, :2] >= [x1, y1]).all(1) & (want.boxes[:, 2:] <= [x2, y2]).all(
                1
            )
        if inside.any() and len(got):
            hits += int((iou_matrix(want.boxes[inside], got.boxes).max(1) >= 0.5).sum())
        total += int(inside.sum())
    # Measured (OpenCV 4.14, AVX-512): 48 of 49 found (0.98); a crop's pyramid
    # levels other than the first sit off the full frame's grid, so a few boxes move.
    assert total >= 30
    assert hits >= 0.85 * total
    # Measured 0.462 of the frame's area per call: the regions (0.15-0.32) and the
    # sweep's band (0.2); only the warm-up call searched the whole frame.
    assert gated.full_calls == 1 and gated.crop_calls == 19
    assert gated.area_fraction < 0.6


BACKGROUND = cv2.GaussianBlur(
    np.random.default_rng(0).integers(0, 256, (288, 384, 3), dtype=np.uint8), (0, 0), 2.0
)


def scene(blobs: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The static background with bright person-sized rectangles ``x1 y1 x2 y2`` on it."""
    image = BACKGROUND.copy()
    for x1, y1, x2, y2 in blobs:
        image[y1:y2, x1:x2] = 250
    return image


def contains(region: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    return bool(
        region[0] <= box[0] and region[1] <= box[1] and region[2] >= box[2] and region[3] >= box[3]
    )


@pytest.mark.parametrize(("win_stride", "upscale"), [(8, 1.0), (12, 1.0), (8, 2.0)])
def test_gated_regions_hold_a_moving_blob_on_the_grid(win_stride: int, upscale: float) -> None:
    gated = MotionGatedHogDetector(
        win_stride=win_stride, upscale=upscale, full_every=1000, sweep=False
    )
    assert gated.min_size == (int(np.ceil(80 / upscale)), int(np.ceil(144 / upscale)))
    np.testing.assert_array_equal(gated.regions(scene([])), [[0, 0, 384, 288]])  # warm-up
    # Nothing moves: nothing to search. 30 calls: MOG2 learns at 1 / (calls seen)
    # at first, and a blob seen on the 5th call would be background by the 6th.
    for _ in range(30):
        assert gated.regions(scene([])).shape == (0, 4)
    for step in range(4):
        blob = (100 + 6 * step, 101, 124 + 6 * step, 165)
        regions = gated.regions(scene([blob]))
        assert regions.dtype == np.int32 and regions.ndim == 2 and regions.shape[1] == 4
        assert any(contains(r, blob) for r in regions), (blob, regions)
        assert (regions[:, :2] % win_stride == 0).all()
        assert (regions[:, 2:] - regions[:, :2] >= gated.min_size).all()
        assert (regions[:, :2] >= 0).all() and (regions[:, 2:] <= [384, 288]).all()
    assert gated.full_calls == 1 and gated.crop_calls == 34
    assert 0 < gated.area_fraction < 1


def test_gated_regions_merge_near_blobs_and_keep_far_ones_apart() -> None:
    gated = MotionGatedHogDetector(full_every=1000, sweep=False)
    for _ in range(10):
        gated.regions(scene([]))
    # 46 px apart: two blobs (the mask's dilation closes 16 px), but their
    # regions (margin, then grown to HOG's 80 px minimum width) overlap.
    near = [(40, 60, 64, 124), (110, 70, 134, 134)]
    regions = gated.regions(scene(near))
    assert len(regions) == 1 and all(contains(regions[0], b) for b in near), regions
    gated = MotionGatedHogDetector(full_every=1000, sweep=False)
    for _ in range(10):
        gated.regions(scene([]))
    far = [(20, 40, 44, 104), (320, 180, 344, 244)]
    regions = gated.regions(scene(far))
    assert len(regions) == 2, regions
    for box in far:
        assert sum(contains(r, box) for r in regions) == 1
    (a, b) = regions
    assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]  # disjoint


def test_gated_falls_back_to_the_full_frame() -> None:
    # Regions above max_fraction of the frame: searching them would save nothing.
    gated = MotionGatedHogDetector(max_fraction=0.05, full_every=1000, sweep=False)
    gated.regions(scene([]))
    np.testing.assert_array_equal(gated.regions(scene([(100, 100, 124, 164)])), [[0, 0, 384, 288]])
    # Without the sweep: the whole frame every full_every-th call, even with nothing moving.
    gated = MotionGatedHogDetector(full_every=3, sweep=False)
    full = [len(gated.regions(scene([]))) == 1 for _ in range(7)]
    assert full == [True, False, False, True, False, False, True]
    # A static scene runs HOG on nothing and finds nobody.
    gated = MotionGatedHogDetector(full_every=1000, sweep=False)
    for _ in range(3):
        assert len(gated(scene([]))) == 0
    assert gated.full_calls == 1 and gated.crop_calls == 2
    assert gated.area_fraction == pytest.approx(1 / 3)


@pytest.mark.parametrize("full_every", [3, 5, 10])
def test_the_sweep_covers_the_frame_every_full_every_calls_one_band_a_call(full_every) -> None:
    gated = MotionGatedHogDetector(full_every=full_every)
    gated.regions(scene([]))  # warm-up: the whole frame
    covered = np.zeros((288, 384), bool)
    for _ in range(full_every):
        # Nothing moves and nobody was found: the band is the only region.
        [region] = gated.regions(scene([]))
        x1, y1, x2, y2 = region.tolist()
        assert (y1, y2) == (0, 288) and x1 % gated.hog.win_stride == 0
        assert x2 - x1 >= gated.min_size[0] and x2 - x1 <= 384 // full_every + 2 * 16 + 80
        covered[y1:y2, x1:x2] = True
    assert covered.all()  # every pixel searched within full_every calls
    assert gated.full_calls == 1 and gated.crop_calls == full_every
    assert gated.area_fraction < 1


def test_gated_rejects_bad_images_sizes_and_options() -> None:
    gated = MotionGatedHogDetector()
    with pytest.raises(TypeError, match="uint8"):
        gated(np.zeros((288, 384, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        gated(np.zeros((288, 384), np.uint8))
    gated(scene([]))
    with pytest.raises(ValueError, match=r"frame is 320x240 but the first frame was 384x288"):
        gated(np.zeros((240, 320, 3), np.uint8))
    bad = [
        ({"full_every": 0}, "full_every must be an integer >= 1"),
        ({"full_every": 2.5}, "full_every must be an integer >= 1"),
        ({"sweep": 1}, "sweep must be True or False"),
        ({"max_fraction": 1.5}, r"max_fraction must be in \[0, 1\]"),
        ({"max_fraction": float("nan")}, "max_fraction must be"),
        ({"margin": -1}, "margin must be an integer >= 0"),
        ({"background_scale": 0.0}, r"background_scale must be in \(0, 1\]"),
        ({"min_blob_area": -5}, "min_blob_area must be"),
        ({"warmup": 0}, "warmup must be an integer >= 1"),
        ({"memory": -1}, "memory must be an integer >= 0"),
        ({"win_stride": 0}, "win_stride must be > 0"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            MotionGatedHogDetector(**kwargs)


def walk(n: int, start: tuple[float, float], velocity: tuple[float, float]) -> np.ndarray:
    t = np.arange(n)[:, None]
    xy = np.array(start) + t * np.array(velocity)
    return np.concatenate([xy, xy + [40, 100]], axis=1).astype(np.float32)


def test_tracker_keeps_ids_through_misses_and_drops_one_off_boxes() -> None:
    a, b = walk(30, (20, 50), (3, 0)), walk(30, (400, 60), (-2, 1))
    tracker = PersonTracker(init_frames=2, max_missed=4, frame_size=(640, 480))
    history: dict[int, list[int]] = {}
    for t in range(30):
        boxes, scores = [a[t]], [1.0]
        if t not in (10, 11):  # person b is missed for two frames
            boxes.append(b[t])
            scores.append(0.8)
        if t == 15:  # a one-off false positive
            boxes.append(np.array([600, 400, 630, 470], np.float32))
            scores.append(0.5)
        tracks = tracker.update(Detections(np.array(boxes), np.array(scores)))
        for tid, box in zip(tracks.ids.tolist(), tracks.boxes, strict=True):
            history.setdefault(tid, []).append(t)
            assert box[2] > box[0] and box[3] > box[1]
    assert len(history) == 2  # two people, no id switch, no track for the one-off box
    frames = sorted(history.values(), key=len)
    # confirmed on the 2nd detection, kept (predicted) through the misses
    assert frames[0] == list(range(1, 30)) and frames[1] == list(range(1, 30))
    last = tracker.update(Detections(a[29:30] + [9, 0, 9, 0], np.ones(1)))
    assert len(last) == 2  # b survives a miss


def test_tracker_ends_lost_tracks() -> None:
    tracker = PersonTracker(init_frames=1, max_missed=2)
    box = walk(1, (10, 10), (0, 0))
    assert len(tracker.update(Detections(box, np.ones(1)))) == 1
    alive = [len(tracker.update(Detections.empty())) for _ in range(6)]
    assert alive[-1] == 0 and alive[0] == 1


def test_hog_detector_builds_every_listed_region_kind_and_names_an_unknown_one() -> None:
    from reclnet.runtime.camera.cli import DEFAULT_HOG_REGIONS, HOG_REGIONS
    from reclnet.runtime.camera.persons import (
        HogPersonDetector,
        MotionGatedHogDetector,
        hog_detector,
    )

    built = {kind: type(hog_detector(kind, upscale=1.5)) for kind in HOG_REGIONS}
    assert built == {"frame": HogPersonDetector, "motion": MotionGatedHogDetector}
    assert DEFAULT_HOG_REGIONS in HOG_REGIONS
    assert hog_detector("motion", upscale=1.5).hog.upscale == 1.5
    with pytest.raises(ValueError, match=r"unknown HOG regions 'edges'; use one of"):
        hog_detector("edges")
