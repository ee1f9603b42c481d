"""Embedding the C core: the CSV example program and a C extension using the PyCapsule.

The example is csrc/examples/scores_to_events.c; the extension is capsule_client.c beside
this file (csrc/ never includes Python.h). Both are compiled here with the system C compiler against the installed header
(``reclnet.runtime.get_include()``) and their outputs compared with ``SegmentBank``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import reclnet.runtime
from reclnet.paths import source_checkout
from reclnet.runtime.postproc import EVENT_DTYPE, EVENT_START, SegmentBank, causal_median
from reclnet.runtime.postproc import _core as _postproc

ROOT = source_checkout()
CSRC = ROOT / "csrc"
# A Python extension (includes Python.h), so it lives with its test, not in csrc/ (pure C).
CAPSULE_CLIENT = Path(__file__).with_name("capsule_client.c")
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc/gcc) on PATH")


def compile_c(args: list[str]) -> None:
    proc = subprocess.run([CC, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_get_include_has_the_header() -> None:
    inc = Path(reclnet.runtime.get_include())
    header = inc / "reclnet" / "postproc.h"
    assert header.read_text() == (CSRC / "include" / "reclnet" / "postproc.h").read_text()
    assert _postproc.CAPSULE_NAME == "reclnet.runtime.postproc._core.rpp_api_v1"


@pytest.fixture(scope="module")
def example_program(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("example") / "scores_to_events"
    sources = [str(CSRC / "examples" / "scores_to_events.c")]
    sources += sorted(str(p) for p in (CSRC / "src").glob("*.c"))
    compile_c(
        ["-std=c99", "-O2", "-I", reclnet.runtime.get_include(), *sources, "-lm", "-o", str(exe)]
    )
    return exe


def bank_events_as_csv(rows: list[tuple[int, int, np.ndarray]], C: int, **kw) -> list[str]:
    bank = SegmentBank(C, **kw)
    slots: dict[int, int] = {}
    out: list[np.ndarray] = []
    for tid, frame, scores in rows:
        if tid not in slots:
            slots[tid] = bank.open_track(tid)
        out.append(bank.push(frame, [slots[tid]], scores[None]))
    out += [bank.close_track(s) for s in slots.values()]
    return [
        f"{'START' if e['kind'] == EVENT_START else 'END'},{e['track_id']},{e['label']},"
        f"{e['first_frame']},{e['last_frame']},{e['num_samples']},{float(e['score']):.17g}"
        for part in out
        for e in part
    ]


def test_example_program_matches_segment_bank(example_program: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = []
    for frame in range(300):
        for tid in (3, 11, 40):
            if rng.random() < 0.2 or (tid == 40 and frame < 50):
                continue  # tracks miss frames: gaps
            level = 0.7 if (frame // 40 + tid) % 3 == 0 else 0.1
            rows.append((tid, frame, np.round(np.clip(level + rng.normal(0, 0.2, 4), 0, 1), 3)))
    lines = ["track_id,frame,a,b,c,d"] + [
        f"{t},{f}," + ",".join(f"{v:.3f}" for v in s) for t, f, s in rows
    ]
    csv = tmp_path / "scores.csv"
    csv.write_text("\n".join(lines) + "\n")
    kw = dict(
        window=9, lookahead=2, threshold=0.5, close_threshold=0.4, top_k=5, min_length=3, max_gap=2
    )
    args = [
        str(example_program),
        "--window",
        "9",
        "--lookahead",
        "2",
        "--threshold",
        "0.5",
        "--close-threshold",
        "0.4",
        "--top-k",
        "5",
        "--min-length",
        "3",
        "--max-gap",
        "2",
    ]
    proc = subprocess.run([*args, str(csv)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows32 = [(t, f, s.astype(np.float32)) for t, f, s in rows]
    expected = bank_events_as_csv(rows32, 4, **kw)
    assert len(expected) > 10
    assert proc.stdout.splitlines() == expected


def test_example_program_reports_bad_lines(example_program: Path, tmp_path: Path) -> None:
    cases = {
        "1,5,0.1,0.2\n1,5,0.3,0.4\n": "line 2: frame not after",
        "1,5,0.1,0.2\n1,6,nan,0.4\n": "line 2: score is NaN",
        "1,5,0.1,0.2\n1,6,0.4\n": "line 2: expected track_id,frame and 2 scores",
        "1,5,0.1,x\n": "line 1: expected",
    }
    for text, message in cases.items():
        csv = tmp_path / "bad.csv"
        csv.write_text(text)
        proc = subprocess.run([str(example_program), str(csv)], capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, (text, proc.stderr)
    csv.write_text("1,5,0.1,0.2\n")
    proc = subprocess.run(
        [str(example_program), "--window", "4", "--lookahead", "2", str(csv)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "invalid configuration" in proc.stderr


def test_capsule_client_extension(tmp_path: Path) -> None:
    py_include = sysconfig.get_paths()["include"]
    if not (Path(py_include) / "Python.h").exists():
        pytest.skip(f"Python headers not installed ({py_include}/Python.h missing)")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = tmp_path / f"capsule_client{suffix}"
    # Only the header: the core comes through the capsule at run time, not by linking.
    compile_c(
        [
            "-shared",
            "-fPIC",
            "-O2",
            "-I",
            py_include,
            "-I",
            reclnet.runtime.get_include(),
            str(CAPSULE_CLIENT),
            "-o",
            str(target),
        ]
    )
    spec = importlib.util.spec_from_file_location("capsule_client", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(9)
    x = rng.random((120, 5), dtype=np.float32)
    for window, lookahead in [(1, 0), (6, 2), (25, 12)]:
        medians, events = module.run(x.tobytes(), 120, 5, window, lookahead, 0.5)
        np.testing.assert_array_equal(
            np.frombuffer(medians, np.float32).reshape(120, 5), causal_median(x, window, lookahead)
        )
        bank = SegmentBank(5, window=window, lookahead=lookahead, threshold=0.5, top_k=3)
        slot = bank.open_track(77)
        ref = [bank.push(f, [slot], x[f : f + 1]) for f in range(120)] + [bank.close_track(slot)]
        got = np.frombuffer(events, EVENT_DTYPE)
        assert len(got) > 0
        np.testing.assert_array_equal(got, np.concatenate(ref).astype(EVENT_DTYPE))
    with pytest.raises(ValueError, match="NaN or infinite"):
        module.run(np.full(10, np.nan, np.float32).tobytes(), 2, 5, 3, 1, 0.5)


def test_ctypes_calls_the_core_in_the_extension() -> None:
    import ctypes

    lib = ctypes.CDLL(_postproc.__file__)
    f32p = ctypes.POINTER(ctypes.c_float)
    lib.rpp_causal_median.restype = ctypes.c_int
    lib.rpp_causal_median.argtypes = [
        f32p,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        f32p,
    ]
    lib.rpp_status_string.restype = ctypes.c_char_p
    x = np.random.default_rng(4).random((40, 3), dtype=np.float32)
    out = np.empty_like(x)
    status = lib.rpp_causal_median(x.ctypes.data_as(f32p), 40, 3, 7, 3, out.ctypes.data_as(f32p))
    assert status == 0
    np.testing.assert_array_equal(out, causal_median(x, 7, 3))
    assert (
        lib.rpp_causal_median(x.ctypes.data_as(f32p), 40, 3, 7, 4, out.ctypes.data_as(f32p)) == -3
    )
    assert lib.rpp_status_string(-3) == b"invalid configuration"


def test_csrc_never_includes_python_h() -> None:
    # csrc/ is the pure C99 core: anything needing CPython lives outside it.
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted(CSRC.rglob("*"))
        if p.suffix in (".c", ".h") and "Python.h" in p.read_text(errors="replace")
    ]
    assert offenders == []
