"""MOTChallenge tracks files: parsing, round trip, malformed lines reported by line number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reclnet.runtime.camera.persons import MotFormatError, read_mot, write_mot

GOOD = """\
# a comment, then MOT16 tracker output (frame, id, left, top, width, height, conf, x, y, z)
1,1,100,50,40,80,0.9,-1,-1,-1
1,2,300.5,60,42.5,90,-1,-1,-1,-1
2,1,102,51,40,80,0.8,-1,-1,-1

3,2, 305 , 61 ,42,90
"""


def test_parse_good_file(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(GOOD)
    tracks = read_mot(path)
    assert len(tracks) == 4 and tracks.num_tracks == 2
    assert tracks.frames.tolist() == [0, 0, 1, 2]  # 1-based in the file, 0-based here
    assert tracks.ids.tolist() == [1, 2, 1, 2]
    np.testing.assert_allclose(tracks.boxes[1], [300.5, 60, 343, 150])
    np.testing.assert_allclose(tracks.scores, [0.9, 1.0, 0.8, 1.0])
    ids, boxes, _ = tracks.at(0)
    assert ids.tolist() == [1, 2] and boxes.shape == (2, 4)
    assert tracks.at(7)[0].size == 0


def test_malformed_lines_are_reported_by_number(tmp_path: Path) -> None:
    lines = [
        "1,1,10,10,20,40,1,-1,-1,-1",  # 1 ok
        "1,2,10,10",  # 2 too few fields
        "2,x,10,10,20,40",  # 3 id not a number
        "0,3,10,10,20,40",  # 4 frame 0 (MOT is 1-based)
        "2,1,10,10,-5,40",  # 5 negative width
        "2,4,nan,10,20,40",  # 6 NaN
        "1.5,4,1,1,2,2",  # 7 fractional frame
        "1,1,11,11,20,40",  # 8 duplicate (frame 1, id 1)
        "3,1,10,10,20,40",  # 9 ok
    ]
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MotFormatError) as info:
        read_mot(path)
    err = info.value
    assert [n for n, _ in err.errors] == [2, 3, 4, 5, 6, 7, 8]
    text = str(err)
    assert "7 malformed" in text
    assert "line 2: expected at least 6" in text
    assert "line 3: id must be an integer, got 'x'" in text
    assert "line 4: frame must be an integer >= 1" in text
    assert "line 5: bb_width and bb_height must be > 0" in text
    assert "line 6: bb_left is not finite" in text
    assert "line 8: track 1 appears twice in frame 1 (first on line 1)" in text


def test_report_is_capped_but_counts_everything(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("garbage\n" * 50)
    with pytest.raises(MotFormatError, match=r"(?s)50 malformed .*and 45 more"):
        read_mot(path, max_reported=5)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_mot(tmp_path / "none.txt")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_matches_pandas_reader(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    frames = rng.integers(0, 50, n)
    ids = rng.permutation(n) % 37
    # unique (frame, id) pairs
    _, first = np.unique(np.stack([frames, ids], 1), axis=0, return_index=True)
    frames, ids = frames[first], ids[first]
    xy = rng.uniform(0, 500, (len(frames), 2))
    wh = rng.uniform(5, 100, (len(frames), 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.uniform(0, 1, len(frames))
    path = tmp_path / "r.txt"
    write_mot(path, frames, ids, boxes, scores)
    tracks = read_mot(path)
    # The slow obvious twin: pandas reading the same file.
    df = pd.read_csv(path, header=None).sort_values([0, 1])
    assert tracks.frames.tolist() == (df[0] - 1).tolist()
    assert tracks.ids.tolist() == df[1].tolist()
    np.testing.assert_allclose(tracks.boxes[:, 2], df[2] + df[4], atol=1e-3)
    np.testing.assert_allclose(tracks.boxes[:, 3], df[3] + df[5], atol=1e-3)
    order = np.lexsort((ids, frames))
    np.testing.assert_allclose(tracks.boxes, boxes[order], atol=1e-2)
    np.testing.assert_allclose(tracks.scores, scores[order], atol=1e-4)


def test_ids_and_frames_are_exact_integers(tmp_path: Path) -> None:
    # Through float64 these two ids (2^53 and 2^53 + 1) would be one id "appearing twice".
    big = 2**53
    path = tmp_path / "t.txt"
    path.write_text(f"1,{big},10,10,20,40\n1,{big + 1},50,10,20,40\n2.0,{2**63 - 1},10,10,20,40\n")
    tracks = read_mot(path)
    assert tracks.ids.dtype == np.int64 and tracks.frames.dtype == np.int64
    assert tracks.ids.tolist() == [big, big + 1, 2**63 - 1]
    assert tracks.frames.tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,1e30,10,10,20,40", "id must be an integer, got '1e30'"),
        (f"1,{2**63},10,10,20,40", "id must be an integer in [0, 2^63 - 1]"),
        ("1,-3,10,10,20,40", "id must be an integer in [0, 2^63 - 1]"),
        ("1e3,1,10,10,20,40", "frame must be an integer >= 1"),
        (f"{2**63},1,10,10,20,40", "frame must be an integer in [1, 2^63 - 1]"),
        ("1,1,10,10,1e308,40", "is beyond 16777216 pixels"),
        ("1,1,-1e20,10,20,40", "is beyond 16777216 pixels"),
    ],
)
def test_out_of_range_fields_are_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text(line + "\n")
    with pytest.raises(MotFormatError) as info:
        read_mot(path)
    assert len(info.value.errors) == 1
    assert info.value.errors[0][0] == 1 and message in info.value.errors[0][1]


def test_frame_size_clips_boxes_and_refuses_boxes_outside(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("1,1,-10,20,50,1000\n2,1,150,100,1000000,30\n")
    tracks = read_mot(path, frame_size=(160, 120))
    np.testing.assert_array_equal(tracks.boxes, [[0, 20, 40, 120], [150, 100, 160, 120]])
    assert (read_mot(path).boxes[1] == [150, 100, 1000150, 130]).all()  # unbounded without a size
    path.write_text("1,1,10,10,20,20\n3,1,160,10,20,20\n4,1,10,-40,20,40\n")
    with pytest.raises(MotFormatError) as info:
        read_mot(path, frame_size=(160, 120))
    assert [n for n, _ in info.value.errors] == [2, 3]
    assert "lies outside the 160x120 frame" in str(info.value)
