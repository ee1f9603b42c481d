"""The timeline plot: each track's action score curves with its segments (like the paper's Figure 3).

:class:`ScoreHistory` keeps every track's per-frame probabilities while a stream
runs (bounded per track); :func:`plot_timeline` draws one panel per track: the
curves of its best-scoring actions over time, the detection threshold, its
localized segments as bars under the x-axis and a vertical line at its
maximum response. matplotlib's non-interactive Agg backend is used, so no
display is needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class ScoreHistory:
    """Per-track probabilities over time.

    Parameters
    ----------
    max_frames_per_track : int
        Only the latest this many samples of a track are kept (bounded memory
        on endless streams).
    max_tracks : int
        Only the latest this many tracks are kept.
    """

    def __init__(self, *, max_frames_per_track: int = 10_000, max_tracks: int = 1_000) -> None:
        self.max_frames_per_track = int(max_frames_per_track)
        self.max_tracks = int(max_tracks)
        self._data: dict[int, deque[tuple[int, np.ndarray]]] = {}

    def add(self, frame: int, track_ids: np.ndarray, probs: np.ndarray) -> None:
        """Record one frame: ``track_ids`` int64 ``[N]``, ``probs`` float32 ``[N, C+1]``."""
        track_ids = np.asarray(track_ids, np.int64).reshape(-1)
        probs = np.asarray(probs, np.float32)
        if probs.ndim != 2 or probs.shape[0] != track_ids.shape[0]:
            raise ValueError(
                f"ScoreHistory.add: probs must be [N, C+1] with N = {track_ids.shape[0]}, "
                f"got {list(probs.shape)}"
            )
        for tid, row in zip(track_ids.tolist(), probs, strict=True):
            samples = self._data.get(tid)
            if samples is None:
                if len(self._data) >= self.max_tracks:
                    self._data.pop(next(iter(self._data)))
                samples = self._data[tid] = deque(maxlen=self.max_frames_per_track)
            samples.append((int(frame), row.copy()))

    @property
    def track_ids(self) -> list[int]:
        return list(self._data)

    def track(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(frames int64[T], probs float32[T, C+1])`` of one track."""
        samples = self._data[int(track_id)]
        frames = np.fromiter((f for f, _ in samples), np.int64, len(samples))
        return frames, np.stack([p for _, p in samples])


def _event_field(event: Any, name: str) -> Any:
    return event[name] if isinstance(event, Mapping) else getattr(event, name)


def segments_from_events(events: Iterable[Any]) -> dict[int, list[tuple[int, int, int, float]]]:
    """``track_id -> [(label, first_frame, last_frame, score), ...]`` from END events.

    A START without a matching END (a stream cut short) counts up to its
    ``last_frame``. Events are :class:`reclnet.runtime.scorer.Event` objects
    or their JSON dicts (``kind``, ``track_id``, ``label``, ``first_frame``,
    ``last_frame``, ``score``).
    """
    ended: dict[tuple[int, int, int], tuple[int, float]] = {}
    started: dict[tuple[int, int, int], tuple[int, float]] = {}
    for event in events:
        key = (
            int(_event_field(event, "track_id")),
            int(_event_field(event, "label")),
            int(_event_field(event, "first_frame")),
        )
        value = (int(_event_field(event, "last_frame")), float(_event_field(event, "score")))
        (ended if _event_field(event, "kind") == "end" else started)[key] = value
    out: dict[int, list[tuple[int, int, int, float]]] = {}
    for key, (last, score) in {**started, **ended}.items():
        out.setdefault(key[0], []).append((key[1], key[2], last, score))
    for segments in out.values():
        segments.sort(key=lambda s: s[1])
    return out


def plot_timeline(
    history: ScoreHistory,
    path: str | Path,
    class_names: Sequence[str],
    *,
    events: Iterable[Any] = (),
    threshold: float | None = None,
    max_tracks: int = 8,
    top_classes: int = 2,
    fps: float | None = None,
    title: str | None = None,
    ground_truth: Mapping[int, Sequence[tuple[int, int, int]]] | None = None,
) -> Path:
    """Plot each track's score curves and segments to a PNG.

    Parameters
    ----------
    history : ScoreHistory
        The recorded probabilities.
    path : str or Path
        Output image (PNG).
    class_names : sequence of str
        The C action names.
    events : iterable
        The run's events (objects or JSON dicts): segments are drawn as bars
        under the x-axis; tracks with segments are plotted first.
    threshold : float, optional
        Drawn as a dashed horizontal line.
    max_tracks : int
        Panels (tracks with segments first, then by peak score, then longest).
    top_classes : int
        Curves per track: its actions with the highest peak probability.
    fps : float, optional
        Label the x-axis in seconds as well.
    title : str, optional
        Figure title.
    ground_truth : dict, optional
        ``track_id -> [(label, first_frame, last_frame), ...]``: the true
        action intervals, drawn as black bars under the segments (blue in the
        paper's Figure 3).

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    c = len(class_names)
    segments = segments_from_events(events)
    tracks = []
    for tid in history.track_ids:
        frames, probs = history.track(tid)
        peak = float(probs[:, :c].max()) if c and len(frames) else 0.0
        tracks.append((tid in segments, peak, len(frames), tid, frames, probs))
    tracks.sort(key=lambda t: (not t[0], -t[1], -t[2], t[3]))
    tracks = tracks[: max(1, int(max_tracks))]
    n = max(1, len(tracks))
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n + 0.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (_, _, _, tid, frames, probs) in zip(axes[:, 0], tracks, strict=False):
        peaks = probs[:, :c].max(axis=0) if c else np.zeros(0)
        chosen = [int(k) for k in np.argsort(-peaks)[: max(1, int(top_classes))]]
        extra = {s[0] for s in segments.get(tid, [])}
        extra |= {g[0] for g in (ground_truth or {}).get(tid, [])}
        for label in sorted(extra - set(chosen)):
            chosen.append(label)
        for label in chosen:
            color = cmap(label % 10)
            ax.plot(frames, probs[:, label], color=color, lw=1.6, label=class_names[label])
        if threshold is not None:
            ax.axhline(threshold, color="0.5", ls="--", lw=0.8)
        for label, first, last, score in segments.get(tid, []):
            color = cmap(label % 10)
            ax.plot([first, last], [-0.07, -0.07], color=color, lw=5, solid_capstyle="butt")
            ax.text(first, -0.2, f"{class_names[label]} {score:.2f}", fontsize=7, color=color)
        for label, first, last in (ground_truth or {}).get(tid, []):
            ax.plot([first, last], [-0.14, -0.14], color="black", lw=5, solid_capstyle="butt")
            ax.text(last, -0.17, f" true: {class_names[label]}", fontsize=7, color="black")
        if c and len(frames):
            best = np.unravel_index(int(np.argmax(probs[:, :c])), (len(frames), c))
            ax.axvline(frames[best[0]], color="gold", lw=1.2)
        ax.set_ylim(-0.25, 1.02)
        ax.set_ylabel(f"track {tid}")
        ax.legend(loc="upper right", fontsize=7, ncol=len(chosen))
        ax.grid(alpha=0.3)
    if not tracks:
        axes[0, 0].text(0.5, 0.5, "no tracks", ha="center", va="center")
    xlabel = "frame" if not fps else f"frame ({fps:g} fps)"
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(
        title or "action scores per track (bars: localized segments; black: ground truth)",
        fontsize=10,
    )
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        # Also when the write fails (full disk): pyplot would keep the figure forever.
        plt.close(fig)
    return path
