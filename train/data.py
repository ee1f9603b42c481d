"""Track-feature datasets on disk (HDF5) and the per-frame training labels.

One responsibility: read and write the dataset RecLNet trains on, and turn
ground-truth tubes into per-frame labels of a track (:func:`assign_labels`).

HDF5 schema (``reclnet-tracks/1``)
----------------------------------
File attributes:

* ``format``: ``"reclnet-tracks/1"``;
* ``modalities``: JSON object ``{modality name: feature size D}`` in modality order;
* ``num_actions``: C, labels are ``0 .. C-1``; background is C (the last class);
* ``class_names``: JSON list of C names (optional, may be ``[]``);
* ``source``: free text describing where the data came from.

Group ``/videos`` holds one group per video named ``v000000``, ``v000001``, ...
(in write order; video names may contain ``/`` so they are stored as an
attribute, not as the group name), each with attributes ``name`` (str),
``num_frames`` (int) and ``split`` (str, e.g. ``"train"``, ``"val"``,
``"test"``) and two sub-groups:

* ``tracks/t000000 ...``: one person track each, attribute ``track_id`` (int,
  unique within the video), datasets ``frames`` int64 ``[T]`` (strictly
  increasing frame numbers, T >= 1), ``boxes`` float32 ``[T, 4]`` (x1 y1 x2 y2
  pixels) and ``features/<modality>`` float16 or float32 ``[T, D]`` for every
  modality of the file;
* ``tubes/g000000 ...``: the ground-truth action tubes, attribute ``label``
  (int, ``0 <= label < C``), datasets ``frames`` int64 ``[T]`` (consecutive)
  and ``boxes`` float32 ``[T, 4]``.

Labels are not stored: they are always derived from the tubes by
:func:`assign_labels`, so there is one definition of a frame's label.
Every problem found when reading (a missing modality, a wrong feature size, NaN
features, unordered frames, a truncated or foreign file) raises
:class:`DatasetError` naming the file, the video/track and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reclnet.runtime.offline.tubes import Tube

__all__ = [
    "FORMAT",
    "DatasetError",
    "Track",
    "Video",
    "LabelledTrack",
    "DatasetWriter",
    "DatasetReader",
    "write_dataset",
    "open_dataset",
    "load_tracks",
    "assign_labels",
    "box_iou_rows",
]

FORMAT = "reclnet-tracks/1"


class DatasetError(ValueError):
    """A track-feature dataset (or a record written to one) is malformed."""


@dataclass(eq=False)
class Track:
    """One person track of a video with its per-frame features.

    Attributes
    ----------
    track_id : int
        Unique within its video.
    frames : np.ndarray
        int64 ``[T]``, strictly increasing frame numbers.
    boxes : np.ndarray
        float32 ``[T, 4]`` x1 y1 x2 y2.
    features : dict[str, np.ndarray]
        float16 or float32 ``[T, D_modality]`` per modality.
    """

    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    features: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(np.shape(self.frames)[0])


@dataclass(eq=False)
class Video:
    """A video: its tracks and its ground-truth tubes.

    Attributes
    ----------
    name : str
        Video identifier (may contain ``/``).
    num_frames : int
        Number of frames of the video.
    tracks : list[Track]
    tubes : list[reclnet.runtime.offline.tubes.Tube]
        Ground truth (``score`` None).
    split : str
        ``"train"``, ``"val"``, ``"test"`` or any other tag.
    """

    name: str
    num_frames: int
    tracks: list[Track] = field(default_factory=list)
    tubes: list[Tube] = field(default_factory=list)
    split: str = "train"


@dataclass(eq=False)
class LabelledTrack:
    """A track ready for training: float32 features and per-frame labels.

    Attributes
    ----------
    video : str
    track_id : int
    frames : np.ndarray
        int64 ``[T]``.
    boxes : np.ndarray
        float32 ``[T, 4]``.
    features : dict[str, np.ndarray]
        float32 ``[T, D_modality]``.
    labels : np.ndarray
        int64 ``[T]`` in ``0 .. C`` (C = background).
    """

    video: str
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    features: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


# --------------------------------------------------------------------- labels
def box_iou_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corresponding rows of two box arrays.

    Parameters
    ----------
    a, b : np.ndarray
        float ``[N, 4]`` x1 y1 x2 y2 (pixels, continuous coordinates: a box's
        area is ``(x2 - x1) * (y2 - y1)``).

    Returns
    -------
    np.ndarray
        float64 ``[N]``; 0 where both boxes are empty.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def assign_labels(
    track_frames: np.ndarray,
    track_boxes: np.ndarray,
    gt_tubes: Iterable[Tube],
    iou_threshold: float = 0.3,
    *,
    num_actions: int,
) -> np.ndarray:
    """Per-frame training labels of a track (paper section 3.4).

    A frame of the track gets action class ``c`` when its box overlaps the box
    of a ground-truth tube of class ``c`` in the same frame with IoU strictly
    greater than ``iou_threshold``; otherwise it is background, class
    ``num_actions`` (the last class). When several tubes qualify, the one with
    the highest IoU wins; on an exact IoU tie the tube that comes first in
    ``gt_tubes`` wins.

    Parameters
    ----------
    track_frames : np.ndarray
        int ``[T]`` frame numbers of the track (strictly increasing).
    track_boxes : np.ndarray
        float ``[T, 4]`` x1 y1 x2 y2.
    gt_tubes : iterable of Tube
        Anything with ``label`` (int), ``frames`` int ``[K]`` and ``boxes``
        float ``[K, 4]``; each tube's frames strictly increasing.
    iou_threshold : float
        Overlap above which a frame is positive.
    num_actions : int
        C; every tube label must be in ``0 .. C-1``.

    Returns
    -------
    np.ndarray
        int64 ``[T]`` labels in ``0 .. C``.
    """
    frames = np.asarray(track_frames)
    boxes = np.asarray(track_boxes, dtype=np.float64)
    if frames.ndim != 1 or boxes.shape != (frames.shape[0], 4):
        raise ValueError(
            f"assign_labels: track frames [T] and boxes [T, 4] expected, got "
            f"{frames.shape} and {boxes.shape}"
        )
    if frames.size > 1 and np.any(np.diff(frames) <= 0):
        raise ValueError("assign_labels: track frames must be strictly increasing")
    labels = np.full(frames.shape[0], num_actions, dtype=np.int64)
    best = np.full(frames.shape[0], -np.inf)
    for tube in gt_tubes:
        label = int(tube.label)
        if not 0 <= label < num_actions:
            raise ValueError(f"assign_labels: tube label {label} outside 0..{num_actions - 1}")
        tf = np.asarray(tube.frames)
        tb = np.asarray(tube.boxes, dtype=np.float64)
        # Frames present in both; both arrays are sorted and unique.
        _, in_track, in_tube = np.intersect1d(frames, tf, assume_unique=True, return_indices=True)
        if in_track.size == 0:
            continue
        iou = box_iou_rows(boxes[in_track], tb[in_tube])
        # Strictly greater: the earlier tube keeps an exact tie.
        win = (iou > iou_threshold) & (iou > best[in_track])
        labels[in_track[win]] = label
        best[in_track[win]] = iou[win]
    return labels


# --------------------------------------------------------------------- checks
def _check_track(track: Track, modalities: dict[str, int], where: str) -> None:
    frames = np.asarray(track.frames)
    if frames.ndim != 1 or frames.shape[0] == 0:
        raise DatasetError(f"{where}: frames must be a non-empty 1-D array, got {frames.shape}")
    if frames.dtype.kind not in "iu":
        raise DatasetError(f"{where}: frames must be integers, got dtype {frames.dtype}")
    if frames.shape[0] > 1 and np.any(np.diff(frames) <= 0):
        i = int(np.flatnonzero(np.diff(frames) <= 0)[0])
        raise DatasetError(
            f"{where}: frames must be strictly increasing (frame {frames[i]} is followed "
            f"by {frames[i + 1]})"
        )
    t = frames.shape[0]
    boxes = np.asarray(track.boxes)
    if boxes.shape != (t, 4):
        raise DatasetError(f"{where}: boxes must be [{t}, 4], got {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise DatasetError(f"{where}: boxes contain NaN or infinite values")
    missing = [s for s in modalities if s not in track.features]
    if missing:
        raise DatasetError(f"{where}: missing feature modalities {missing}")
    extra = [s for s in track.features if s not in modalities]
    if extra:
        raise DatasetError(
            f"{where}: unknown feature modalities {extra} (file has {list(modalities)})"
        )
    for name, size in modalities.items():
        x = np.asarray(track.features[name])
        if x.dtype not in (np.float16, np.float32):
            raise DatasetError(f"{where}: features[{name!r}] must be float16/32, got {x.dtype}")
        if x.shape != (t, size):
            raise DatasetError(
                f"{where}: features[{name!r}] must be [{t}, {size}] (feature size {size}), "
                f"got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{where}: features[{name!r}] contain NaN or infinite values")


# --------------------------------------------------------------------- writer
class DatasetWriter:
    """Write a dataset video by video (context manager).

    Parameters
    ----------
    path : path-like
        The ``.h5`` file to create (overwritten). It is written to a temporary
        name and renamed on a clean ``close`` so a crash never leaves a
        half-written file under ``path``.
    modalities : dict[str, int]
        Feature size per modality, in modality order.
    num_actions : int
        C.
    class_names : sequence of str, optional
    source : str
        Free text stored in the file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        modalities: dict[str, int],
        num_actions: int,
        class_names: Sequence[str] | None = None,
        source: str = "",
    ) -> None:
        if not modalities:
            raise DatasetError("modalities must name at least one modality")
        if num_actions <= 0:
            raise DatasetError(f"num_actions must be > 0, got {num_actions}")
        if class_names is not None and len(class_names) not in (0, num_actions):
            raise DatasetError(f"class_names has {len(class_names)} names, expected {num_actions}")
        self.path = Path(path)
        self.modalities = {str(k): int(v) for k, v in modalities.items()}
        self.num_actions = int(num_actions)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._file = h5py.File(self._tmp, "w")
        self._file.attrs["format"] = FORMAT
        self._file.attrs["modalities"] = json.dumps(self.modalities)
        self._file.attrs["num_actions"] = self.num_actions
        self._file.attrs["class_names"] = json.dumps(list(class_names or []))
        self._file.attrs["source"] = source
        self._videos = self._file.create_group("videos")
        self._count = 0

    def add_video(self, video: Video) -> None:
        """Validate and append one video (nothing is written when it is invalid)."""
        where = f"video {video.name!r}"
        if not isinstance(video.name, str) or not video.name:
            raise DatasetError("video name must be a non-empty string")
        ids = [int(t.track_id) for t in video.tracks]
        if len(set(ids)) != len(ids):
            raise DatasetError(f"{where}: duplicate track ids")
        for track in video.tracks:
            _check_track(track, self.modalities, f"{where} track {track.track_id}")
        for tube in video.tubes:
            if not 0 <= int(tube.label) < self.num_actions:
                raise DatasetError(
                    f"{where}: tube label {tube.label} outside 0..{self.num_actions - 1}"
                )
        g = self._videos.create_group(f"v{self._count:06d}")
        self._count += 1
        g.attrs["name"] = video.name
        g.attrs["num_frames"] = int(video.num_frames)
        g.attrs["split"] = video.split
        tracks = g.create_group("tracks")
        for i, track in enumerate(video.tracks):
            tg = tracks.create_group(f"t{i:06d}")
            tg.attrs["track_id"] = int(track.track_id)
            tg.create_dataset("frames", data=np.asarray(track.frames, dtype=np.int64))
            tg.create_dataset("boxes", data=np.asarray(track.boxes, dtype=np.float32))
            fg = tg.create_group("features")
            for name in self.modalities:
                fg.create_dataset(name, data=np.asarray(track.features[name]))
        tubes = g.create_group("tubes")
        for i, tube in enumerate(video.tubes):
            tb = tubes.create_group(f"g{i:06d}")
            tb.attrs["label"] = int(tube.label)
            tb.create_dataset("frames", data=np.asarray(tube.frames, dtype=np.int64))
            tb.create_dataset("boxes", data=np.asarray(tube.boxes, dtype=np.float32))

    def close(self) -> None:
        """Finish the file and move it to ``path``."""
        if self._file.id.valid:
            self._file.close()
            os.replace(self._tmp, self.path)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            self._tmp.unlink(missing_ok=True)


def write_dataset(
    path: str | os.PathLike,
    videos: Iterable[Video],
    *,
    modalities: dict[str, int],
    num_actions: int,
    class_names: Sequence[str] | None = None,
    source: str = "",
) -> Path:
    """Write a whole dataset in one call (see :class:`DatasetWriter`).

    Returns
    -------
    Path
        The written file.
    """
    with DatasetWriter(
        path, modalities=modalities, num_actions=num_actions, class_names=class_names, source=source
    ) as writer:
        for video in videos:
            writer.add_video(video)
    return Path(path)


# --------------------------------------------------------------------- reader
class DatasetReader:
    """Read a dataset written by :class:`DatasetWriter` (context manager).

    Attributes
    ----------
    modalities : dict[str, int]
    num_actions : int
    class_names : list[str]
    source : str
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"dataset {self.path}: no such file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetError(
                f"dataset {self.path}: not a readable HDF5 file (truncated or corrupt?): {exc}"
            ) from exc
        try:
            attrs = self._file.attrs
            if attrs.get("format") != FORMAT:
                raise DatasetError(f"dataset {self.path}: not a {FORMAT} file")
            self.modalities = {str(k): int(v) for k, v in json.loads(attrs["modalities"]).items()}
            self.num_actions = int(attrs["num_actions"])
            self.class_names = list(json.loads(attrs.get("class_names", "[]")))
            self.source = str(attrs.get("source", ""))
            self._keys = sorted(self._file["videos"].keys())
        except DatasetError:
            self._file.close()
            raise
        except (KeyError, OSError, ValueError) as exc:
            self._file.close()
            raise DatasetError(f"dataset {self.path}: bad header ({exc})") from exc

    def __len__(self) -> int:
        return len(self._keys)

    def video(self, index: int) -> Video:
        """Read video number ``index`` (write order), checking every array."""
        key = self._keys[index]
        try:
            g = self._file["videos"][key]
            name = str(g.attrs["name"])
            where = f"dataset {self.path}: video {name!r}"
            tracks = []
            for tkey in sorted(g["tracks"].keys()):
                tg = g["tracks"][tkey]
                feats = {s: tg["features"][s][()] for s in tg["features"]}
                tracks.append(
                    Track(int(tg.attrs["track_id"]), tg["frames"][()], tg["boxes"][()], feats)
                )
            tubes = []
            for gkey in sorted(g["tubes"].keys()):
                gg = g["tubes"][gkey]
                tubes.append(Tube(name, int(gg.attrs["label"]), gg["frames"][()], gg["boxes"][()]))
            video = Video(
                name, int(g.attrs["num_frames"]), tracks, tubes, str(g.attrs.get("split", ""))
            )
        except (KeyError, OSError, RuntimeError) as exc:
            raise DatasetError(
                f"dataset {self.path}: cannot read {key} (truncated or corrupt?): {exc}"
            ) from exc
        except ValueError as exc:  # TubeFormatError and friends
            raise DatasetError(f"dataset {self.path}: {key}: {exc}") from exc
        for track in tracks:
            _check_track(track, self.modalities, f"{where} track {track.track_id}")
        for tube in tubes:
            if tube.label >= self.num_actions:
                raise DatasetError(f"{where}: tube label {tube.label} >= C={self.num_actions}")
        return video

    def videos(self, split: str | None = None) -> Iterator[Video]:
        """Iterate over the videos (of one split when given)."""
        for i in range(len(self)):
            if split is not None:
                s = self._file["videos"][self._keys[i]].attrs.get("split", "")
                if str(s) != split:
                    continue
            yield self.video(i)

    def splits(self) -> dict[str, int]:
        """Number of videos per split tag."""
        out: dict[str, int] = {}
        for key in self._keys:
            s = str(self._file["videos"][key].attrs.get("split", ""))
            out[s] = out.get(s, 0) + 1
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_dataset(path: str | os.PathLike) -> DatasetReader:
    """Open a dataset for reading (use as ``with open_dataset(p) as ds: ...``)."""
    return DatasetReader(path)


def load_tracks(
    path: str | os.PathLike,
    split: str | None = None,
    *,
    iou_threshold: float = 0.3,
) -> tuple[list[LabelledTrack], DatasetReader]:
    """Load every track of a split with float32 features and per-frame labels.

    Parameters
    ----------
    path : path-like
        A ``reclnet-tracks/1`` HDF5 file.
    split : str, optional
        Only videos with this split tag; all when None.
    iou_threshold : float
        Passed to :func:`assign_labels`.

    Returns
    -------
    tracks : list[LabelledTrack]
        In file order.
    info : DatasetReader
        The (closed) reader, for its ``modalities``, ``num_actions`` and ``class_names``.
    """
    out: list[LabelledTrack] = []
    with open_dataset(path) as ds:
        for video in ds.videos(split):
            for t in video.tracks:
                labels = assign_labels(
                    t.frames, t.boxes, video.tubes, iou_threshold, num_actions=ds.num_actions
                )
                feats = {s: np.asarray(x, dtype=np.float32) for s, x in t.features.items()}
                out.append(
                    LabelledTrack(
                        video.name,
                        int(t.track_id),
                        np.asarray(t.frames, dtype=np.int64),
                        np.asarray(t.boxes, dtype=np.float32),
                        feats,
                        labels,
                    )
                )
    return out, ds
