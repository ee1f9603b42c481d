"""`reclnet demo`: a quick-mode run end to end, and its ground-truth matching."""

from __future__ import annotations

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
def test_quick_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reclnet.demo import main

    assert main(["--quick", "--no-video", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5] real-video part skipped"):
        assert step in out
    assert "segments vs ground truth" in out
    assert "fps end to end" in out and "postproc" in out and "step" in out
    assert (tmp_path / "model" / "step.onnx").exists()
    png = (tmp_path / "timeline_synthetic.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000
    assert "demo done" in out
