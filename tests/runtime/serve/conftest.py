"""Fixtures of the ``reclnet serve`` tests: a tiny exported model, synthetic scenes, a Ray cluster.

The model with feature networks is tests/conftest.py's ``model_dir``. A scene is a small video with its MOTChallenge
tracks file, so runs take seconds: ``scenes`` are 160x120 clips of
rectangles walking in and out (the worker and CLI tests, fast),
``action_scenes`` rendered action videos (``reclnet synth --kind video``:
320x240, figures that walk, idle and act, with the tracks a tracker would
write) for the tests on a Ray cluster.
The Ray cluster (``ray_cluster``) is a real local one with 2 CPUs, started
once for the module that asks for it; without Ray installed those tests skip.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def write_scene(folder: Path, name: str, frames: int, seed: int) -> tuple[Path, Path]:
    """A 160x120 clip of ``frames`` frames with 3 people entering and leaving, and its tracks.

    Returns ``(video, tracks)``.
    """
    from reclnet.runtime.camera.persons import write_mot
    from reclnet.runtime.camera.render import VideoWriter

    rng = np.random.default_rng(seed)
    people = []
    for pid in range(1, 4):
        start = int(rng.integers(0, frames // 2))
        length = int(rng.integers(frames // 4, frames - start + 1))
        x0, speed = float(rng.uniform(5, 90)), float(rng.uniform(-1.5, 1.5))
        people.append((pid, start, start + length, x0, speed, int(rng.integers(80, 250))))
    rows = []
    video = folder / f"{name}.avi"
    with VideoWriter(video, 10, 160, 120, codec="mpeg4") as writer:
        for f in range(frames):
            img = np.full((120, 160, 3), 50, np.uint8)
            img[:, :, 1] = (np.arange(160) // 2 + f) % 256  # some texture that moves
            for pid, a, b, x0, speed, color in people:
                if a <= f < b:
                    x = float(np.clip(x0 + speed * (f - a), 0, 125))
                    img[25:105, int(x) : int(x) + 30] = color
                    rows.append((f, pid, (x, 25.0, x + 30.0, 105.0)))
            writer.write(img)
    tracks = folder / f"{name}.txt"
    write_mot(
        tracks,
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], np.float64),
    )
    return video, tracks


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Three scenes ``cam0..cam2`` (60, 50 and 70 frames)."""
    folder = tmp_path_factory.mktemp("scenes")
    return {
        f"cam{i}": write_scene(folder, f"cam{i}", n, seed=10 + i)
        for i, n in enumerate((60, 50, 70))
    }


@pytest.fixture(scope="session")
def action_scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Three rendered action videos ``cam0..cam2`` (60, 50 and 70 frames) with their MOT tracks."""
    pytest.importorskip("cv2")
    from reclnet.train.rendered_videos import render_set

    folder = tmp_path_factory.mktemp("action_scenes")
    out = {}
    for i, n in enumerate((60, 50, 70)):
        rendered = render_set(folder / f"cam{i}", videos=1, frames=(n, n), seed=20 + i)
        (video,) = rendered.videos
        assert video.num_frames == n
        out[f"cam{i}"] = (
            rendered.root / "videos" / f"{video.name}.mp4",
            rendered.root / "tracks" / f"{video.name}.txt",
        )
    return out


def serve_config(
    tmp: Path, model_dir: Path, scenes: dict[str, tuple[Path, Path]], **top: Any
) -> dict[str, Any]:
    """A configuration mapping for ``scenes`` writing under ``tmp``."""
    config: dict[str, Any] = {
        "state_dir": str(tmp / "state"),
        "sink": {"dir": str(tmp / "events"), "queue": 8},
        "snapshot_every": 16,
        "defaults": {"model": str(model_dir), "threshold": 0.2, "lookahead": 2, "threads": 1},
        "cameras": [
            {"name": name, "source": str(video), "tracks": str(tracks)}
            for name, (video, tracks) in scenes.items()
        ],
        "poll_seconds": 0.2,
    }
    config.update(top)
    return config


# Test files import the helpers as `from reclnet_serve_fixtures import serve_config`
# (--import-mode=importlib puts no test folder on sys.path).
sys.modules.setdefault("reclnet_serve_fixtures", sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """A real local Ray cluster (2 CPUs), shut down after the module."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("yaml") is None:
        pytest.skip("Ray is not installed (pip install 'reclnet[cluster]')")
    import warnings

    import ray

    with warnings.catch_warnings():
        # Ray Serve's own models use deprecated pydantic v1 idioms when imported; not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray.serve  # noqa: F401

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
