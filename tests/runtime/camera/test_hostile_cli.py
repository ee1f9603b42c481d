"""`reclnet stream` on hostile arguments: one clear line, the right exit status, inputs intact.

Every case builds a small world in ``tmp_path`` (a synthetic clip, a tracks
file, a fake detector, the session's model directory), runs the CLI in
process, and checks: the exit status; stderr is one line naming the problem
(no traceback); every input and model artifact is byte-identical afterwards
(sha256); any events file is valid JSON Lines. (A malformed tracks file is
reported as one line followed by one indented line per bad line of the file.)
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.cli import main as stream_main
from reclnet.runtime.camera.events_io import read_events
from reclnet.runtime.camera.persons import write_mot
from reclnet.runtime.camera.render import VideoWriter

N = 30


def _clip(path: Path, n: int = N) -> Path:
    with VideoWriter(path, 10, 160, 120, codec="mpeg4") as writer:
        for i in range(n):
            img = np.full((120, 160, 3), 60, np.uint8)
            img[20:100, 10 + 3 * (i % 40) : 40 + 3 * (i % 40)] = 200
            writer.write(img)
    return path


def _damage(src: Path, dst: Path, which: list[int]) -> Path:
    import av

    data = bytearray(src.read_bytes())
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    for k in which:
        pos, size = packets[k]
        data[pos + size // 4 : pos + size // 4 + max(1, size // 2)] = b"\xff" * max(1, size // 2)
    dst.write_bytes(bytes(data))
    return dst


class World:
    """The files one case runs on."""

    def __init__(self, tmp: Path, model: Path) -> None:
        self.tmp = tmp
        self.model = model
        self.video = _clip(tmp / "clip.avi")
        self.tracks = tmp / "tracks.txt"
        write_mot(
            self.tracks,
            np.arange(N),
            np.ones(N, np.int64),
            np.array([[10 + 3 * i, 20, 40 + 3 * i, 100] for i in range(N)], np.float64),
        )
        self.detector = tmp / "detector.onnx"
        self.detector.write_bytes(b"not really a detector, never loaded")
        self.events = tmp / "events.jsonl"

    def inputs(self) -> list[Path]:
        files = [p for p in self.tmp.iterdir() if p.is_file() and p.suffix != ".jsonl"]
        return files + sorted(p for p in self.model.iterdir() if p.is_file())

    def base(self, *extra: str, tracks: bool = True) -> list[str]:
        args = [str(self.video), "--model", str(self.model), "--quiet"]
        if tracks:
            args += ["--tracks", str(self.tracks)]
        return args + list(extra)


def _write_tracks(w: World, line: str) -> list[str]:
    w.tracks.write_text(line + "\n")
    return w.base()


# (id, build args from the world, exit status, text the one stderr line must hold)
Case = tuple[str, Callable[[World], list[str]], int, str]


def _symlink(w: World) -> list[str]:
    (w.tmp / "link.avi").symlink_to(w.video)
    return w.base("--events", str(w.tmp / "link.avi"))


def _hardlink(w: World) -> list[str]:
    os.link(w.video, w.tmp / "hard.avi")
    return w.base("--render", str(w.tmp / "hard.avi"))


def _fifo(w: World) -> list[str]:
    os.mkfifo(w.tmp / "pipe")
    return w.base("--events", str(w.tmp / "pipe"))


def _light_damage(w: World) -> list[str]:
    long = _clip(w.tmp / "long.avi", 200)
    bad = _damage(long, w.tmp / "bad.avi", [100])
    long.unlink()
    w.tracks.write_text("")  # nobody to score: the decoding is what is tested
    return [str(bad), "--model", str(w.model), "--tracks", str(w.tracks), "--quiet"]


def _heavy_damage(w: World) -> list[str]:
    bad = _damage(w.video, w.tmp / "bad.avi", list(range(5, N, 3)))
    return [str(bad), "--model", str(w.model), "--tracks", str(w.tracks), "--events", str(w.events)]


CASES: list[Case] = [
    # Outputs onto inputs.
    ("events-onto-video", lambda w: w.base("--events", str(w.video)), 2, "is the source video"),
    ("events-onto-video-symlink", _symlink, 2, "is the source video"),
    ("render-onto-video-hardlink", _hardlink, 2, "is the source video"),
    (
        "save-tracks-onto-tracks",
        lambda w: w.base("--save-tracks", str(w.tracks)),
        2,
        "is the --tracks input",
    ),
    (
        "timeline-onto-detector",
        lambda w: w.base(
            "--detector", str(w.detector), "--timeline", str(w.detector), tracks=False
        ),
        2,
        "is the --detector model",
    ),
    (
        "snapshot-onto-step-onnx",
        lambda w: w.base("--snapshot", str(w.model / "step.onnx")),
        2,
        "is the model artifact",
    ),
    (
        "render-onto-feature-network",
        lambda w: w.base("--render", str(w.model / "features_rgb.onnx")),
        2,
        "is the model artifact",
    ),
    (
        "two-outputs-one-file",
        lambda w: w.base("--events", str(w.events), "--timeline", str(w.events)),
        2,
        "is the --events output",
    ),
    # Outputs onto what is not a regular file.
    ("snapshot-onto-dev-null", lambda w: w.base("--snapshot", "/dev/null"), 2, "is a device node"),
    ("events-onto-fifo", _fifo, 2, "is a FIFO"),
    ("render-onto-folder", lambda w: w.base("--render", str(w.tmp)), 2, "is a directory"),
    (
        "render-into-missing-folder",
        lambda w: w.base("--render", str(w.tmp / "no" / "such" / "o.mp4")),
        2,
        f"the folder {{tmp}}{os.sep}no{os.sep}such does not exist",
    ),
    (
        "snapshot-under-a-file",
        lambda w: w.base("--snapshot", str(w.tracks / "s.snap")),
        2,
        "tracks.txt is not a folder",
    ),
    (
        "render-unknown-extension",
        lambda w: w.base("--render", str(w.tmp / "o.nosuchformat")),
        2,
        "cannot write the video",
    ),
    # Argument errors: one line, exit 2.
    ("max-frames-zero", lambda w: w.base("--max-frames", "0"), 2, "--max-frames must be >= 1"),
    ("max-frames-text", lambda w: w.base("--max-frames", "ten"), 2, "invalid int value: 'ten'"),
    ("feature-scale-zero", lambda w: w.base("--feature-scale", "0"), 2, "--feature-scale must be"),
    ("feature-scale-nan", lambda w: w.base("--feature-scale", "nan"), 2, "--feature-scale must be"),
    ("retries-negative", lambda w: w.base("--retries", "-1"), 2, "--retries must be >= 0"),
    (
        "threshold-above-one",
        lambda w: w.base("--threshold", "2"),
        2,
        "--threshold must be in [0, 1]",
    ),
    ("lookahead-beyond-window", lambda w: w.base("--lookahead", "100000"), 2, "lookahead"),
    ("detect-every-zero", lambda w: w.base("--detect-every", "0"), 2, "--detect-every must be"),
    ("missing-tracks-file", lambda w: w.base("--tracks", str(w.tmp / "none.txt")), 2, "none.txt"),
    # Silent wrong input made loud.
    ("mot-id-1e30", lambda w: _write_tracks(w, "1,1e30,10,10,20,40"), 2, "id must be an integer"),
    (
        "mot-id-above-int64",
        lambda w: _write_tracks(w, f"1,{2**63},10,10,20,40"),
        2,
        "id must be an integer in [0, 2^63 - 1]",
    ),
    (
        "mot-width-1e308",
        lambda w: _write_tracks(w, "1,1,10,10,1e308,40"),
        2,
        "is beyond 16777216 pixels",
    ),
    (
        "mot-box-outside-frame",
        lambda w: _write_tracks(w, "1,1,500,10,20,40"),
        2,
        "lies outside the 160x120 frame",
    ),
    ("video-lightly-damaged", _light_damage, 0, "warning: "),
    ("video-heavily-damaged", _heavy_damage, 1, "the file is corrupt"),
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("make_args", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_arguments(
    model_dir: Path, tmp_path: Path, capsys, make_args, status: int, message: str
) -> None:
    world = World(tmp_path, model_dir)
    args = make_args(world)
    before = {p: _sha256(p) for p in world.inputs()}
    dev_null = os.stat("/dev/null")
    try:
        got = stream_main(args)
    except SystemExit as exc:  # argparse
        got = exc.code
    err = capsys.readouterr().err
    assert got == status, err
    lines = err.strip().splitlines()
    # One line; a malformed tracks file lists its bad lines under it, one each.
    mot_list = lines[0].endswith("malformed MOTChallenge line(s):")
    assert len(lines) == 1 or (mot_list and all(x.startswith("  line ") for x in lines[1:])), err
    assert message.format(tmp=tmp_path) in (lines[1] if mot_list else lines[0]), err
    assert lines[0].startswith("reclnet stream: ") and "Traceback" not in err
    assert {p: _sha256(p) for p in before} == before  # every input intact
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == dev_null.st_rdev
    for path in (world.events, tmp_path / "pipe"):
        if path.exists() and path.is_file():
            read_events(path)  # valid JSON Lines (raises otherwise)
    if status == 2:
        assert not world.events.exists()  # refused before anything was opened
    if status == 1:
        assert world.events.exists()  # the events of the frames decoded were written
