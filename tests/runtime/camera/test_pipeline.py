"""Pipeline pieces: per-stage timing, the detect-every-n schedule, event JSON objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reclnet.runtime.camera.persons import Detections
from reclnet.runtime.camera.pipeline import DetectAndTrack, StageTimer, _event_dict
from reclnet.runtime.camera.source import Frame
from reclnet.runtime.camera.tracking import PersonTracker


def test_stage_timer_summary_matches_pandas() -> None:
    rng = np.random.default_rng(0)
    timer = StageTimer(["a", "b", "c"])
    table = rng.uniform(0, 0.01, (50, 3))
    for row in table:
        for stage, v in zip("abc", row, strict=True):
            timer.add(stage, float(v) / 2)
            timer.add(stage, float(v) / 2)  # several calls in a frame add up
        timer.end_frame()
    df = pd.DataFrame(table, columns=list("abc"))
    df["total"] = df.sum(axis=1)
    summary = {r["stage"]: r for r in timer.summary()}
    for stage in ["a", "b", "c", "total"]:
        assert summary[stage]["mean_ms"] == pytest.approx(df[stage].mean() * 1e3)
        assert summary[stage]["p50_ms"] == pytest.approx(df[stage].median() * 1e3)
        assert summary[stage]["p99_ms"] == pytest.approx(df[stage].quantile(0.99) * 1e3)
        assert summary[stage]["share"] == pytest.approx(df[stage].sum() / df["total"].sum())
    assert summary["total"]["fps"] == pytest.approx(50 / df["total"].sum())
    assert "50 frames" in timer.format()
    with pytest.raises(KeyError, match="unknown stage"):
        timer.add("zzz", 1.0)


def test_detect_every_n_frames_with_prediction_between() -> None:
    calls: list[int] = []

    def detector(image: np.ndarray) -> Detections:
        calls.append(int(image[0, 0, 0]))
        x = 10.0 + 4 * image[0, 0, 0]
        return Detections(np.array([[x, 20, x + 40, 120]], np.float32), np.ones(1))

    persons = DetectAndTrack(detector, PersonTracker(init_frames=1, max_missed=3), detect_every=3)
    timer = StageTimer()
    seen = []
    for i in range(12):
        image = np.full((200, 300, 3), i, np.uint8)
        tracks = persons(Frame(i, i / 10, image), timer)
        timer.end_frame()
        seen.append(tracks.ids.tolist())
    assert calls == [0, 3, 6, 9]  # the detector ran on every 3rd frame only
    assert all(ids == [1] for ids in seen)  # one person, one id, kept between detections
    with pytest.raises(ValueError):
        DetectAndTrack(detector, PersonTracker(), detect_every=0)


def test_event_json_object_carries_the_tube() -> None:
    from reclnet.runtime.offline.tubes import Tube
    from reclnet.runtime.scorer import Event

    tube = Tube("cam", 1, np.arange(5, 8), np.array([[1, 2, 3, 4]] * 3, np.float32), score=0.5)
    event = Event("end", 7, 1, 5, 7, 3, 0.5, tube)
    d = _event_dict(event, 19, 10.0, ["wave", "jump"])
    assert d["action"] == "jump" and d["frame"] == 19 and d["time"] == 1.9
    assert d["tube"] == [[5, 1.0, 2.0, 3.0, 4.0], [6, 1.0, 2.0, 3.0, 4.0], [7, 1.0, 2.0, 3.0, 4.0]]
    assert d["video"] == "cam"
