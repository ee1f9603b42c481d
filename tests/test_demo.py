"""`reclnet demo`: a quick-mode run from pixels to video-mAP, and its ground-truth matching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reclnet.demo import match_events, temporal_iou


def test_temporal_iou_against_sets() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        a0, b0 = rng.integers(0, 30, 2)
        a = (int(a0), int(a0 + rng.integers(0, 20)))
        b = (int(b0), int(b0 + rng.integers(0, 20)))
        sa, sb = set(range(a[0], a[1] + 1)), set(range(b[0], b[1] + 1))
        assert temporal_iou(a, b) == pytest.approx(len(sa & sb) / len(sa | sb))


def test_match_events_hand_case() -> None:
    truth = [(1, 0, 10, 30), (1, 2, 50, 60), (2, 0, 0, 20)]
    segments = [
        (1, 0, 12, 30, 0.9),  # right
        (1, 0, 10, 29, 0.5),  # duplicate of the same truth: false positive
        (1, 1, 50, 60, 0.8),  # wrong action
        (2, 0, 15, 40, 0.7),  # IoU 6/41 < 0.5
        (1, 2, 52, 61, 0.6),  # right
    ]
    assert match_events(segments, truth) == (2, 5, 3)


@pytest.mark.slow
def test_quick_demo_runs_from_pixels_to_video_map(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reclnet.demo import main

    assert main(["--quick", "--no-video", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for step in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6] real-video part skipped"):
        assert step in out
    # Pixels in: the rendered videos, the extracted dataset, the model with its feature networks.
    assert len(list((tmp_path / "rendered" / "videos").glob("*.mp4"))) == 4
    from reclnet.train.data import open_dataset

    with open_dataset(tmp_path / "train.h5") as ds:
        assert set(ds.modalities) == {"rgb", "flow"} and len(ds) == 3
    for name in ("step.onnx", "features_rgb.onnx", "features_flow.onnx"):
        assert (tmp_path / "model" / name).exists()
    # Events out, an overlay video, and reclnet eval's table at 0.2 and 0.5.
    assert list((tmp_path / "events").glob("*.jsonl"))
    assert (tmp_path / "rendered_overlay.mp4").stat().st_size > 10_000
    assert "video-AP" in out and "mAP" in out
    assert "segments vs ground truth" in out
    assert "fps end to end" in out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert set(result["thresholds"]) == {0.2, 0.5}
    assert "demo done" in out and "video-mAP@0.5" in out
