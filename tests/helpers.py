"""Shared test helpers: the tiny model configuration, random inputs and synthetic tracks.

Plain functions (no pytest): ``tests/conftest.py`` registers this module as
``reclnet_test_helpers`` so that test files import it by that name, and a test's
child process can load it by path. torch is imported only by :func:`tiny_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig, RecLNetConfig

__all__ = [
    "CONFIG",
    "EXPORT_POSTPROCESS",
    "frame_inputs",
    "make_tracks",
    "random_inputs",
    "tiny_model",
]

#: A two-modality GRU model small enough to export and run in milliseconds.
CONFIG = RecLNetConfig(
    num_actions=4,
    modalities={"rgb": 12, "flow": 10},
    projection_size=16,
    memory_size=8,
    num_layers=2,
)

#: Post-processing defaults stored in the sidecar of the shared export (not the defaults,
#: so that tests can tell that they come from the sidecar).
EXPORT_POSTPROCESS = PostprocessConfig(window=7, threshold=0.3)


def tiny_model(config: RecLNetConfig = CONFIG, seed: int = 0) -> Any:
    """A RecLNet of ``config`` with weights drawn from ``seed``, in eval mode."""
    import torch

    from reclnet.train.model import RecLNet

    torch.manual_seed(seed)
    return RecLNet(config).eval()


def random_inputs(
    n: int, seed: int, config: RecLNetConfig = CONFIG
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features ``{modality: float32[n, D]}`` and states float32 ``[n, S]`` drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    feats = {k: rng.standard_normal((n, d), dtype=np.float32) for k, d in config.modalities.items()}
    state = rng.standard_normal((n, config.state_size), dtype=np.float32) * 0.5
    return feats, state


def make_tracks(seed: int, num: int = 6, span: int = 90, config: RecLNetConfig = CONFIG):
    """Tracks with drifting features (so that scores rise and fall), missed frames and odd ids.

    Returns {id: (frames int64[T], {modality: float32[T, D]}, boxes float32[T, 4])}.
    """
    rng = np.random.default_rng(seed)
    ids = [7, -3, 2**62, 0, 123456789012, -(2**40), 55, 8][:num]
    tracks = {}
    for tid in ids:
        start = int(rng.integers(0, span // 2))
        stop = int(rng.integers(start + 5, span))
        frames = np.arange(start, stop)
        # Drop a few frames (tracker misses), never the first or the last.
        keep = rng.uniform(size=frames.size) > 0.1
        keep[[0, -1]] = True
        frames = frames[keep].astype(np.int64)
        t = frames[:, None].astype(np.float64)
        feats = {}
        for k, d in config.modalities.items():
            phase = rng.uniform(0, 2 * np.pi, d)
            amp = rng.uniform(1, 3, d)
            x = amp * np.sin(t / rng.uniform(4, 12) + phase) + 0.3 * rng.standard_normal(
                (t.size, d)
            )
            feats[k] = x.astype(np.float32)
        xy = 100 + np.cumsum(rng.uniform(-2, 2, (frames.size, 2)), axis=0)
        wh = rng.uniform(20, 60, 2)
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        tracks[tid] = (frames, feats, boxes)
    return tracks


def frame_inputs(tracks, frame: int, modalities: Mapping[str, int]):
    """One frame of :func:`make_tracks`: ids int64 ``[N]``, features, boxes float32 ``[N, 4]``."""
    ids, rows = [], []
    for tid, (frames, _, _) in tracks.items():
        i = np.searchsorted(frames, frame)
        if i < frames.size and frames[i] == frame:
            ids.append(tid)
            rows.append(i)
    feats = {
        k: np.array(
            [tracks[t][1][k][i] for t, i in zip(ids, rows, strict=True)], np.float32
        ).reshape(-1, d)
        for k, d in modalities.items()
    }
    boxes = np.array([tracks[t][2][i] for t, i in zip(ids, rows, strict=True)], np.float32)
    return np.array(ids, np.int64), feats, boxes.reshape(-1, 4)
