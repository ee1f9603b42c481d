"""``reclnet eval``: evaluate detection tubes against ground truth and print / save the results.

Ground truth is a JSON Lines tube file (see :mod:`reclnet.runtime.offline.tubes`), the UCF101-24
annotations pickle (``*.pkl``, split chosen by ``--split``, read with the restricted
unpickler of :mod:`reclnet.runtime.offline.safe_pickle`) or the JHMDB ground-truth zip
(``*.zip``); ``--gt ucf101-24`` and ``--gt jhmdb`` name those files inside the data folder
(``--data``, ``RECLNET_DATA`` or ``../shared/data`` in a source checkout). matplotlib is
imported only for ``--plot``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reclnet.argparsing import ArgumentParser, finite_float

from .tubes import Tube, TubeFormatError, read_tubes
from .video_ap import DEFAULT_THRESHOLDS, PRESETS, VideoAPResult, evaluate_video_ap, frame_ap

__all__ = ["main", "load_ground_truth", "present_classes", "DATASET_FILES"]

#: ``--gt`` names of the datasets in the data folder and their ground-truth files there.
DATASET_FILES: dict[str, str] = {
    "ucf101-24": "ucf101-24/pyannot_with_class_names.pkl",
    "jhmdb": "jhmdb/groundtruths_jhmdb.zip",
}


def load_ground_truth(
    path: Path, *, split: str = "test", class_names: list[str] | None = None
) -> tuple[list[Tube], list[str] | None]:
    """Ground-truth tubes and class names from a ``.pkl``, ``.zip`` or JSON Lines file.

    Parameters
    ----------
    path : Path
        The file; its suffix chooses the format.
    split : str
        UCF101-24 split (``.pkl`` only).
    class_names : list of str, optional
        Names of a JSON Lines file's labels (index = label); its labels must be below
        ``len(class_names)``.

    Returns
    -------
    tubes : list of Tube
    class_names : list of str or None
        The dataset's names; None for JSON Lines without ``class_names`` (the classes
        are then the labels present: see :func:`present_classes`).
    """
    from . import datasets

    if path.suffix == ".pkl":
        gt = datasets.load_ucf101_24(path, split=split)
        return gt.tubes, gt.class_names
    if path.suffix == ".zip":
        gt = datasets.load_jhmdb(path)
        return gt.tubes, gt.class_names
    num = len(class_names) if class_names is not None else None
    tubes = read_tubes(path, num_classes=num, require_score=False)
    return tubes, class_names


def present_classes(
    gt: Sequence[Tube], detections: Sequence[Tube]
) -> tuple[list[Tube], list[Tube], list[str]]:
    """Renumber labels to the classes present, for files that come without class names.

    The classes are the labels found in ``gt`` or ``detections``, named by their label
    number: a file with one label 1,000,000 makes one class, not a million. Every AP
    and mean is the same as with classes ``0..max``: a missing class has no ground
    truth and no detection, so its AP is NaN and left out of every mean.

    Parameters
    ----------
    gt, detections : sequence of Tube

    Returns
    -------
    gt, detections : list of Tube
        The same tubes, labels renumbered ``0..C-1`` in increasing original label.
    class_names : list of str
        C names: the original labels as decimal strings.
    """
    labels = sorted({t.label for t in gt} | {t.label for t in detections})
    index = {label: i for i, label in enumerate(labels)}

    def renumber(tubes: Sequence[Tube]) -> list[Tube]:
        return [
            t if t.label == index[t.label] else dataclasses.replace(t, label=index[t.label])
            for t in tubes
        ]

    return renumber(gt), renumber(detections), [str(label) for label in labels]


def _gt_path(gt: str, data: str | None) -> Path:
    """``--gt``: a file, or a :data:`DATASET_FILES` name resolved in the data folder."""
    path = Path(gt)
    if gt not in DATASET_FILES or path.exists():
        return path
    from .datasets import default_data_dir

    return default_data_dir(data) / DATASET_FILES[gt]


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="reclnet eval",
        description="Video-AP (and frame-AP) of detection tubes against ground-truth tubes.",
    )
    ap.add_argument(
        "--gt",
        required=True,
        help="ground truth: a .jsonl, .pkl or .zip file, or "
        + " / ".join(DATASET_FILES)
        + " (that dataset's file in the data folder)",
    )
    ap.add_argument(
        "--data",
        default=None,
        help="data folder for --gt ucf101-24 / jhmdb (default: $RECLNET_DATA, or "
        "../shared/data in a source checkout)",
    )
    ap.add_argument("--detections", required=True, type=Path, help="detections (.jsonl)")
    ap.add_argument("--preset", default="ucf101-act", choices=sorted(PRESETS))
    ap.add_argument(
        "--thresholds",
        type=finite_float,
        nargs="+",
        default=list(DEFAULT_THRESHOLDS),
        help="spatio-temporal IoU thresholds (default: %(default)s)",
    )
    ap.add_argument("--split", default="test", choices=["test", "train", "all"])
    ap.add_argument("--class-names", type=Path, help="text file, one class name a line")
    ap.add_argument("--frame-ap", action="store_true", help="also report frame-AP@0.5")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--plot", type=Path, help="draw precision/recall curves into this PNG")
    ap.add_argument("--plot-threshold", type=finite_float, default=0.5)
    return ap


def plot_curves(result: VideoAPResult, threshold: float, path: Path) -> None:
    """Precision/recall curve of every class at ``threshold`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    try:
        for c, name in enumerate(result.class_names):
            precision, recall = result.curves[(threshold, c)]
            if result.num_gt[c] == 0:
                continue
            ap = result.class_ap(threshold)[c]
            ax.plot(np.r_[0.0, recall], np.r_[1.0, precision], lw=1, label=f"{name} {100 * ap:.1f}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(
            f"video-AP@{threshold:g} ({result.preset}): mAP {100 * result.mAP(threshold):.1f}"
        )
        ax.legend(fontsize=6, ncol=2, loc="lower left")
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def main(argv: list[str]) -> int:
    """Run ``reclnet eval``; returns 0 on success, 2 on bad input (message on stderr)."""
    args = _parser().parse_args(argv)
    try:
        names = None
        if args.class_names is not None:
            names = [n.strip() for n in args.class_names.read_text().splitlines() if n.strip()]
        gt_path = _gt_path(args.gt, args.data)
        gt, names = load_ground_truth(gt_path, split=args.split, class_names=names)
        if names is None:
            # No names: detection labels must lie in the ground truth's label range, and
            # only the labels present become classes (memory bounded by the files).
            dets = read_tubes(
                args.detections, num_classes=1 + max(t.label for t in gt), require_score=True
            )
            gt, dets, names = present_classes(gt, dets)
        else:
            dets = read_tubes(args.detections, num_classes=len(names), require_score=True)
        result = evaluate_video_ap(
            gt,
            dets,
            num_classes=len(names),
            preset=args.preset,
            thresholds=args.thresholds,
            class_names=names,
        )
        if args.plot is not None and all(
            abs(t - args.plot_threshold) > 1e-9 for t in result.thresholds
        ):
            raise ValueError(f"--plot-threshold {args.plot_threshold} is not among --thresholds")
    except (TubeFormatError, ValueError, OSError) as exc:
        print(f"reclnet eval: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    out = result.to_dict()
    if args.frame_ap:
        fap = frame_ap(gt, dets, num_classes=len(names), preset=args.preset)
        valid = fap[~np.isnan(fap)]
        value = float(valid.mean()) if valid.size else float("nan")
        print(f"frame-mAP@0.5: {100 * value:.2f}")
        out["frame_mAP@0.5"] = None if np.isnan(value) else round(100 * value, 4)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.plot is not None:
        plot_curves(result, args.plot_threshold, args.plot)
    return 0
