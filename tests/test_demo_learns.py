"""`reclnet demo`'s pixel pipeline learns: a small run scores far above chance on held-out videos."""

from __future__ import annotations

from pathlib import Path

import pytest

# Calibration (2 shared cores, load average ~3-4 from other jobs, so times are inflated):
# pixel_pipeline(videos=20, frames=(60, 90), feature_size=None, feature_scale=1.0,
# lookahead=12, workers=2), GRU 64/64, epochs=12, fusion_epochs=3, lr=3e-3, batch_tracks=16.
# 20 videos -> 5 held out. Training is deterministic for a seed (same figures twice).
#   render seed / train seed   mAP@0.5, DIS medium (default)   DIS fast (--flow-preset fast)
#   0 / 0                      0.467                           0.306
#   1 / 0                      0.448                           0.532
#   2 / 0                      0.604                           0.479
#   3 / 1                      0.800                           -
#   0 / 0, cell="fc"           0.333                           -
# (Full demo, 32 videos, 25/6 epochs, medium: 0.59 / 0.56 / 0.87 over training seeds 0/1/2.)
# The bound is below half of the worst GRU run (0.448). A model that has not learned the
# actions scores ~0: a segment counts only with the right action on the right track and
# temporal IoU >= 0.5. With 5 held-out videos one video's AP moves the mean by 0.2, so the
# bound claims "learns", not "beats the FC cell" (0.333 here, too close to tell apart).
MAP_BOUND = 0.2


@pytest.mark.slow
def test_pixel_pipeline_learns_on_held_out_videos(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reclnet.demo import pixel_pipeline

    train_options = dict(
        cell="gru",
        projection_size=64,
        memory_size=64,
        epochs=12,
        fusion_epochs=3,
        lr=3e-3,
        batch_tracks=16,
        seed=0,
        threads=2,
    )
    figures = pixel_pipeline(
        tmp_path,
        videos=20,
        frames=(60, 90),
        feature_size=None,
        train_options=train_options,
        lookahead=12,
        workers=2,
        seed=0,
        feature_scale=1.0,
        say=lambda s: None,
    )
    map50 = figures["mAP"][0.5]
    assert 0.0 <= map50 <= 1.0
    assert map50 >= MAP_BOUND, f"video-mAP@0.5 {map50:.3f} < {MAP_BOUND} on held-out videos"
