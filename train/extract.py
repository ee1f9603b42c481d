"""``reclnet extract``: videos + person tracks + ground truth -> a ``reclnet-tracks/1`` feature dataset.

One responsibility: turn videos into the track-feature dataset training reads
(:mod:`reclnet.train.data`), with the features ``reclnet stream`` computes at
run time. For every video:

* frames are decoded with the project's video source
  (:class:`~reclnet.runtime.camera.source.FileSource`);
* person tracks come from a MOTChallenge file (``--tracks DIR``: one
  ``<video stem>.txt`` per video, what a user's tracker wrote) or from the
  built-in HOG detector + tracker of ``reclnet stream`` (same defaults);
* each frame's tracks are bounded by the frame
  (:func:`~reclnet.runtime.camera.pipeline.bound_tracks`) and their features
  computed by :func:`~reclnet.runtime.camera.features.frame_features` with the
  exported feature networks of ``--model DIR`` (``features_<modality>.onnx``, or
  the INT8 copy under ``--feature-precision auto`` like ``reclnet stream``):
  the very code the camera pipeline runs, so a track's features at training
  time equal its features at run time (tested to 1e-6);
* the ground-truth tubes of the video go with it; labels are not stored, they
  are derived by :func:`~reclnet.train.data.assign_labels` (IoU > 0.3) when
  the dataset is read.

Ground truth (``--annotations``): the UCF101-24 annotations pickle (``*.pkl``,
split tags from ``trainvideos`` and ``testlist01.txt`` beside it), the JHMDB-21
ground-truth zip (``*.zip``; its 1-based frame numbers are made 0-based, the
decoded frames' numbering), a tube JSON Lines file (``*.jsonl``, split tag
``--split``) or a rendered set (``reclnet synth --kind video``: its folder or its
``manifest.json``; classes, splits and video files from the manifest, the
videos default to all of the set's). A video file is matched to an annotated
video by its stem, its path below the folder given (without the suffix) or
that path with ``/`` as ``_`` (JHMDB's names).

Resumable and atomic: each video is written to its own part file in
``<out>.parts/`` (written under a temporary name and renamed), a video whose
part exists is not redone, and the parts are merged in input order into
``--out`` (itself written atomically) at the end, so the output does not
depend on ``--workers`` (processes, each with one-thread ONNX Runtime sessions
by default) or on interruptions. ``settings.json`` in the parts folder records
what the features depend on; resuming with other settings is refused.

Test hook (environment variable, for the test suite; not a user interface):
``RECLNET_TEST_INTERRUPT_AFTER_VIDEO=K`` raises ``RuntimeError`` once K videos
were extracted in this run (their parts are written), as a crash would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.argparsing import ArgumentParser, positive_int
from reclnet.runtime.camera.cli import DEFAULT_DETECT_EVERY, DEFAULT_HOG_REGIONS, HOG_REGIONS
from reclnet.runtime.camera.features import FEATURE_BACKENDS, FEATURE_PRECISIONS
from reclnet.runtime.offline.tubes import Tube

__all__ = [
    "VIDEO_SUFFIXES",
    "Annotations",
    "ExtractError",
    "ExtractResult",
    "ExtractSettings",
    "VideoJob",
    "extract",
    "extract_video",
    "find_videos",
    "load_annotations",
    "main",
    "model_modalities",
    "plan_jobs",
]

#: File suffixes taken as videos when a folder is given.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg")
PARTS_FORMAT = "reclnet-extract-parts/1"
_INTERRUPT_HOOK = "RECLNET_TEST_INTERRUPT_AFTER_VIDEO"


class ExtractError(ValueError):
    """Bad input to the extraction (a video, an annotation or a tracks file); names the file."""


# ------------------------------------------------------------------ annotations
@dataclass(frozen=True)
class Annotations:
    """Ground truth of a set of videos.

    Attributes
    ----------
    kind : str
        ``"ucf101-24"``, ``"jhmdb"``, ``"tubes"`` or ``"rendered"``.
    path : Path
        The annotations file (a rendered set: its ``manifest.json``).
    class_names : list of str
        Index = label (C names).
    splits : dict of str to str
        Every annotated video's name -> split tag (``"train"``, ``"test"``, ...).
    tubes : dict of str to list of Tube
        Video name -> its ground-truth tubes (frames 0-based, like the decoded frames).
    files : dict of str to Path
        Rendered set: video name -> its video file.
    tracks : dict of str to Path
        Rendered set: video name -> its MOT tracks file.
    """

    kind: str
    path: Path
    class_names: list[str]
    splits: dict[str, str]
    tubes: dict[str, list[Tube]]
    files: dict[str, Path] = field(default_factory=dict)
    tracks: dict[str, Path] = field(default_factory=dict)


def _by_video(tubes: Sequence[Tube]) -> dict[str, list[Tube]]:
    out: dict[str, list[Tube]] = {}
    for tube in tubes:
        out.setdefault(tube.video, []).append(tube)
    return out


def load_annotations(
    path: str | os.PathLike,
    *,
    split: str = "train",
    class_names: Sequence[str] | None = None,
) -> Annotations:
    """Read the ground truth of ``--annotations`` (format from the file; see the module docstring).

    Parameters
    ----------
    path : path-like
        ``*.pkl`` (UCF101-24), ``*.zip`` (JHMDB-21), ``*.jsonl`` (tubes), or a
        rendered set's folder or ``manifest.json``.
    split : str
        Split tag of every video of a ``*.jsonl`` file.
    class_names : sequence of str, optional
        ``*.jsonl``: the class names (default ``action0 ...`` up to the largest label).

    Returns
    -------
    Annotations

    Raises
    ------
    ExtractError
        Unknown format, unreadable or malformed file (the message names it).
    """
    from reclnet.runtime.offline import datasets
    from reclnet.runtime.offline.tubes import TubeFormatError, read_tubes

    p = Path(path)
    if p.is_dir():
        if not (p / "manifest.json").is_file():
            raise ExtractError(
                f"--annotations {p}: a folder must be a rendered set (reclnet synth "
                f"--kind video) holding manifest.json"
            )
        p = p / "manifest.json"
    if not p.is_file():
        raise ExtractError(f"--annotations {p}: no such file")
    try:
        if p.name == "manifest.json" or p.suffix == ".json":
            return _load_rendered(p)
        if p.suffix == ".pkl":
            gt = datasets.load_ucf101_24(p, split="all")
            train = set(datasets.load_ucf101_24(p, split="train").num_frames)
            testlist = p.parent / "testlist01.txt"
            test = (
                {v.strip() for v in testlist.read_text().splitlines() if v.strip()}
                if testlist.is_file()
                else set()
            )
            splits = {
                v: "train" if v in train else "test" if v in test else "other"
                for v in gt.num_frames
            }
            return Annotations("ucf101-24", p, gt.class_names, splits, _by_video(gt.tubes))
        if p.suffix == ".zip":
            gt = datasets.load_jhmdb(p)
            # The zip numbers frames from 1 (file names); decoded frames count from 0.
            tubes = [Tube(t.video, t.label, t.frames - 1, t.boxes) for t in gt.tubes]
            splits = dict.fromkeys(gt.num_frames, "test")
            return Annotations("jhmdb", p, gt.class_names, splits, _by_video(tubes))
        if p.suffix == ".jsonl":
            num = len(class_names) if class_names else None
            tubes = read_tubes(p, num_classes=num, require_score=False)
            names = list(class_names or [])
            if not names:
                names = [f"action{c}" for c in range(1 + max(t.label for t in tubes))]
            by_video = _by_video(tubes)
            return Annotations("tubes", p, names, dict.fromkeys(by_video, split), by_video)
    except (datasets.DatasetError, TubeFormatError, OSError) as exc:
        raise ExtractError(f"--annotations {p}: {' '.join(str(exc).split())}") from exc
    raise ExtractError(
        f"--annotations {p}: unknown format (expected a UCF101-24 .pkl, a JHMDB .zip, "
        f"a tube .jsonl, or a rendered set's folder / manifest.json)"
    )


def _load_rendered(path: Path) -> Annotations:
    from reclnet.jsonsafe import loads_bounded
    from reclnet.runtime.offline.tubes import read_tubes
    from reclnet.train.rendered_videos import MANIFEST_FORMAT

    try:
        manifest = loads_bounded(path.read_text(encoding="utf-8"), max_bytes=64 << 20)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExtractError(f"--annotations {path}: not a readable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ExtractError(f"--annotations {path}: not a {MANIFEST_FORMAT} manifest")
    root = path.parent
    try:
        classes = [str(c) for c in manifest["classes"]]
        entries = list(manifest["videos"])
        tubes_file = root / str(manifest.get("tubes", "tubes.jsonl"))
        splits = {str(e["name"]): str(e["split"]) for e in entries}
        files = {str(e["name"]): root / str(e["video"]) for e in entries}
        tracks = {str(e["name"]): root / str(e["tracks"]) for e in entries}
    except (KeyError, TypeError) as exc:
        raise ExtractError(f"--annotations {path}: malformed manifest ({exc!r})") from exc
    tubes = _by_video(read_tubes(tubes_file, num_classes=len(classes), require_score=False))
    unknown = sorted(set(tubes) - set(splits))
    if unknown:
        raise ExtractError(
            f"{tubes_file}: tubes of video {unknown[0]!r}, which {path} does not list"
        )
    return Annotations("rendered", path, classes, splits, tubes, files, tracks)


# ------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class VideoJob:
    """One video to extract.

    Attributes
    ----------
    index : int
        Position in the output (input order).
    name : str
        The annotated video's name (the dataset's video name, the tubes' ``video``).
    path : Path
        The video file.
    split : str
    tubes : list of Tube
    tracks : Path or None
        MOTChallenge file; None: the built-in detector + tracker.
    """

    index: int
    name: str
    path: Path
    split: str
    tubes: list[Tube]
    tracks: Path | None


def find_videos(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, Path | None]]:
    """Video files of ``VIDEOS...``: files as given, folders searched recursively (sorted).

    Returns
    -------
    list of (file, folder it was found in or None)
    """
    out: list[tuple[Path, Path | None]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
            )
            if not found:
                raise ExtractError(f"{p}: no video files ({', '.join(VIDEO_SUFFIXES)}) in it")
            out += [(f, p) for f in found]
        elif p.is_file():
            out.append((p, None))
        else:
            raise ExtractError(f"video {p}: no such file or folder")
    seen: set[Path] = set()
    for f, _ in out:
        if f.resolve() in seen:
            raise ExtractError(f"video {f} is given twice")
        seen.add(f.resolve())
    return out


def _candidates(path: Path, folder: Path | None) -> list[str]:
    names = [path.stem, f"{path.parent.name}/{path.stem}"]
    if folder is not None:
        rel = path.relative_to(folder).with_suffix("").as_posix()
        names += [rel, rel.replace("/", "_")]
    return list(dict.fromkeys(names))


def plan_jobs(
    videos: Sequence[tuple[Path, Path | None]],
    annotations: Annotations,
    *,
    tracks_dir: str | os.PathLike | None = None,
    subset: bool = False,
) -> list[VideoJob]:
    """Match video files to annotated videos and tracks files, checking everything first.

    Parameters
    ----------
    videos : sequence of (Path, Path or None)
        From :func:`find_videos`.
    annotations : Annotations
    tracks_dir : path-like, optional
        Folder of ``<video stem>.txt`` MOTChallenge files (checked against each
        video's size and length here, before any extraction).
    subset : bool
        Allow annotated videos that are not among ``videos`` (else an error).

    Returns
    -------
    list of VideoJob
        In input order.

    Raises
    ------
    ExtractError
        A video without annotation, a video matched twice, annotated videos missing
        from the inputs (without ``subset``), a missing or misfitting tracks file,
        an unreadable video. The message names the file.
    """
    from reclnet.runtime.camera.persons import MotFormatError, read_mot
    from reclnet.runtime.camera.source import FileSource, VideoSourceError

    by_file = {f.resolve(): name for name, f in annotations.files.items()}
    jobs: list[VideoJob] = []
    taken: dict[str, Path] = {}
    for path, folder in videos:
        name = by_file.get(path.resolve())
        if name is None:
            matches = [c for c in _candidates(path, folder) if c in annotations.splits]
            if not matches:
                raise ExtractError(
                    f"video {path}: no annotation for it in {annotations.path} (looked for "
                    f"{', '.join(map(repr, _candidates(path, folder)))})"
                )
            name = matches[0]
        if name in taken:
            raise ExtractError(f"videos {taken[name]} and {path} are both annotated video {name!r}")
        taken[name] = path
        tracks = None
        if tracks_dir is not None:
            tracks = Path(tracks_dir) / f"{path.stem}.txt"
            if not tracks.is_file():
                raise ExtractError(f"video {path}: its tracks file {tracks} does not exist")
        jobs.append(
            VideoJob(
                len(jobs),
                name,
                path,
                annotations.splits[name],
                annotations.tubes.get(name, []),
                tracks,
            )
        )
    missing = [n for n in annotations.splits if n not in taken]
    if missing and not subset:
        where = annotations.files.get(missing[0])
        hint = f" (expected {where})" if where is not None else ""
        raise ExtractError(
            f"{annotations.path} names {len(missing)} video(s) that are not among the inputs, "
            f"e.g. {missing[0]!r}{hint}; give every annotated video or pass --subset"
        )
    for job in jobs:
        try:
            with FileSource(job.path) as source:
                size = (source.width, source.height)
                declared = source.declared_frames
        except VideoSourceError as exc:
            raise ExtractError(f"video {job.path}: {exc}") from exc
        if job.tracks is None:
            continue
        try:
            mot = read_mot(job.tracks, frame_size=size)
        except MotFormatError as exc:
            raise ExtractError(
                f"tracks file {job.tracks} does not fit video {job.path} "
                f"({size[0]}x{size[1]}, tracks of another video?): {' '.join(str(exc).split())}"
            ) from exc
        if declared and len(mot) and int(mot.frames.max()) >= declared:
            raise ExtractError(
                f"tracks file {job.tracks} has rows for frame {int(mot.frames.max()) + 1} but "
                f"video {job.path} has {declared} frames (tracks of another video?)"
            )
    return jobs


# ------------------------------------------------------------------ features
@dataclass(frozen=True)
class ExtractSettings:
    """What a video's features depend on (the same options as ``reclnet stream``).

    Attributes
    ----------
    model_dir : str
        Folder of ``features_<modality>.onnx``.
    modalities : tuple of str
        In the model's order.
    feature_precision : str
        ``"auto"``, ``"fp32"``, ``"int8"`` or ``"bf16"``
        (:func:`~reclnet.runtime.camera.features.feature_network_path`).
    feature_backend : str
        ``"auto"``, ``"onnxruntime"`` or ``"openvino"``
        (:func:`~reclnet.runtime.camera.features.feature_backend`).
    feature_scale : float
        Frames are resized by this before flow and features.
    float16 : bool
        Store features as float16.
    threads : int
        ONNX Runtime intra-op threads per feature network.
    hog_upscale : float
        Built-in detector (no tracks file): HOG upscale.
    hog_regions : str
        Built-in detector: ``"motion"`` or ``"frame"`` (``reclnet stream --hog-regions``).
    detect_every : int
        Built-in detector: run every n-th frame, the tracker predicts between.
    min_box : float
        Boxes smaller than this (pixels) are not scored (:func:`bound_tracks`).
    """

    model_dir: str
    modalities: tuple[str, ...]
    feature_precision: str = "auto"
    feature_backend: str = "auto"
    feature_scale: float = 0.5
    float16: bool = False
    threads: int = 1
    hog_upscale: float = 1.0
    hog_regions: str = DEFAULT_HOG_REGIONS
    detect_every: int = DEFAULT_DETECT_EVERY
    min_box: float = 4.0


def model_modalities(model_dir: str | os.PathLike, precision: str = "auto") -> dict[str, int]:
    """The modalities (in the model's order) and feature sizes of a model folder's feature networks.

    The order is the step model's (``step.onnx`` sidecar) when there is one, else
    ``rgb``, ``flow``, then the others by name.

    Raises
    ------
    ExtractError
        No feature network, a missing one, or a corrupt sidecar.
    """
    from reclnet.runtime.artifacts import ArtifactError, load_artifact
    from reclnet.runtime.camera.features import feature_network_path

    d = Path(model_dir)
    if not d.is_dir():
        raise ExtractError(f"--model {d}: no such folder")
    try:
        if (d / "step.onnx").is_file():
            names = list(load_artifact(d / "step.onnx", kind="step").config.modalities)
        else:
            found = sorted(
                p.name[len("features_") : -len(".onnx")]
                for p in d.glob("features_*.onnx")
                if not p.name.endswith(".int8.onnx")
            )
            names = [m for m in ("rgb", "flow") if m in found] + [
                m for m in found if m not in ("rgb", "flow")
            ]
        if not names:
            raise ExtractError(
                f"--model {d}: no feature network (features_<modality>.onnx): export them with "
                f"`reclnet export CHECKPOINT --out {d} --features`"
            )
        sizes = {}
        for m in names:
            path = feature_network_path(d, m, precision)
            if not path.is_file():
                raise ExtractError(f"--model {d}: {path.name} not found")
            dim = load_artifact(path, kind="features").metadata.get("out_dim")
            if not isinstance(dim, int) or dim < 1:
                raise ExtractError(f"{path}: its sidecar has no out_dim")
            sizes[m] = dim
    except ArtifactError as exc:
        raise ExtractError(str(exc)) from exc
    return sizes


class _Networks:
    """A process's feature networks, loaded once for all the videos it extracts."""

    def __init__(self, settings: ExtractSettings) -> None:
        from reclnet.runtime.camera.features import open_feature_network

        self.settings = settings
        self.nets = {
            m: open_feature_network(
                settings.model_dir,
                m,
                settings.feature_precision,
                backend=settings.feature_backend,
                threads=settings.threads,
            )
            for m in settings.modalities
        }
        self.sizes = {m: int(net.dim or 0) for m, net in self.nets.items()}

    def close(self) -> None:
        for net in self.nets.values():
            net.close()


def extract_video(job: VideoJob, settings: ExtractSettings, networks: Any = None) -> Any:
    """Decode one video, follow its tracks and compute every track's per-frame features.

    Parameters
    ----------
    job : VideoJob
    settings : ExtractSettings
    networks : optional
        Loaded feature networks (loaded, and closed, here when None).

    Returns
    -------
    reclnet.train.data.Video
        Tracks sorted by id, features float32 (float16 with ``settings.float16``)
        ``[T, D]`` per modality, and the job's tubes.

    Raises
    ------
    ExtractError
        The video cannot be decoded, or its tracks file names frames past its end.
    """
    from reclnet.runtime.camera.features import flow_for, frame_features
    from reclnet.runtime.camera.persons import hog_detector, read_mot
    from reclnet.runtime.camera.pipeline import (
        DetectAndTrack,
        FrameClock,
        MotPersons,
        bound_tracks,
    )
    from reclnet.runtime.camera.source import FileSource, VideoSourceError
    from reclnet.runtime.camera.tracking import PersonTracker
    from reclnet.train.data import Track, Video

    own = networks is None
    nets = _Networks(settings) if own else networks
    rows: dict[int, tuple[list[int], list[np.ndarray], dict[str, list[np.ndarray]]]] = {}
    try:
        with FileSource(job.path) as source:
            size = (source.width, source.height)
            if job.tracks is not None:
                persons: Any = MotPersons(read_mot(job.tracks, frame_size=size))
            else:
                persons = DetectAndTrack(
                    hog_detector(settings.hog_regions, upscale=settings.hog_upscale),
                    PersonTracker(frame_size=size),
                    detect_every=settings.detect_every,
                )
            previous = None
            count = 0
            for frame in source:
                clock = FrameClock()
                tracks = bound_tracks(persons(frame, clock), size, settings.min_box)
                feats, previous = frame_features(
                    frame.image,
                    tracks.boxes,
                    nets.nets,
                    sizes=nets.sizes,
                    previous=previous,
                    flow=flow_for(nets.nets["flow"]) if "flow" in nets.nets else None,
                    scale=settings.feature_scale,
                )
                for i, tid in enumerate(tracks.ids.tolist()):
                    f, b, x = rows.setdefault(int(tid), ([], [], {m: [] for m in nets.nets}))
                    f.append(frame.index)
                    b.append(tracks.boxes[i])
                    for m in nets.nets:
                        x[m].append(feats[m][i])
                count += 1
    except VideoSourceError as exc:
        raise ExtractError(f"video {job.path}: {exc}") from exc
    finally:
        if own:
            nets.close()
    if job.tracks is not None and isinstance(persons, MotPersons) and len(persons.tracks):
        last = int(persons.tracks.frames.max())
        if last >= count:
            raise ExtractError(
                f"tracks file {job.tracks} has rows for frame {last + 1} but video {job.path} "
                f"has {count} frames (tracks of another video?)"
            )
    dtype = np.float16 if settings.float16 else np.float32
    out = []
    for tid in sorted(rows):
        f, b, x = rows[tid]
        out.append(
            Track(
                tid,
                np.asarray(f, np.int64),
                np.stack(b).astype(np.float32),
                {m: np.stack(v).astype(dtype) for m, v in x.items()},
            )
        )
    return Video(job.name, count, out, list(job.tubes), job.split)


# ------------------------------------------------------------------ parts
def _part_path(parts: Path, job: VideoJob) -> Path:
    return parts / f"{hashlib.sha256(job.name.encode('utf-8')).hexdigest()[:20]}.h5"


def _write_part(
    parts: Path, job: VideoJob, video: Any, sizes: dict[str, int], classes: list[str]
) -> Path:
    from reclnet.train.data import write_dataset

    # write_dataset writes <name>.partial and renames it: a part exists whole or not at all.
    return write_dataset(
        _part_path(parts, job),
        [video],
        modalities=sizes,
        num_actions=len(classes),
        class_names=classes,
        source=str(job.path),
    )


def _part_done(parts: Path, job: VideoJob) -> bool:
    from reclnet.train.data import DatasetError, open_dataset

    path = _part_path(parts, job)
    if not path.is_file():
        return False
    try:
        with open_dataset(path) as ds:
            return len(ds) == 1 and ds.video(0).name == job.name
    except DatasetError:
        return False  # a damaged part is redone


_WORKER: dict[str, Any] = {}


def _worker_init(settings: ExtractSettings) -> None:
    _WORKER["nets"] = _Networks(settings)
    _WORKER["settings"] = settings


def _worker_run(
    job: VideoJob, parts: Path, sizes: dict[str, int], classes: list[str]
) -> tuple[int, int]:
    video = extract_video(job, _WORKER["settings"], _WORKER["nets"])
    _write_part(parts, job, video, sizes, classes)
    return job.index, int(video.num_frames)


def _fingerprint(settings: ExtractSettings, annotations: Annotations, tracks: str) -> dict:
    from reclnet.runtime.artifacts import file_sha256
    from reclnet.runtime.camera.features import feature_backend, feature_network_path

    nets = {
        m: file_sha256(feature_network_path(settings.model_dir, m, settings.feature_precision))
        for m in settings.modalities
    }
    s = asdict(settings)
    s.pop("threads")  # threads change the speed, not the features
    s.pop("model_dir")
    # What runs, not what was asked: auto may resolve differently on another machine.
    s["feature_backend"] = feature_backend(settings.feature_backend, settings.feature_precision)
    return {
        "format": PARTS_FORMAT,
        "settings": s,
        "feature_networks_sha256": nets,
        "annotations": {"kind": annotations.kind, "sha256": file_sha256(annotations.path)},
        "tracks": tracks,
    }


# ------------------------------------------------------------------ driver
@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract` did.

    Attributes
    ----------
    path : Path
        The written dataset.
    videos : int
        Videos in it.
    extracted : int
        Videos extracted in this run.
    reused : int
        Videos taken from the parts of an earlier, interrupted run.
    frames : int
        Frames decoded in this run.
    seconds : float
        Wall-clock time of the extraction (not the merge).
    """

    path: Path
    videos: int
    extracted: int
    reused: int
    frames: int
    seconds: float


def extract(
    jobs: Sequence[VideoJob],
    annotations: Annotations,
    out: str | os.PathLike,
    settings: ExtractSettings,
    *,
    workers: int = 1,
    progress: bool = True,
    on_video: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Extract every job (resuming from ``<out>.parts``) and merge them into ``out``.

    Parameters
    ----------
    jobs : sequence of VideoJob
        From :func:`plan_jobs`.
    annotations : Annotations
        For the class names and the resume fingerprint.
    out : path-like
        The ``.h5`` dataset to write.
    settings : ExtractSettings
    workers : int
        Processes (1: in this process). The output does not depend on it.
    progress : bool
        A tqdm bar (videos; frames per second) on stderr.
    on_video : callable, optional
        Called as ``on_video(done, total)`` after each video extracted in this run.

    Returns
    -------
    ExtractResult

    Raises
    ------
    ExtractError
        The parts folder holds parts of another extraction.
    """
    from reclnet.train.data import DatasetWriter, open_dataset

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    sizes = model_modalities(settings.model_dir, settings.feature_precision)
    sizes = {m: sizes[m] for m in settings.modalities}
    classes = list(annotations.class_names)
    tracks_kind = "mot" if all(j.tracks is not None for j in jobs) else "hog+tracker"
    # Through JSON, as it is stored (tuples become lists).
    fingerprint = json.loads(json.dumps(_fingerprint(settings, annotations, tracks_kind)))
    settings_file = parts / "settings.json"
    if parts.is_dir() and settings_file.is_file():
        try:
            previous = json.loads(settings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != fingerprint:
            raise ExtractError(
                f"{parts} holds the parts of an extraction with other settings, feature "
                f"networks or annotations: delete it to start over, or resume with the same options"
            )
    parts.mkdir(parents=True, exist_ok=True)
    tmp = settings_file.with_name("settings.json.partial")
    tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, settings_file)

    todo = [j for j in jobs if not _part_done(parts, j)]
    reused = len(jobs) - len(todo)
    interrupt = os.environ.get(_INTERRUPT_HOOK)
    interrupt_after = int(interrupt) if interrupt else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=reused, unit="video", desc="extract", file=sys.stderr)
    t0 = time.perf_counter()
    frames = 0
    done = 0

    def finished(n: int) -> None:
        nonlocal frames, done
        frames += n
        done += 1
        if bar is not None:
            bar.set_postfix_str(f"{frames / max(time.perf_counter() - t0, 1e-9):.1f} frames/s")
            bar.update(1)
        if on_video is not None:
            on_video(done, len(todo))
        if interrupt_after is not None and done >= interrupt_after:
            raise RuntimeError(f"test hook {_INTERRUPT_HOOK}: interrupted after {done} videos")

    try:
        if workers == 1 or len(todo) <= 1:
            nets = _Networks(settings) if todo else None
            try:
                for job in todo:
                    video = extract_video(job, settings, nets)
                    _write_part(parts, job, video, sizes, classes)
                    finished(int(video.num_frames))
            finally:
                if nets is not None:
                    nets.close()
        else:
            import multiprocessing

            # spawn: a forked ONNX Runtime / OpenCV thread pool is not safe in the child.
            with ProcessPoolExecutor(
                max_workers=min(workers, len(todo)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(settings,),
            ) as pool:
                pending = {pool.submit(_worker_run, j, parts, sizes, classes) for j in todo}
                try:
                    while pending:
                        ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in ready:
                            finished(fut.result()[1])
                finally:
                    for fut in pending:
                        fut.cancel()
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    source = json.dumps(
        {"tool": "reclnet extract", **fingerprint, "annotations_file": str(annotations.path)},
        sort_keys=True,
    )
    with DatasetWriter(
        out, modalities=sizes, num_actions=len(classes), class_names=classes, source=source
    ) as writer:
        for job in jobs:
            with open_dataset(_part_path(parts, job)) as ds:
                writer.add_video(ds.video(0))
    shutil.rmtree(parts)
    return ExtractResult(out, len(jobs), len(todo), reused, frames, seconds)


# ------------------------------------------------------------------ command
def build_parser() -> argparse.ArgumentParser:

    p = ArgumentParser(
        prog="reclnet extract",
        description="Write a track-feature dataset (reclnet-tracks/1) from videos, person "
        "tracks and ground-truth tubes, with the feature networks reclnet stream runs.",
    )
    p.add_argument(
        "videos",
        nargs="*",
        type=Path,
        help="video files or folders (default for a rendered set: all of its videos)",
    )
    p.add_argument(
        "--annotations",
        type=Path,
        required=True,
        help="ground truth: UCF101-24 .pkl, JHMDB .zip, tube .jsonl, or a rendered set "
        "(its folder or manifest.json)",
    )
    p.add_argument("--out", type=Path, required=True, help="the dataset to write (.h5)")
    p.add_argument(
        "--model",
        type=Path,
        required=True,
        help="folder with the exported feature networks features_<modality>.onnx",
    )
    p.add_argument(
        "--tracks",
        type=Path,
        default=None,
        help="folder of MOTChallenge files, <video stem>.txt per video (default: the "
        "built-in HOG detector + tracker of reclnet stream)",
    )
    p.add_argument(
        "--subset",
        action="store_true",
        help="the annotations may name videos that are not given (default: an error)",
    )
    p.add_argument("--split", default="train", help="split tag of a .jsonl's videos")
    p.add_argument("--classes", default=None, help=".jsonl: comma-separated class names")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    p.add_argument("--threads", type=positive_int, default=1, help="ORT threads per network")
    p.add_argument("--float16", action="store_true", help="store the features as float16")
    p.add_argument(
        "--feature-scale",
        type=float,
        default=0.5,
        help="resize frames by this before flow and features (default 0.5, as reclnet stream)",
    )
    p.add_argument(
        "--feature-precision",
        default="auto",
        choices=list(FEATURE_PRECISIONS),
        help="as reclnet stream: the INT8 copy when exported (auto), fp32 / int8, or bf16 "
        "(OpenVINO; use the precision you will stream with)",
    )
    p.add_argument(
        "--feature-backend",
        default="auto",
        choices=list(FEATURE_BACKENDS),
        help="as reclnet stream: OpenVINO when installed, else ONNX Runtime (auto), or one of them",
    )
    p.add_argument("--hog-upscale", type=float, default=1.0, help="built-in detector: upscale")
    p.add_argument(
        "--hog-regions",
        default=DEFAULT_HOG_REGIONS,
        choices=list(HOG_REGIONS),
        help=f"built-in detector: where HOG searches (default {DEFAULT_HOG_REGIONS}, as "
        "reclnet stream; frame for moving cameras)",
    )
    p.add_argument(
        "--detect-every",
        type=positive_int,
        default=DEFAULT_DETECT_EVERY,
        help=f"built-in detector: every N frames (default {DEFAULT_DETECT_EVERY}, as reclnet stream)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """``reclnet extract``; returns the exit status (bad input: one line, status 1)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.feature_scale <= 4:
        parser.error(f"argument --feature-scale: must be in (0, 4], got {args.feature_scale}")
    if not 0 < args.hog_upscale <= 8:
        parser.error(f"argument --hog-upscale: must be in (0, 8], got {args.hog_upscale}")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    annotations = load_annotations(args.annotations, split=args.split, class_names=classes)
    if args.videos:
        videos = find_videos(args.videos)
    elif annotations.kind == "rendered":
        for name, f in annotations.files.items():
            if not f.is_file():
                raise ExtractError(
                    f"{annotations.path} names video {name!r} but {f} does not exist"
                )
        videos = [(f, None) for f in annotations.files.values()]
    else:
        parser.error("give the videos (files or folders); only a rendered set lists its own")
    if args.out.suffix not in (".h5", ".hdf5"):
        parser.error(f"argument --out: expected a .h5 file, got {args.out}")
    from reclnet.runtime.backends.openvino.loader import openvino_importable
    from reclnet.runtime.camera.features import feature_backend

    try:
        backend = feature_backend(args.feature_backend, args.feature_precision)
    except ValueError as exc:
        parser.error(str(exc))
    if backend == "openvino" and not openvino_importable():
        raise ExtractError(
            f"--feature-backend {args.feature_backend} --feature-precision "
            f"{args.feature_precision} runs the feature networks on OpenVINO, which is not "
            f"installed: pip install 'reclnet[openvino]'"
        )
    sizes = model_modalities(args.model, args.feature_precision)
    jobs = plan_jobs(videos, annotations, tracks_dir=args.tracks, subset=args.subset)
    settings = ExtractSettings(
        model_dir=str(args.model),
        modalities=tuple(sizes),
        feature_precision=args.feature_precision,
        feature_backend=args.feature_backend,
        feature_scale=float(args.feature_scale),
        float16=bool(args.float16),
        threads=int(args.threads),
        hog_upscale=float(args.hog_upscale),
        hog_regions=str(args.hog_regions),
        detect_every=int(args.detect_every),
    )
    result = extract(
        jobs,
        annotations,
        args.out,
        settings,
        workers=args.workers,
        progress=not args.quiet,
    )
    fps = result.frames / result.seconds if result.seconds > 0 else 0.0
    print(
        f"{result.path}: {result.videos} videos ({result.extracted} extracted, "
        f"{result.reused} resumed), {result.frames} frames in {result.seconds:.1f} s "
        f"({fps:.1f} frames/s, {args.workers} worker(s)); modalities "
        + ", ".join(f"{m} {d}" for m, d in sizes.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
