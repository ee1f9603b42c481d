"""Ground-truth loaders: UCF101-24 (corrected annotations pickle) and JHMDB-21 (YOWO zip) to Tubes.

Frame numbers are kept as the files give them: 0-based for UCF101-24 (``sf``), the
file-name numbers (1-based) for JHMDB. Boxes are ``x1 y1 x2 y2`` float32 pixels.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reclnet.paths import ENV_VAR, data_dir

from .safe_pickle import SafePickleError
from .safe_pickle import load as safe_load
from .tubes import Tube

__all__ = [
    "GroundTruth",
    "load_ucf101_24",
    "load_jhmdb",
    "JHMDB_CLASSES",
    "default_data_dir",
]

JHMDB_CLASSES: tuple[str, ...] = (
    "brush_hair",
    "catch",
    "clap",
    "climb_stairs",
    "golf",
    "jump",
    "kick_ball",
    "pick",
    "pour",
    "pullup",
    "push",
    "run",
    "shoot_ball",
    "shoot_bow",
    "shoot_gun",
    "sit",
    "stand",
    "swing_baseball",
    "throw",
    "walk",
    "wave",
)


def default_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data folder of :func:`reclnet.paths.data_dir` (may not exist).

    Parameters
    ----------
    explicit : path-like, optional
        A ``--data`` flag's value; wins over ``RECLNET_DATA`` and the source checkout.

    Raises
    ------
    FileNotFoundError
        In an installed package with no ``RECLNET_DATA``: pass the folder explicitly.
    """
    found = data_dir(explicit)
    if found is None:
        raise FileNotFoundError(
            f"no data folder: set {ENV_VAR} or pass the folder (e.g. --data DIR)"
        )
    return found


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of one split.

    Attributes
    ----------
    tubes : list of Tube
        Sorted by (video, first frame).
    class_names : list of str
        Index = label.
    num_frames : dict of str to int
        Frames per video of the split (every video of the split, annotated or not).
    """

    tubes: list[Tube]
    class_names: list[str]
    num_frames: dict[str, int]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def videos(self) -> list[str]:
        return sorted(self.num_frames)


class DatasetError(ValueError):
    """A ground-truth file is missing or malformed; the message names the file and problem."""


def load_ucf101_24(
    path: str | os.PathLike[str],
    *,
    split: str = "test",
    testlist: str | os.PathLike[str] | None = None,
) -> GroundTruth:
    """Load the corrected UCF101-24 annotations (``pyannot_with_class_names.pkl``).

    Parameters
    ----------
    path : path-like
        The pickle: ``{"classes", "trainvideos", "db"}``, ``db[video] = {"numf", "label",
        "annotations": [{"label", "sf", "ef", "boxes" (ef - sf, 4) [x, y, w, h]}]}``.
    split : str
        ``"test"`` (videos of ``testlist``), ``"train"`` (``trainvideos``) or ``"all"``.
    testlist : path-like, optional
        Test video list, one name a line (default ``testlist01.txt`` beside the pickle).

    Returns
    -------
    GroundTruth
        Tube frames ``sf .. ef - 1``; boxes ``x1 = x, y1 = y, x2 = x + w, y2 = y + h``
        (computed in int64: the pickle stores uint8/uint16 and would overflow).
    """
    path = Path(path)
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    try:
        # The annotations exist only as a pickle: read with the restricted unpickler,
        # which admits data (containers, numpy arrays) and never runs code.
        data = safe_load(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot load UCF101-24 annotations: {exc}") from exc
    except SafePickleError as exc:
        raise DatasetError(f"{path}: cannot load UCF101-24 annotations: {exc.problem}") from exc
    if not isinstance(data, dict) or not {"classes", "db"} <= set(data):
        raise DatasetError(f"{path}: expected a dict with 'classes' and 'db'")
    if not isinstance(data["db"], dict) or not isinstance(data["classes"], list | tuple):
        raise DatasetError(f"{path}: 'db' must be a dict and 'classes' a list")
    classes = [str(c) for c in data["classes"]]
    db = data["db"]
    if split == "test":
        listfile = Path(testlist) if testlist is not None else path.parent / "testlist01.txt"
        try:
            videos = [v.strip() for v in listfile.read_text().splitlines() if v.strip()]
        except OSError as exc:
            raise DatasetError(f"{listfile}: cannot read test list: {exc}") from exc
    elif split == "train":
        videos = [str(v) for v in data.get("trainvideos", [])]
    else:
        videos = sorted(db)
    tubes: list[Tube] = []
    num_frames: dict[str, int] = {}
    for video in videos:
        if video not in db:
            raise DatasetError(f"{path}: video {video!r} of the {split} split is not in 'db'")
        try:
            num_frames[video], video_tubes = _ucf_video(path, video, db[video], len(classes))
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # a well-formed pickle can still hold the wrong things: name where
            raise DatasetError(
                f"{path}: video {video!r}: malformed entry ({type(exc).__name__}: {exc})"
            ) from exc
        tubes += video_tubes
    tubes.sort(key=lambda t: (t.video, t.first_frame, t.label))
    return GroundTruth(tubes, classes, num_frames)


def _ucf_video(path: Path, video: str, entry: dict, num_classes: int) -> tuple[int, list[Tube]]:
    """(number of frames, tubes) of one ``db`` entry of the UCF101-24 pickle."""
    tubes = []
    for k, ann in enumerate(entry.get("annotations", [])):
        sf, ef = int(ann["sf"]), int(ann["ef"])
        b = np.asarray(ann["boxes"]).astype(np.int64)
        if b.shape != (ef - sf, 4):
            raise DatasetError(f"{path}: {video} tube {k}: boxes shape {b.shape} != ({ef - sf}, 4)")
        boxes = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1).astype(np.float32)
        label = int(ann["label"])
        if not 0 <= label < num_classes:
            raise DatasetError(f"{path}: {video} tube {k}: unknown label {label}")
        tubes.append(Tube(video, label, np.arange(sf, ef, dtype=np.int64), boxes))
    return int(entry["numf"]), tubes


_JHMDB_NAME = re.compile(r"^(?:.*/)?(?P<video>.+)_(?P<frame>\d{5})\.txt$")


def load_jhmdb(path: str | os.PathLike[str]) -> GroundTruth:
    """Load the JHMDB-21 split-1 test ground truth zip (YOWO's ``groundtruths_jhmdb``).

    Parameters
    ----------
    path : path-like
        Zip of ``<video>_<frame:05d>.txt`` files holding ``<class 1-21> x1 y1 x2 y2``.

    Returns
    -------
    GroundTruth
        One tube per video (label = class - 1, frames as numbered in the file names, which
        must be consecutive); ``num_frames`` is the number of annotated frames.
    """
    path = Path(path)
    rows: dict[str, list[tuple[int, int, list[float]]]] = defaultdict(list)
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith("/"):
                    continue
                m = _JHMDB_NAME.match(name)
                if m is None:
                    raise DatasetError(f"{path}: unexpected member {name!r}")
                text = io.TextIOWrapper(zf.open(name), encoding="utf-8").read().split()
                if len(text) != 5:
                    raise DatasetError(f"{path}: {name}: expected 'class x1 y1 x2 y2'")
                label = int(text[0]) - 1
                if not 0 <= label < len(JHMDB_CLASSES):
                    raise DatasetError(f"{path}: {name}: unknown class {text[0]}")
                rows[m["video"]].append((int(m["frame"]), label, [float(v) for v in text[1:]]))
    except (OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot read JHMDB zip: {exc}") from exc
    tubes = []
    for video, items in sorted(rows.items()):
        items.sort()
        labels = {lab for _, lab, _ in items}
        if len(labels) != 1:
            raise DatasetError(f"{path}: video {video} has several classes {sorted(labels)}")
        frames = np.array([f for f, _, _ in items], dtype=np.int64)
        if np.any(np.diff(frames) != 1):
            raise DatasetError(f"{path}: video {video}: annotated frames are not consecutive")
        boxes = np.array([b for _, _, b in items], dtype=np.float32)
        tubes.append(Tube(video, labels.pop(), frames, boxes))
    return GroundTruth(tubes, list(JHMDB_CLASSES), {t.video: len(t) for t in tubes})
