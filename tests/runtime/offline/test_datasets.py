"""Ground-truth loaders on small synthetic files (exact conversions, errors) and the real data."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from reclnet.paths import data_dir
from reclnet.runtime.offline.datasets import (
    JHMDB_CLASSES,
    DatasetError,
    default_data_dir,
    load_jhmdb,
    load_ucf101_24,
)

DATA = data_dir() or Path("data")
UCF = DATA / "ucf101-24" / "pyannot_with_class_names.pkl"
JHMDB = DATA / "jhmdb" / "groundtruths_jhmdb.zip"


def write_ucf(tmp_path: Path, db: dict, test: list[str]) -> Path:
    path = tmp_path / "annot.pkl"
    data = {"classes": ["Basketball", "Diving"], "trainvideos": ["Diving/v_b"], "db": db}
    path.write_bytes(pickle.dumps(data, protocol=4))  # what the loader admits: protocols 3-4
    (tmp_path / "testlist01.txt").write_text("\n".join(test) + "\n")
    return path


def test_ucf_boxes_are_cast_before_adding(tmp_path: Path) -> None:
    boxes = np.array([[200, 10, 100, 30], [201, 11, 100, 250]], dtype=np.uint8)
    db = {
        "Basketball/v_a": {
            "numf": 50,
            "label": 0,
            "annotations": [{"label": 0, "sf": 7, "ef": 9, "boxes": boxes}],
        },
        "Diving/v_b": {"numf": 20, "label": 1, "annotations": []},
    }
    path = write_ucf(tmp_path, db, ["Basketball/v_a"])
    gt = load_ucf101_24(path)
    (t,) = gt.tubes
    assert (t.video, t.label, t.first_frame, t.last_frame) == ("Basketball/v_a", 0, 7, 8)
    # uint8 arithmetic would wrap 200 + 100 to 44
    np.testing.assert_array_equal(t.boxes, [[200, 10, 300, 40], [201, 11, 301, 261]])
    assert gt.num_frames == {"Basketball/v_a": 50} and gt.num_classes == 2
    train = load_ucf101_24(path, split="train")
    assert train.tubes == [] and train.num_frames == {"Diving/v_b": 20}
    assert len(load_ucf101_24(path, split="all").num_frames) == 2


def test_ucf_errors_name_file_and_problem(tmp_path: Path) -> None:
    db = {"Basketball/v_a": {"numf": 5, "label": 0, "annotations": []}}
    path = write_ucf(tmp_path, db, ["Basketball/v_a", "Basketball/v_missing"])
    with pytest.raises(DatasetError, match=rf"{path}: video 'Basketball/v_missing'.*not in 'db'"):
        load_ucf101_24(path)
    db["Basketball/v_a"]["annotations"] = [
        {"label": 0, "sf": 0, "ef": 3, "boxes": np.zeros((2, 4), np.uint16)}
    ]
    path = write_ucf(tmp_path, db, ["Basketball/v_a"])
    with pytest.raises(DatasetError, match=r"tube 0: boxes shape \(2, 4\) != \(3, 4\)"):
        load_ucf101_24(path)
    db["Basketball/v_a"]["annotations"] = [
        {"label": "x", "sf": 0, "ef": 1, "boxes": [[0, 0, 1, 1]]}
    ]
    path = write_ucf(tmp_path, db, ["Basketball/v_a"])
    with pytest.raises(DatasetError, match=r"video 'Basketball/v_a': malformed entry \(ValueError"):
        load_ucf101_24(path)
    path.write_bytes(pickle.dumps({"classes": ["A"], "db": [1, 2]}, protocol=4))
    with pytest.raises(DatasetError, match="'db' must be a dict"):
        load_ucf101_24(path)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=rf"{bad}: cannot load"):
        load_ucf101_24(bad)
    with pytest.raises(ValueError, match="split must be"):
        load_ucf101_24(path, split="val")


def write_jhmdb(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "gt.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("groundtruths_jhmdb/", "")
        for name, text in files.items():
            zf.writestr(f"groundtruths_jhmdb/{name}", text)
    return path


def test_jhmdb_zip(tmp_path: Path) -> None:
    path = write_jhmdb(
        tmp_path,
        {
            "clap_x_1_00002.txt": "3 10 20 30 40\n",
            "clap_x_1_00001.txt": "3 11 21 31 41\n",
            "run_y_00001.txt": "12 0 0 5 5",
        },
    )
    gt = load_jhmdb(path)
    assert [(t.video, t.label, t.first_frame, t.last_frame) for t in gt.tubes] == [
        ("clap_x_1", 2, 1, 2),
        ("run_y", 11, 1, 1),
    ]
    assert JHMDB_CLASSES[2] == "clap" and JHMDB_CLASSES[11] == "run"
    np.testing.assert_array_equal(gt.tubes[0].boxes, [[11, 21, 31, 41], [10, 20, 30, 40]])
    gap = write_jhmdb(tmp_path, {"a_00001.txt": "1 0 0 1 1", "a_00003.txt": "1 0 0 1 1"})
    with pytest.raises(DatasetError, match="video a: annotated frames are not consecutive"):
        load_jhmdb(gap)
    unknown = write_jhmdb(tmp_path, {"a_00001.txt": "22 0 0 1 1"})
    with pytest.raises(DatasetError, match="unknown class 22"):
        load_jhmdb(unknown)
    with pytest.raises(DatasetError, match="cannot read JHMDB zip"):
        load_jhmdb(tmp_path / "absent.zip")


def test_default_data_dir_is_beside_the_repo(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RECLNET_DATA", raising=False)
    repo = Path(__file__).resolve().parents[3]
    assert default_data_dir() == repo.parent / "shared" / "data"
    assert default_data_dir(tmp_path) == tmp_path  # a --data flag wins
    monkeypatch.setenv("RECLNET_DATA", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"


@pytest.mark.data
@pytest.mark.skipif(not UCF.exists(), reason=f"UCF101-24 annotations not found at {UCF}")
def test_real_ucf101_24_test_split() -> None:
    gt = load_ucf101_24(UCF)
    assert len(gt.num_frames) == 910 and len(gt.tubes) == 1315 and gt.num_classes == 24
    assert all(0 <= t.first_frame and t.last_frame < gt.num_frames[t.video] for t in gt.tubes)
    assert all(np.all(t.boxes[:, 2:] > t.boxes[:, :2]) for t in gt.tubes)
    assert len(load_ucf101_24(UCF, split="all").tubes) == 4458


@pytest.mark.data
@pytest.mark.skipif(not JHMDB.exists(), reason=f"JHMDB ground truth not found at {JHMDB}")
def test_real_jhmdb() -> None:
    gt = load_jhmdb(JHMDB)
    assert len(gt.tubes) == 268 and gt.num_classes == 21
    assert {t.label for t in gt.tubes} == set(range(21))
    assert sum(len(t) for t in gt.tubes) == 9126  # one file per annotated frame
