"""Overlay drawing, the video writer and the timeline plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.render import VideoWriter, draw_overlay, track_color
from reclnet.runtime.camera.source import open_source
from reclnet.runtime.camera.timeline import ScoreHistory, plot_timeline, segments_from_events

NAMES = ["wave", "jump", "run"]


def test_overlay_draws_boxes_in_track_colours() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.2, 0.1, 0.1, 0.6]], np.float32)
    out = draw_overlay(
        image,
        np.array([3, 4]),
        np.array([[20, 40, 80, 160], [150, 30, 220, 150]], np.float32),
        probs,
        NAMES,
        open_segments={3: [(1, 12, 0.71)]},
        frame=17,
        status="5.0 fps",
    )
    assert image.max() == 0  # the input is not modified
    assert tuple(out[100, 20]) == track_color(3)  # left edge of track 3's box
    assert tuple(out[100, 220]) == track_color(4)
    # track 3 has an open segment: its box is drawn thicker
    assert tuple(out[100, 21]) == track_color(3) and tuple(out[100, 218]) != track_color(4)
    with pytest.raises(ValueError):
        draw_overlay(image, np.array([1, 2]), np.zeros((1, 4)), None, NAMES)


@pytest.mark.parametrize(("codec", "suffix"), [(None, ".mp4"), ("mpeg4", ".avi")])
def test_video_writer_round_trip(tmp_path: Path, codec: str | None, suffix: str) -> None:
    path = tmp_path / f"v{suffix}"
    with VideoWriter(path, 10, 101, 75, codec=codec) as writer:  # odd size: padded
        for i in range(12):
            writer.write(np.full((75, 101, 3), 20 * i, np.uint8))
        with pytest.raises(ValueError, match="expected uint8"):
            writer.write(np.zeros((75, 100, 3), np.uint8))
    with open_source(path) as source:
        frames = [f.image for f in source]
    assert len(frames) == 12
    assert abs(int(frames[5][30, 50, 0]) - 100) <= 8  # YUV 4:2:0 limited range


def test_segments_from_events_prefers_end_over_start() -> None:
    events = [
        {
            "kind": "start",
            "track_id": 1,
            "label": 2,
            "first_frame": 5,
            "last_frame": 7,
            "score": 0.3,
        },
        {
            "kind": "end",
            "track_id": 1,
            "label": 2,
            "first_frame": 5,
            "last_frame": 20,
            "score": 0.6,
        },
        {
            "kind": "start",
            "track_id": 2,
            "label": 0,
            "first_frame": 9,
            "last_frame": 9,
            "score": 0.4,
        },
    ]
    assert segments_from_events(events) == {1: [(2, 5, 20, 0.6)], 2: [(0, 9, 9, 0.4)]}


def test_history_is_bounded_and_timeline_written(tmp_path: Path) -> None:
    history = ScoreHistory(max_frames_per_track=50, max_tracks=3)
    rng = np.random.default_rng(0)
    for frame in range(80):
        ids = np.array([1, 2]) if frame < 60 else np.array([2, 3, 4])
        probs = rng.dirichlet(np.ones(4), len(ids)).astype(np.float32)
        history.add(frame, ids, probs)
    assert history.track_ids == [2, 3, 4]  # the oldest track was dropped
    frames, probs = history.track(2)
    assert frames.tolist() == list(range(30, 80)) and probs.shape == (50, 4)
    with pytest.raises(ValueError, match=r"\[N, C\+1\]"):
        history.add(81, np.array([1, 2]), np.zeros((3, 4), np.float32))
    events = [
        {
            "kind": "end",
            "track_id": 2,
            "label": 1,
            "first_frame": 40,
            "last_frame": 55,
            "score": 0.5,
        }
    ]
    out = plot_timeline(history, tmp_path / "t.png", NAMES, events=events, threshold=0.3, fps=10)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
