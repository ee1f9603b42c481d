"""GRU vs LSTM vs FC on the UCF101-24-timed synthetic set: does recurrence help?

One responsibility: the reproducible experiment behind the paper's claim that
recurrence helps temporal localization, run with one command::

    python -m reclnet.train.compare_cells --out runs/compare

It writes the UCF101-24-timed synthetic dataset (real action timing, see
:mod:`reclnet.train.synthetic`; falls back to the built-in geometry with a
message when ``../shared/data/ucf101-24`` is absent), trains the same two-stream
``fusion_layer`` RecLNet with each cell (same data, seed and schedule), and
reports on the held-out ``test`` videos:

* frame level: frame accuracy, mean per-class accuracy;
* per track, temporal behaviour: every track is cut into segments by
  :func:`reclnet.runtime.offline.localize.localize_track` (median filter + threshold,
  the runtime's defaults), then for every ground-truth action interval of a
  track (a maximal run of one action label) the best temporal IoU of a segment
  of the same class (``tiou``; 0 when none), the share of intervals found with
  tIoU >= 0.5 (``recall@0.5``), the mean start + end boundary error in frames of
  that best segment, and the spurious segments per track (segments overlapping
  no interval of their class); the same class-agnostically (``tiou_any``,
  ``recall_any@0.5``: "some action" scored 1 - background against the runs of
  any action), which separates "when" from "which action";
* label flicker: argmax label changes per 100 frames (ground truth's for
  reference).

Results go to ``<out>/compare.json`` and a table on stdout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.argparsing import ArgumentParser, finite_float, nonnegative_int, positive_int
from reclnet.config import PostprocessConfig
from reclnet.runtime.offline.localize import localize_track
from reclnet.runtime.offline.tube_geometry import temporal_iou
from reclnet.train.checkpoint import load_checkpoint
from reclnet.train.data import LabelledTrack, load_tracks, open_dataset
from reclnet.train.synthetic import (
    FeatureSpec,
    default_ucf_root,
    make_builtin_dataset,
    make_ucf_dataset,
)
from reclnet.train.train import TrainResult, predict_tracks, train

__all__ = ["label_runs", "temporal_metrics", "main"]


def label_runs(labels: np.ndarray, background: int) -> list[tuple[int, int, int]]:
    """Maximal runs of one action label.

    Parameters
    ----------
    labels : np.ndarray
        int64 ``[T]`` per-frame labels, ``background`` = no action.

    Returns
    -------
    list of (label, start, stop)
        Sample indices, ``stop`` exclusive, in order.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [
        (int(labels[a]), int(a), int(b))
        for a, b in zip(starts, stops, strict=True)
        if labels[a] != background
    ]


def temporal_metrics(
    probs: list[np.ndarray],
    tracks: list[LabelledTrack],
    num_actions: int,
    post: PostprocessConfig | None = None,
) -> dict[str, float]:
    """Per-track temporal localization quality (see the module docstring).

    Parameters
    ----------
    probs : list of np.ndarray
        float32 ``[T_i, C + 1]`` per track.
    tracks : list of LabelledTrack
        The same tracks, with their ground-truth labels.
    num_actions : int
        C.
    post : PostprocessConfig, optional
        Median window and threshold (runtime defaults when None).

    Returns
    -------
    dict
        ``tiou``, ``recall@0.5``, ``boundary_error``, ``spurious_per_track``,
        ``flicker_per_100``, ``gt_flicker_per_100``, ``intervals``, ``tiou_any``,
        ``recall_any@0.5``.
    """
    post = post or PostprocessConfig()
    tious, bounds, spurious, flips, gt_flips, frames = [], [], 0, 0, 0, 0
    any_tious: list[float] = []
    for p, track in zip(probs, tracks, strict=True):
        # Class-agnostic: "some action" score = 1 - background, against runs of any action.
        any_segs = localize_track(
            np.ascontiguousarray(1.0 - p[:, num_actions:], dtype=np.float32),
            window=post.window,
            threshold=post.threshold,
            top_k=post.top_k,
            min_length=post.min_length,
        )
        for _, start, stop in label_runs((track.labels < num_actions).astype(np.int64), 0):
            any_tious.append(
                max(
                    (temporal_iou(s.start, s.stop - 1, start, stop - 1) for s in any_segs),
                    default=0.0,
                )
            )
        segs = localize_track(
            np.ascontiguousarray(p[:, :num_actions], dtype=np.float32),
            window=post.window,
            threshold=post.threshold,
            top_k=post.top_k,
            min_length=post.min_length,
        )
        runs = label_runs(track.labels, num_actions)
        for label, start, stop in runs:
            best, err = 0.0, None
            for s in segs:
                if s.label != label:
                    continue
                iou = temporal_iou(s.start, s.stop - 1, start, stop - 1)
                if iou > best:
                    best, err = iou, abs(s.start - start) + abs(s.stop - stop)
            tious.append(best)
            if err is not None:
                bounds.append(err)
        for s in segs:
            hit = any(
                s.label == label and s.start < stop and start < s.stop
                for label, start, stop in runs
            )
            spurious += not hit
        pred = p.argmax(axis=1)
        flips += int(np.count_nonzero(np.diff(pred)))
        gt_flips += int(np.count_nonzero(np.diff(track.labels)))
        frames += len(track)
    tious_a = np.asarray(tious, dtype=np.float64)
    return {
        "tiou": float(tious_a.mean()) if tious else float("nan"),
        "recall@0.5": float((tious_a >= 0.5).mean()) if tious else float("nan"),
        "boundary_error": float(np.mean(bounds)) if bounds else float("nan"),
        "spurious_per_track": spurious / max(len(tracks), 1),
        "flicker_per_100": 100.0 * flips / max(frames, 1),
        "gt_flicker_per_100": 100.0 * gt_flips / max(frames, 1),
        "intervals": len(tious),
        "tiou_any": float(np.mean(any_tious)) if any_tious else float("nan"),
        "recall_any@0.5": float(np.mean(np.asarray(any_tious) >= 0.5))
        if any_tious
        else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; see ``--help``."""
    p = ArgumentParser(
        prog="python -m reclnet.train.compare_cells", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", default="runs/compare_cells")
    p.add_argument("--cells", default="gru,lstm,fc")
    p.add_argument("--max-train", type=nonnegative_int, default=400)
    p.add_argument("--max-test", type=nonnegative_int, default=150)
    p.add_argument("--feature-size", type=positive_int, default=64)
    p.add_argument("--projection-size", type=positive_int, default=64)
    p.add_argument("--memory-size", type=positive_int, default=64)
    p.add_argument("--epochs", type=positive_int, default=8)
    p.add_argument("--fusion-epochs", type=nonnegative_int, default=2)
    p.add_argument("--lr", type=finite_float, default=3e-3)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--ucf-root", default=None)
    p.add_argument(
        "--thresholds",
        default="0.1,0.5",
        help="localization thresholds to report (0.1 is the runtime default)",
    )
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="reuse <out>/data.h5 and <out>/<cell>/model.pt instead of training",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = FeatureSpec(modalities={"rgb": args.feature_size, "flow": args.feature_size})
    root = Path(args.ucf_root) if args.ucf_root else default_ucf_root()
    data = out / "data.h5"
    t0 = time.perf_counter()
    if args.eval_only:
        with open_dataset(data) as ds:
            kind = "ucf101-24" if "test" in ds.splits() else "builtin"
    elif (root / "pyannot_with_class_names.pkl").is_file():
        kind = "ucf101-24"
        make_ucf_dataset(
            data, root, spec=spec, seed=args.seed, max_train=args.max_train, max_test=args.max_test
        )
    else:
        kind = "builtin"
        print(f"UCF101-24 annotations not found under {root}: using the built-in geometry")
        make_builtin_dataset(data, args.max_train + args.max_test, spec=spec, seed=args.seed)
    print(f"dataset ({kind}) ready in {time.perf_counter() - t0:.1f}s: {data}")
    test_tracks, info = load_tracks(data, "test" if kind == "ucf101-24" else "val")
    results: dict[str, Any] = {"dataset": kind, "args": vars(args), "cells": {}}
    thresholds = [float(t) for t in args.thresholds.split(",")]
    for cell in args.cells.split(","):
        if args.eval_only:
            model, payload = load_checkpoint(out / cell / "model.pt")
            res = TrainResult(
                model,
                out / cell / "model.pt",
                payload["metrics"],
                {},
                payload["metrics"]["seconds"],
            )
        else:
            res = train(
                data,
                out / cell,
                cell=cell,
                projection_size=args.projection_size,
                memory_size=args.memory_size,
                epochs=args.epochs,
                fusion_epochs=args.fusion_epochs,
                lr=args.lr,
                threads=args.threads,
                seed=args.seed,
            )
        probs = predict_tracks(res.model, test_tracks)
        row = {
            "train_seconds": res.seconds,
            "frame_accuracy": res.metrics["frame_accuracy"],
            "mean_class_accuracy": res.metrics["mean_class_accuracy"],
            "majority_accuracy": res.metrics["majority_accuracy"],
        }
        for thr in thresholds:
            post = PostprocessConfig(threshold=thr)
            tm = temporal_metrics(probs, test_tracks, info.num_actions, post)
            row.update({k if "flicker" in k else f"{k}@thr{thr:g}": v for k, v in tm.items()})
        results["cells"][cell] = row
        print(f"{cell}: {json.dumps(row)}", flush=True)
    (out / "compare.json").write_text(json.dumps(results, indent=1))
    keys = ["frame_accuracy", "mean_class_accuracy", "flicker_per_100", "train_seconds"]
    for thr in thresholds:
        keys += [
            f"{k}@thr{thr:g}"
            for k in (
                "tiou",
                "recall@0.5",
                "boundary_error",
                "spurious_per_track",
                "tiou_any",
                "recall_any@0.5",
            )
        ]
    print()
    for key in keys:
        print(f"{key:<32}" + "".join(f"{row[key]:>10.3f}" for row in results["cells"].values()))
    print(f"{'cell':<32}" + "".join(f"{c:>10}" for c in results["cells"]))
    gt = next(iter(results["cells"].values()))["gt_flicker_per_100"]
    print(f"(ground-truth flicker per 100 frames: {gt:.3f}; written {out / 'compare.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
