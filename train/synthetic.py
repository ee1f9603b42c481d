"""Synthetic track-feature datasets where temporal context decides the label.

One responsibility: generate ``reclnet-tracks/1`` datasets (see
:mod:`reclnet.train.data`) whose per-frame labels can only be recovered well by
looking at a track over time, so that the paper's claim (recurrence helps
temporal localization) can be tested without real features.

Two geometries, one feature model:

* ``builtin`` (:func:`builtin_videos`): small and fast random geometry, persons
  as random-walk boxes, some of them performing one action over a random part of
  the video, others (distractors) never acting. The default of ``make demo`` and
  of the tests.
* ``ucf101-24`` (:func:`ucf_videos`): the real UCF101-24 ground-truth tubes
  (``pyannot_with_class_names.pkl``) give the real action timing: each tube
  becomes a person track over its whole video (boxes jittered, extended before
  and after the tube by a drifting copy of its first/last box), plus distractor
  tracks that never act. A third of the tubes cover less than half of their
  video, so temporal localization matters.

Feature model (:class:`FeatureSpec`, :func:`paint_features`): every frame's
label comes from :func:`reclnet.train.data.assign_labels`. An action segment of
class c is split into an onset (first quarter), a middle and an offset (last
quarter). Each class has its own onset and offset prototypes per modality, but the
middle prototype is SHARED by the class pair (c, c xor 1): in the middle of an
action, only the memory of its onset (or the upcoming offset) tells the class.
An action frame shows its phase's prototype only with probability
``emit_action`` (otherwise it is noise alone), and background frames show the
prototype of a random class and phase with probability ``emit_background`` (they
resemble isolated action frames). Gaussian noise of the prototype's size is
added everywhere, plus a per-track appearance offset. So a single frame is
ambiguous; the density and order of emissions over time decide.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reclnet.argparsing import ArgumentParser, finite_float, nonnegative_int, positive_int
from reclnet.paths import ENV_VAR, data_dir
from reclnet.runtime.offline import safe_pickle
from reclnet.runtime.offline.tubes import Tube
from reclnet.train.data import Track, Video, assign_labels, write_dataset

__all__ = [
    "FeatureSpec",
    "paint_features",
    "builtin_videos",
    "ucf_videos",
    "make_builtin_dataset",
    "make_ucf_dataset",
    "default_ucf_root",
    "main",
]

FRAME_W, FRAME_H = 320.0, 240.0


def default_ucf_root(data: str | os.PathLike | None = None) -> Path:
    """``ucf101-24/`` inside the data folder of :func:`reclnet.paths.data_dir`.

    Parameters
    ----------
    data : path-like, optional
        A ``--data`` flag's value (else ``$RECLNET_DATA``, else ``../shared/data`` in a
        source checkout).

    Raises
    ------
    FileNotFoundError
        In an installed package with neither ``data`` nor ``RECLNET_DATA``.
    """
    base = data_dir(data)
    if base is None:
        raise FileNotFoundError(
            f"no data folder for UCF101-24: pass --data DIR (or --ucf-root) or set {ENV_VAR}"
        )
    return base / "ucf101-24"


@dataclass(frozen=True)
class FeatureSpec:
    """Parameters of the synthetic feature model (see the module docstring).

    Attributes
    ----------
    modalities : dict[str, int]
        Feature size per modality (64 by default; 4096 is the paper's FC7 size).
    emit_action : float
        Probability that an action frame shows its phase's prototype.
    emit_background : float
        Probability that a background frame shows a random action prototype.
    amplitude : float
        Euclidean norm of every prototype. Projected on a prototype's direction
        the noise has std ``noise``, so one emission is ``amplitude / noise``
        standard deviations strong, while the noise's total norm is about
        ``noise * sqrt(D)``: detectable, but not reliably told from the other
        prototypes and from background emissions in a single frame.
    noise : float
        Gaussian noise std per feature dimension.
    appearance : float
        Std of a per-track constant offset (same track, same look).
    onset_fraction, offset_fraction : float
        Share of a segment taken by its onset and offset phases (each at least
        one frame).
    dtype : str
        ``"float16"`` or ``"float32"`` storage.
    """

    modalities: dict[str, int] = field(default_factory=lambda: {"rgb": 64, "flow": 64})
    emit_action: float = 0.6
    emit_background: float = 0.12
    amplitude: float = 4.0
    noise: float = 1.0
    appearance: float = 0.3
    onset_fraction: float = 0.25
    offset_fraction: float = 0.25
    dtype: str = "float16"

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", {str(k): int(v) for k, v in self.modalities.items()})
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"FeatureSpec.dtype must be float16 or float32, got {self.dtype!r}")
        for name in ("emit_action", "emit_background", "onset_fraction", "offset_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FeatureSpec.{name} must be in [0, 1]")


def _prototypes(
    num_actions: int, size: int, amplitude: float, rng: np.random.Generator
) -> np.ndarray:
    """float32 ``[3 * C, D]`` prototypes: rows ``3c`` onset, ``3c+1`` middle, ``3c+2`` offset.

    The middle row of c equals the middle row of its pair partner c xor 1.
    """
    protos = rng.standard_normal((3 * num_actions, size))
    protos *= amplitude / np.linalg.norm(protos, axis=1, keepdims=True)
    for c in range(num_actions):
        partner = c ^ 1
        if partner < num_actions and partner < c:
            protos[3 * c + 1] = protos[3 * partner + 1]
    return protos.astype(np.float32)


def paint_features(
    label_tracks: Sequence[np.ndarray],
    num_actions: int,
    spec: FeatureSpec,
    rng: np.random.Generator,
    prototypes: dict[str, np.ndarray] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Draw per-frame features for tracks with the given per-frame labels.

    Parameters
    ----------
    label_tracks : sequence of np.ndarray
        int64 ``[T_i]`` labels per track, ``num_actions`` = background.
    num_actions : int
        C.
    spec : FeatureSpec
    rng : np.random.Generator
    prototypes : dict[str, np.ndarray], optional
        float32 ``[3 C, D]`` per modality (drawn from ``rng`` when None; pass the
        same ones to make several datasets of one "world").

    Returns
    -------
    list[dict[str, np.ndarray]]
        Per track, ``{modality: [T_i, D]}`` in ``spec.dtype``.
    """
    lengths = np.array([len(x) for x in label_tracks], dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return [{s: np.zeros((0, d), spec.dtype) for s, d in spec.modalities.items()}] * len(
            lengths
        )
    labels = np.concatenate([np.asarray(x, dtype=np.int64) for x in label_tracks])
    track_of = np.repeat(np.arange(len(lengths)), lengths)
    # Segments: maximal runs of one label inside one track.
    new_run = np.ones(total, dtype=bool)
    new_run[1:] = (labels[1:] != labels[:-1]) | (track_of[1:] != track_of[:-1])
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, total))
    pos = np.arange(total) - run_start[run_id]
    length = run_len[run_id]
    onset = np.maximum(1, np.floor(spec.onset_fraction * length))
    offset = np.maximum(1, np.floor(spec.offset_fraction * length))
    phase = np.where(pos < onset, 0, np.where(pos >= length - offset, 2, 1))
    is_action = labels < num_actions
    # Which prototype each frame shows (-1: none).
    proto_idx = np.full(total, -1, dtype=np.int64)
    emit = rng.random(total)
    act = is_action & (emit < spec.emit_action)
    proto_idx[act] = 3 * labels[act] + phase[act]
    bg = ~is_action & (emit < spec.emit_background)
    proto_idx[bg] = rng.integers(0, 3 * num_actions, size=int(bg.sum()))
    out_modalities: dict[str, np.ndarray] = {}
    for name, size in spec.modalities.items():
        protos = (
            prototypes[name]
            if prototypes is not None
            else _prototypes(num_actions, size, spec.amplitude, rng)
        )
        x = rng.standard_normal((total, size), dtype=np.float32)
        x *= spec.noise
        look = rng.standard_normal((len(lengths), size), dtype=np.float32) * spec.appearance
        x += look[track_of]
        shown = proto_idx >= 0
        x[shown] += protos[proto_idx[shown]]
        out_modalities[name] = x.astype(spec.dtype)
    bounds = np.cumsum(lengths)[:-1]
    per_modality = {s: np.split(x, bounds) for s, x in out_modalities.items()}
    return [{s: per_modality[s][i] for s in spec.modalities} for i in range(len(lengths))]


def make_prototypes(num_actions: int, spec: FeatureSpec, seed: int) -> dict[str, np.ndarray]:
    """The prototypes of one synthetic "world" (float32 ``[3 C, D]`` per modality)."""
    rng = np.random.default_rng([seed, 7919])
    return {s: _prototypes(num_actions, d, spec.amplitude, rng) for s, d in spec.modalities.items()}


# ------------------------------------------------------------------ geometry
def _random_walk_boxes(
    n: int, rng: np.random.Generator, size: tuple[float, float] | None = None
) -> np.ndarray:
    """float32 ``[n, 4]`` boxes of a person drifting across a 320x240 frame."""
    w, h = size if size is not None else (rng.uniform(30, 70), rng.uniform(70, 150))
    cx0, cy0 = rng.uniform(w / 2, FRAME_W - w / 2), rng.uniform(h / 2, FRAME_H - h / 2)
    v = rng.normal(0.0, 0.8, size=(n, 2)).cumsum(axis=0) * 0.3 + rng.normal(0, 0.5, size=2)
    c = np.array([cx0, cy0]) + np.cumsum(v, axis=0) * 0.2
    c[:, 0] = np.clip(c[:, 0], w / 2, FRAME_W - w / 2)
    c[:, 1] = np.clip(c[:, 1], h / 2, FRAME_H - h / 2)
    return np.stack(
        [c[:, 0] - w / 2, c[:, 1] - h / 2, c[:, 0] + w / 2, c[:, 1] + h / 2], axis=1
    ).astype(np.float32)


def _jitter(boxes: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Boxes with Gaussian corner noise proportional to their size (x1 <= x2 kept)."""
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    out = boxes + rng.normal(0.0, scale, size=boxes.shape) * np.maximum(wh, 1.0)
    x1, x2 = np.minimum(out[:, 0], out[:, 2]), np.maximum(out[:, 0], out[:, 2])
    y1, y2 = np.minimum(out[:, 1], out[:, 3]), np.maximum(out[:, 1], out[:, 3])
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def _finish_video(
    name: str,
    num_frames: int,
    split: str,
    tubes: list[Tube],
    track_boxes: list[tuple[np.ndarray, np.ndarray]],
    num_actions: int,
    spec: FeatureSpec,
    prototypes: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> Video:
    labels = [assign_labels(f, b, tubes, 0.3, num_actions=num_actions) for f, b in track_boxes]
    feats = paint_features(labels, num_actions, spec, rng, prototypes)
    tracks = [
        Track(i, f.astype(np.int64), b, x)
        for i, ((f, b), x) in enumerate(zip(track_boxes, feats, strict=True))
    ]
    return Video(name, num_frames, tracks, tubes, split)


def builtin_videos(
    num_videos: int = 80,
    *,
    num_actions: int = 5,
    spec: FeatureSpec | None = None,
    frames: tuple[int, int] = (40, 120),
    val_fraction: float = 0.25,
    seed: int = 0,
) -> list[Video]:
    """The built-in random-geometry synthetic videos (fast; the demo and test default).

    Every video has 1-3 persons; each person is, with probability 0.7, an actor
    performing one random action over a random interval of 25-85% of the video
    (one ground-truth tube), otherwise a distractor. Each person yields one
    track over the whole video with jittered boxes.

    Parameters
    ----------
    num_videos : int
    num_actions : int
        C.
    spec : FeatureSpec, optional
    frames : (int, int)
        Range of video lengths (inclusive).
    val_fraction : float
        Share of videos tagged ``"val"`` (the rest ``"train"``).
    seed : int

    Returns
    -------
    list[Video]
    """
    spec = spec or FeatureSpec()
    rng = np.random.default_rng(seed)
    protos = make_prototypes(num_actions, spec, seed)
    n_val = int(round(val_fraction * num_videos))
    videos = []
    for v in range(num_videos):
        n = int(rng.integers(frames[0], frames[1] + 1))
        name = f"synthetic/video_{v:05d}"
        tubes, tracks = [], []
        for _ in range(int(rng.integers(1, 4))):
            boxes = _random_walk_boxes(n, rng)
            all_frames = np.arange(n, dtype=np.int64)
            if rng.random() < 0.7:
                length = max(3, int(n * rng.uniform(0.25, 0.85)))
                start = int(rng.integers(0, n - length + 1))
                sl = slice(start, start + length)
                tubes.append(
                    Tube(name, int(rng.integers(0, num_actions)), all_frames[sl], boxes[sl])
                )
            tracks.append((all_frames, _jitter(boxes, rng, 0.03)))
        split = "val" if v >= num_videos - n_val else "train"
        videos.append(_finish_video(name, n, split, tubes, tracks, num_actions, spec, protos, rng))
    return videos


def _load_ucf(root: Path) -> tuple[dict, set[str]]:
    pkl = root / "pyannot_with_class_names.pkl"
    if not pkl.is_file():
        raise FileNotFoundError(f"UCF101-24 annotations not found: {pkl}")
    # Restricted unpickler: the annotations file holds data only, and is refused otherwise.
    data = safe_pickle.load(pkl)
    if not isinstance(data, dict) or not {"classes", "trainvideos", "db"} <= set(data):
        raise ValueError(f"{pkl}: expected a dict with 'classes', 'trainvideos' and 'db'")
    test_list = root / "testlist01.txt"
    test = set(test_list.read_text().split()) if test_list.is_file() else set()
    return data, test


def ucf_videos(
    root: str | os.PathLike | None = None,
    *,
    max_train: int | None = 400,
    max_test: int | None = 150,
    spec: FeatureSpec | None = None,
    distractors: float = 1.0,
    seed: int = 0,
) -> tuple[list[Video], list[str]]:
    """Synthetic videos with the real UCF101-24 action timing and boxes.

    Each ground-truth tube becomes a person track over its whole video: the
    tube's boxes (x y w h converted to x1 y1 x2 y2) inside the tube, a drifting
    copy of its first/last box before/after, all jittered. Each video gets on
    average ``distractors`` extra tracks that never act. Videos of
    ``trainvideos`` are tagged ``"train"``, those of ``testlist01.txt``
    ``"test"``.

    Parameters
    ----------
    root : path-like, optional
        Folder with ``pyannot_with_class_names.pkl`` (default
        :func:`default_ucf_root`).
    max_train, max_test : int or None
        Random subsets of that many train / test videos (all when None).
    spec : FeatureSpec, optional
    distractors : float
        Mean number of distractor tracks per video (Poisson).
    seed : int

    Returns
    -------
    videos : list[Video]
    class_names : list[str]
    """
    spec = spec or FeatureSpec()
    data, test_names = _load_ucf(Path(root) if root is not None else default_ucf_root())
    classes = list(data["classes"])
    num_actions = len(classes)
    rng = np.random.default_rng(seed)
    protos = make_prototypes(num_actions, spec, seed)
    db = data["db"]
    train_names = sorted(n for n in data["trainvideos"] if n in db and db[n]["annotations"])
    test_sel = sorted(n for n in test_names if n in db and db[n]["annotations"])

    def pick(names: list[str], k: int | None) -> list[str]:
        if k is None or k >= len(names):
            return names
        return sorted(rng.choice(names, size=k, replace=False).tolist())

    chosen = [(n, "train") for n in pick(train_names, max_train)]
    chosen += [(n, "test") for n in pick(test_sel, max_test)]
    videos = []
    for name, split in chosen:
        entry = db[name]
        anns = entry["annotations"]
        num_frames = max(int(entry["numf"]), max(int(a["ef"]) for a in anns))
        all_frames = np.arange(num_frames, dtype=np.int64)
        tubes, tracks = [], []
        for a in anns:
            sf, ef = int(a["sf"]), int(a["ef"])
            xywh = np.asarray(a["boxes"], dtype=np.float32)[: ef - sf]
            if xywh.shape[0] == 0:
                continue
            ef = sf + xywh.shape[0]
            gt = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            tubes.append(Tube(name, int(a["label"]), all_frames[sf:ef], gt))
            full = np.empty((num_frames, 4), dtype=np.float32)
            full[sf:ef] = gt
            # Drift outside the tube so the person keeps moving before/after the action.
            drift = rng.normal(0.0, 0.4, size=(num_frames, 2)).astype(np.float32)
            if sf > 0:
                back = np.cumsum(drift[:sf][::-1], axis=0)[::-1]
                full[:sf] = gt[0] + np.concatenate([back, back], axis=1)
            if ef < num_frames:
                fwd = np.cumsum(drift[ef:], axis=0)
                full[ef:] = gt[-1] + np.concatenate([fwd, fwd], axis=1)
            tracks.append((all_frames, _jitter(full, rng, 0.03)))
        for _ in range(int(rng.poisson(distractors))):
            tracks.append((all_frames, _jitter(_random_walk_boxes(num_frames, rng), rng, 0.03)))
        videos.append(
            _finish_video(name, num_frames, split, tubes, tracks, num_actions, spec, protos, rng)
        )
    return videos, classes


def make_builtin_dataset(
    path: str | os.PathLike,
    num_videos: int = 80,
    *,
    num_actions: int = 5,
    spec: FeatureSpec | None = None,
    seed: int = 0,
    **kwargs,
) -> Path:
    """Write :func:`builtin_videos` to an HDF5 dataset; returns the path."""
    spec = spec or FeatureSpec()
    videos = builtin_videos(num_videos, num_actions=num_actions, spec=spec, seed=seed, **kwargs)
    return write_dataset(
        path,
        videos,
        modalities=spec.modalities,
        num_actions=num_actions,
        class_names=[f"action_{c}" for c in range(num_actions)],
        source=f"reclnet.train.synthetic builtin seed={seed} spec={asdict(spec)}",
    )


def make_ucf_dataset(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    spec: FeatureSpec | None = None,
    seed: int = 0,
    **kwargs,
) -> Path:
    """Write :func:`ucf_videos` to an HDF5 dataset; returns the path."""
    spec = spec or FeatureSpec()
    videos, classes = ucf_videos(root, spec=spec, seed=seed, **kwargs)
    return write_dataset(
        path,
        videos,
        modalities=spec.modalities,
        num_actions=len(classes),
        class_names=classes,
        source=f"reclnet.train.synthetic ucf101-24 seed={seed} spec={asdict(spec)}",
    )


def main(argv: list[str] | None = None) -> int:
    """``reclnet synth``: write a synthetic dataset."""
    p = ArgumentParser(prog="reclnet synth", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output .h5 file (--kind video: a new folder)")
    p.add_argument(
        "--kind",
        choices=("builtin", "ucf101-24", "video"),
        default="builtin",
        help="feature datasets: builtin, ucf101-24; video: rendered action videos + MOT tracks "
        "+ tubes (reclnet.train.rendered_videos)",
    )
    p.add_argument(
        "--videos",
        type=positive_int,
        default=80,
        help="builtin, video: number of videos (video --timing ucf101-24: a random subset of "
        "the annotated videos)",
    )
    p.add_argument("--num-actions", type=positive_int, default=5, help="builtin: C")
    p.add_argument("--feature-size", type=positive_int, default=64, help="per modality")
    p.add_argument("--paper-sizes", action="store_true", help="4096 features per modality")
    p.add_argument("--modalities", default="rgb,flow")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument(
        "--data",
        default=None,
        help=f"data folder holding ucf101-24/ (default: ${ENV_VAR}, or ../shared/data in a "
        "source checkout)",
    )
    p.add_argument(
        "--ucf-root", default=None, help="folder of pyannot_with_class_names.pkl (over --data)"
    )
    p.add_argument(
        "--max-train", type=nonnegative_int, default=400, help="ucf101-24: train videos (0 = all)"
    )
    p.add_argument(
        "--max-test", type=nonnegative_int, default=150, help="ucf101-24: test videos (0 = all)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    video = p.add_argument_group("--kind video")
    video.add_argument(
        "--timing",
        choices=("builtin", "ucf101-24"),
        default=None,
        help="action timing: random (builtin, default) or the real UCF101-24 tubes",
    )
    video.add_argument(
        "--actions",
        default=None,
        help="builtin timing: comma-separated motion patterns (default wave,jump,squat,spin,kick)",
    )
    video.add_argument(
        "--jitter",
        type=finite_float,
        default=None,
        help="tracker box noise std in box sizes, 0-1 (default 0)",
    )
    video.add_argument(
        "--id-switches",
        type=finite_float,
        default=None,
        help="probability of an id switch per overlap of two figures, 0-1 (default 0)",
    )
    args = p.parse_args(argv)
    video_only = {
        "--timing": args.timing,
        "--actions": args.actions,
        "--jitter": args.jitter,
        "--id-switches": args.id_switches,
    }
    if args.kind != "video":
        given = [k for k, v in video_only.items() if v is not None]
        if given:
            p.error(f"{', '.join(given)}: only with --kind video")
    else:
        return _video_main(args, p)
    size = 4096 if args.paper_sizes else args.feature_size
    spec = FeatureSpec(
        modalities={s: size for s in args.modalities.split(",") if s}, dtype=args.dtype
    )
    if args.kind == "builtin":
        out = make_builtin_dataset(
            args.out, args.videos, num_actions=args.num_actions, spec=spec, seed=args.seed
        )
    else:
        try:
            root = Path(args.ucf_root) if args.ucf_root else default_ucf_root(args.data)
            out = make_ucf_dataset(
                args.out,
                root,
                spec=spec,
                seed=args.seed,
                max_train=args.max_train or None,
                max_test=args.max_test or None,
            )
        except (OSError, ValueError) as exc:
            # missing folder or file, a refused or malformed annotations pickle
            print(f"reclnet synth: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {out}")
    return 0


def _video_main(args, parser: ArgumentParser) -> int:
    """``reclnet synth --kind video``: render action videos (see reclnet.train.rendered_videos)."""
    from reclnet.train import rendered_videos

    timing = args.timing or "builtin"
    actions = None
    if args.actions is not None:
        if timing == "ucf101-24":
            parser.error("--actions does not apply to --timing ucf101-24 (its classes are fixed)")
        actions = [a.strip() for a in args.actions.split(",") if a.strip()]
    for flag, value in (("--jitter", args.jitter), ("--id-switches", args.id_switches)):
        if value is not None and not 0.0 <= value <= 1.0:
            parser.error(f"argument {flag}: must be in [0, 1], got {value:g}")
    try:
        root = None
        if timing == "ucf101-24":
            root = Path(args.ucf_root) if args.ucf_root else default_ucf_root(args.data)
        result = rendered_videos.render_set(
            args.out,
            videos=args.videos,
            timing=timing,
            ucf_root=root,
            actions=actions,
            seed=args.seed,
            jitter=args.jitter or 0.0,
            id_switches=args.id_switches or 0.0,
        )
    except (OSError, ValueError) as exc:
        # a bad action name, a non-empty output folder, missing or refused annotations
        print(f"reclnet synth: {exc}", file=sys.stderr)
        return 2
    frames = sum(v.num_frames for v in result.videos)
    print(f"wrote {result.root} ({len(result.videos)} videos, {frames} frames)")
    return 0
