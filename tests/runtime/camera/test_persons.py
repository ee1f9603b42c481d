"""Person detectors (HOG, user ONNX) and the norfair tracker on hand-made and real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reclnet.paths import vtest_video
from reclnet.runtime.camera.persons import Detections, HogPersonDetector, OnnxPersonDetector
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
