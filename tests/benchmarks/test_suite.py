"""The benchmark suite runner (`reclnet bench`), the row protocol, machine facts, the
floors and the peers' precision bookkeeping.

Benchmarks here are tiny fake modules written into a temporary directory, and fake
OpenVINO objects: the tests check structure, target selection by fields and rendering,
never timings.
"""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from reclnet.benchmarks import bench_floor, bench_peers, bench_step, machine, rows, suite
from reclnet.benchmarks.timing import Timing
from reclnet.config import RecLNetConfig

GOOD = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    out = []
    for n in (1, 8, 128):
        base = row("{name}", "step", "pytorch", unit="ms", stats=(1.8 * n, 2.0 * n, 2.4 * n),
                   precision="fp32", variant="eager, batched", n=n, quick=quick,
                   floor_kind="fp32_torch")
        out.append(base)
        out.append(row("{name}", "step", "onnxruntime", unit="ms",
                       stats=(0.09 * n, 0.1 * n, 0.12 * n), precision="int8",
                       variant="signed", n=n, baseline=base, label="ort int8 (signed)",
                       floor_kind="int8_all"))
    return out
"""

FLOOR = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    return [row("floor", "step floor", "floor", unit="ms", stats=(0.05 * n, 0.05 * n, 0.06 * n),
                precision="int8", variant="int8_all", n=n, label="floor int8 (every matrix)",
                floor_kind="int8_all", bound="memory")
            for n in (1, 8, 128)]
"""

POSTPROC = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    out = []
    for n in (100, 1):
        base = row("postproc", "window 25", "bottleneck.move_median", unit="ns/sample",
                   stats=(40.0, 44.0, 80.0), n=n, classes=24)
        out.append(base)
        for impl, ns in (("reclnet C core", 5.0), ("numpy", 900.0)):
            out.append(row("postproc", "window 25", impl, unit="ns/sample",
                           stats=(ns, ns * 1.1, ns * 2), n=n, classes=24, baseline=base))
    return out
"""

STREAM = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    out = [row("stream", "vtest.avi", "stream pipeline", unit="ms/frame", stats=(t, t, t),
               variant="HOG every 1", label=f"stage {stage}", stage=stage, mean_ms=t)
           for stage, t in (("decode", 2.0), ("detect", 9.0), ("step", 1.0), ("post", 0.1))]
    out.append(row("stream", "vtest.avi", "stream pipeline", unit="ms/frame",
                   stats=(12.0, 12.0, 12.0), variant="HOG every 1", label="end to end",
                   stage=None))
    return out
"""

FAILING = """
def run(quick=False):
    raise RuntimeError("boom in the benchmark")
"""

MISSING_DEP = """
import reclnet_no_such_dependency_xyz  # an optional dependency that is absent

def run(quick=False):
    return []
"""

INVALID = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    bad_order = row("invalid", "x", "y", unit="ms", stats=(3.0, 1.0, 2.0))
    no_fields = {"benchmark": "invalid", "case": "x", "impl": "y", "unit": "ms",
                 "min": 1.0, "median": 1.0, "max": 1.0}
    return [bad_order, no_fields, "not a row"]
"""

SKIPPING = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    return [row("skipping", "needs data", "x", unit="ms", stats=None, n=4,
                skipped="data set absent")]
"""

DUPLICATE = """
from reclnet.benchmarks.rows import row

def run(quick=False):
    return [row("duplicate", "c", "x", unit="ms", stats=(1.0, 1.0, 1.0), n=1, label="one"),
            row("duplicate", "c", "x", unit="ms", stats=(2.0, 2.0, 2.0), n=1, label="two")]
"""


def _write(directory: Path, modules: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (directory / f"bench_{name}.py").write_text(textwrap.dedent(source).replace("{name}", name))
    return directory


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "benches",
        {
            "step": GOOD,
            "floor": FLOOR,
            "postproc": POSTPROC,
            "stream": STREAM,
            "failing": FAILING,
            "missing": MISSING_DEP,
            "invalid": INVALID,
            "skipping": SKIPPING,
        },
    )


def test_discover_sorted_and_filtered(bench_dir: Path) -> None:
    (bench_dir / "helper.py").write_text("x = 1\n")  # not a benchmark
    names = [suite.subject(p) for p in suite.discover(bench_dir)]
    assert names == sorted(
        ["step", "floor", "postproc", "stream", "failing", "missing", "invalid", "skipping"]
    )
    only = suite.discover(bench_dir, only=["bench_step", "stream.py"])
    assert [suite.subject(p) for p in only] == ["step", "stream"]
    with pytest.raises(ValueError, match="unknown benchmark.*nope"):
        suite.discover(bench_dir, only=["nope"])


def test_real_benchmarks_are_discovered() -> None:
    names = [suite.subject(p) for p in suite.discover()]
    assert {"floor", "peers", "step", "postproc", "scorer", "stream"} <= set(names)


def test_statuses_of_failing_missing_invalid_and_skipping(bench_dir: Path) -> None:
    doc = suite.run_suite(suite.discover(bench_dir), quick=True, log=lambda s: None)
    by_name = {b["name"]: b for b in doc["benchmarks"]}
    assert by_name["step"]["status"] == "ok" and len(by_name["step"]["rows"]) == 6
    assert all(r["quick"] is True for r in by_name["step"]["rows"] if "quick" in r)
    assert by_name["failing"]["status"] == "failed"
    assert "boom in the benchmark" in by_name["failing"]["reason"]
    assert "RuntimeError" in by_name["failing"]["problems"][0]
    assert by_name["missing"]["status"] == "skipped"
    assert "reclnet_no_such_dependency_xyz" in by_name["missing"]["reason"]
    invalid = by_name["invalid"]
    assert invalid["status"] == "failed" and len(invalid["problems"]) == 3
    assert any("min <= median <= max" in p for p in invalid["problems"])
    assert any("missing field 'precision'" in p for p in invalid["problems"])
    assert by_name["skipping"]["status"] == "skipped"
    assert by_name["skipping"]["reason"] == "data set absent"


def test_rows_sharing_their_fields_are_reported(tmp_path: Path) -> None:
    d = _write(tmp_path / "d", {"duplicate": DUPLICATE})
    [result] = [suite.run_benchmark(p, quick=True) for p in suite.discover(d)]
    assert result.status == "ok" and len(result.rows) == 2
    assert len(result.problems) == 1 and "same fields as row 0" in result.problems[0]


def test_missing_reclnet_module_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    d = _write(
        tmp_path / "b",
        {"x": "import reclnet.no_such_part\n\ndef run(quick=False):\n    return []\n"},
    )
    [result] = [suite.run_benchmark(p, quick=True) for p in suite.discover(d)]
    assert result.status == "failed"


def test_results_files_schema_and_plots(bench_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = suite.main(["--quick", "--out", str(out), "--bench-dir", str(bench_dir)])
    assert code == 1  # a benchmark failed; the others still ran and were written
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == suite.SCHEMA_VERSION == 2 and doc["quick"] is True
    assert doc["command"].startswith("reclnet bench --quick")
    m = doc["machine"]
    for key in ("cpu_model", "logical_cpus", "cpu_flags", "isa", "caches", "libraries"):
        assert key in m
    assert set(m["isa"]) == {"avx2", "avx512", "vnni", "bf16", "amx"}
    assert m["libraries"]["numpy"] == np.__version__
    for bench in doc["benchmarks"]:
        assert bench["status"] in suite.STATUSES
        assert set(bench) >= {"name", "reason", "seconds", "rows", "problems"}
        for r in bench["rows"]:
            assert suite.validate_row(r) == []
            assert set(rows.FIELDS) <= set(r)
    assert [t["status"] for t in doc["targets"]]  # judged, even if unknown
    assert set(doc["plots"]) == {
        "latency_vs_tracks.png",
        "postproc_per_sample.png",
        "stream_stages.png",
    }
    for name in doc["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    # Columns N and precision come from the fields; the floor is the row's floor_kind at its N.
    assert "| case | N | impl | precision | baseline |" in md
    assert "| step | 128 | ort int8 (signed) | int8 | pytorch fp32 (eager, batched) |" in md
    assert "| 20.00x | 6.4 (int8, memory) |" in md
    assert "- CPU flags: " in md
    assert "**failed**: RuntimeError: boom" in md
    assert "skipped: needs data N=4 / x: data set absent" in md
    assert "## Targets" in capsys.readouterr().out


def test_only_one_benchmark_exits_zero(bench_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert suite.main(["--out", str(out), "--bench-dir", str(bench_dir), "--only", "postproc"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [b["name"] for b in doc["benchmarks"]] == ["postproc"]
    assert doc["quick"] is False
    assert doc["plots"] == ["postproc_per_sample.png"]
    assert suite.main(["--bench-dir", str(bench_dir), "--only", "nope"]) == 2


def test_doc_block_is_replaced_between_markers(bench_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    head, tail = "# Benchmarks\n\nintro\n\n", "\n\n## Later\n\nkept\n"
    page.write_text(f"{head}{suite.DOC_START}\nold table\n{suite.DOC_END}{tail}")
    argv = ["--out", str(tmp_path / "o"), "--bench-dir", str(bench_dir), "--only", "step"]
    assert suite.main([*argv, "--doc", str(page)]) == 0
    text = page.read_text()
    assert text.startswith(head) and text.endswith(f"{suite.DOC_END}{tail}")
    assert "old table" not in text
    assert "#### step" in text and "| step | 128 | ort int8 (signed) |" in text
    assert "#### Targets" in text and "- command: `reclnet bench --out" in text
    assert "# reclnet benchmark results" not in text
    # Re-rendering a saved results.json gives the same block without running anything.
    saved = tmp_path / "o" / "results.json"
    page2 = tmp_path / "page2.md"
    page2.write_text(f"{suite.DOC_START}\n{suite.DOC_END}\n")
    out2 = tmp_path / "o2"
    assert suite.main(["--from-json", str(saved), "--out", str(out2), "--doc", str(page2)]) == 0
    assert suite.render_summary(json.loads(saved.read_text()), "####") in page2.read_text()
    assert (out2 / "results.md").read_text() == (tmp_path / "o" / "results.md").read_text()
    # A page without markers gets them, a missing page is created; one marker alone is refused.
    bare = tmp_path / "bare.md"
    bare.write_text("# Benchmarks\n\nno markers\n")
    assert suite.main(["--from-json", str(saved), "--out", str(out2), "--doc", str(bare)]) == 0
    text = bare.read_text()
    assert text.startswith("# Benchmarks\n\nno markers\n") and text.rstrip().endswith(suite.DOC_END)
    assert text.index(suite.DOC_START) < text.index("#### Targets") < text.index(suite.DOC_END)
    new = tmp_path / "new" / "benchmarks.md"
    assert suite.main(["--from-json", str(saved), "--out", str(out2), "--doc", str(new)]) == 0
    assert suite.DOC_START in new.read_text()
    half = tmp_path / "half.md"
    half.write_text(f"{suite.DOC_END}\n{suite.DOC_START}\n")
    before = page.read_text()
    assert suite.main([*argv, "--doc", str(half)]) == 2
    assert half.read_text() == f"{suite.DOC_END}\n{suite.DOC_START}\n"
    assert page.read_text() == before
    assert suite.build_parser().parse_args(["--doc"]).doc == suite.DEFAULT_DOC
    assert suite.build_parser().parse_args([]).doc is None


def test_from_json_refuses_old_and_broken_results(bench_dir: Path, tmp_path: Path, capsys) -> None:
    saved = tmp_path / "results.json"
    out = ["--out", str(tmp_path / "o")]
    for doc, message in (
        ({"schema": 1, "benchmarks": []}, "schema 1: its rows have no fields"),
        ({}, "schema None, expected 2"),
        ([], "not a results document"),
        ({"schema": 2, "benchmarks": [{"name": "x", "rows": [{"case": "c"}]}]}, "invalid rows"),
    ):
        saved.write_text(json.dumps(doc))
        assert suite.main(["--from-json", str(saved), *out]) == 2
        assert message in capsys.readouterr().err
    saved.write_text("{not json")
    assert suite.main(["--from-json", str(saved), *out]) == 2


# ---------------------------------------------------------------- the row protocol
def test_row_constructor_fills_every_field() -> None:
    base = rows.row("b", "c", "pytorch", unit="ms", stats=(1.0, 4.0, 5.0), precision="fp32", n=3)
    assert set(rows.FIELDS) <= set(base) and rows.validate_row(base) == []
    assert base["label"] == "pytorch fp32" and base["baseline"] is None
    t = Timing(0.001, 0.002, 0.004, 0.0039, 5, 10)
    r = rows.row(
        "b", "c", "onnxruntime", unit="ms", stats=t, scale=1e3, precision="int8",
        variant="signed", n=3, classes=24, baseline=base, max_abs_diff=0.5,
    )  # fmt: skip
    assert (r["min"], r["median"], r["max"]) == pytest.approx((1.0, 2.0, 4.0))
    assert r["p99"] == pytest.approx(3.9) and (r["repeat"], r["number"]) == (5, 10)
    assert r["ratio_vs_baseline"] == pytest.approx(2.0)  # baseline median / this median
    assert r["baseline"] == {"impl": "pytorch", "precision": "fp32", "variant": None,
                             "label": "pytorch fp32"}  # fmt: skip
    assert r["label"] == "onnxruntime int8 (signed)" and r["max_abs_diff"] == 0.5
    # Another unit: no ratio from medians; an explicit ratio wins.
    other = rows.row("b", "c", "x", unit="s", stats=(1.0, 1.0, 1.0), baseline=base)
    assert other["ratio_vs_baseline"] is None
    assert (
        rows.row("b", "c", "x", unit="ms", stats=(1, 1, 1), baseline=base, ratio=3.0)[
            "ratio_vs_baseline"
        ]
        == 3.0
    )
    skipped = rows.row("b", "c", "x", unit="ms", stats=None, skipped="why")
    assert skipped["median"] is None and rows.validate_row(skipped) == []
    with pytest.raises(ValueError, match="no stats and no skipped"):
        rows.row("b", "c", "x", unit="ms", stats=None)
    with pytest.raises(ValueError, match="precision must be one of"):
        rows.row("b", "c", "x", unit="ms", stats=(1, 1, 1), precision="float32")
    assert rows.identity(r) != rows.identity(base)


def test_validate_row() -> None:
    good = rows.row("b", "c", "i", unit="ms", stats=(1.0, 2.0, 3))
    assert suite.validate_row(good) == []
    assert suite.validate_row({**good, "median": float("nan")})
    assert suite.validate_row({**good, "median": "2"})
    assert suite.validate_row({**good, "median": True})
    assert suite.validate_row({**good, "ratio_vs_baseline": "fast"})
    assert suite.validate_row({**good, "precision": "float32"})
    assert suite.validate_row({**good, "n": -1}) and suite.validate_row({**good, "n": True})
    assert suite.validate_row({**good, "classes": 2.5})
    assert suite.validate_row({**good, "baseline": "pytorch eager"})
    assert suite.validate_row({**good, "label": None}) == ["label must be a str, got None"]
    without_unit = {k: v for k, v in good.items() if k != "unit"}
    assert suite.validate_row(without_unit) == ["missing field 'unit'"]
    assert suite.validate_row({**good, "unit": None}) == ["unit must be a str, got None"]
    skipped = {**good, "min": None, "median": None, "max": None, "skipped": "why"}
    assert suite.validate_row(skipped) == []
    assert suite.validate_row({**skipped, "skipped": None})


def test_units_select_and_stages() -> None:
    assert suite.seconds_per_unit("ms/frame") == 1e-3
    assert suite.seconds_per_unit("ns/sample") == 1e-9
    assert suite.seconds_per_unit("GB/s") is None
    a = rows.row("step", "step", "onnxruntime", unit="ms", stats=(1, 1, 1), precision="fp32", n=1)
    b = rows.row("step", "step", "onnxruntime", unit="ms", stats=(1, 1, 1), precision="int8", n=1)
    c = rows.row("step", "step", "openvino", unit="ms", stats=(1, 1, 1), baseline=a, n=8)
    assert suite.select([a, b, c], "step", impl="onnxruntime") == [a, b]
    assert suite.select([a, b, c], "step", precision=("int8", "bf16")) == [b]
    assert suite.select([a, b, c], "step", baseline_precision="fp32") == [c]
    assert suite.select([a, b, c], "peers") == []
    stage = rows.row("stream", "v", "p", unit="ms", stats=(1, 1, 1), variant="HOG every 3",
                     label="  stage detect", stage="detect")  # fmt: skip
    assert suite._stage_of(stage) == ("HOG every 3", "detect")
    total = rows.row("stream", "v", "p", unit="ms", stats=(1, 1, 1), label="end to end")
    assert suite._stage_of(total) == ("end to end", None)


def _r(benchmark, impl, median, unit="ms", **fields):
    return rows.row(benchmark, "c", impl, unit=unit, stats=(median, median, median), **fields)


def test_targets_met_not_met_unknown() -> None:
    eager1 = _r("step", "pytorch", 3.0, precision="fp32", variant=rows.EAGER_BATCHED, n=1)
    eager128 = _r("step", "pytorch", 30.0, precision="fp32", variant=rows.EAGER_BATCHED, n=128)
    loop = _r("scorer", "pytorch", 500.0, "ms/frame", variant=rows.PER_TRACK_LOOP, n=100)
    bn = _r("postproc", rows.BOTTLENECK, 40.0, "ns/sample", n=100, classes=24)
    ov1 = _r("peers", "openvino", 1.3, precision="fp32", n=1)
    ov128 = _r("peers", "openvino", 0.8, precision="fp32", n=128)
    ov_bf16 = _r("peers", "openvino", 0.5, precision="bf16", n=8)
    rows_ = [
        eager1,
        _r(
            "step",
            "onnxruntime",
            0.25,
            precision="int8",
            variant="signed",
            n=1,
            baseline=eager1,
            floor_kind="int8_all",
        ),  # fmt: skip
        # Labelled "int8" but it ran fp32: must not be taken for the INT8 row.
        _r("step", "onnxruntime", 0.01, precision="fp32", n=1, label="ort int8 (mislabelled)"),
        eager128,
        _r("step", "onnxruntime", 20.0, precision="fp32", n=128, baseline=eager128),
        _r(
            "floor",
            "floor",
            0.2,
            precision="int8",
            variant="int8_all",
            n=1,
            floor_kind="int8_all",
            bound="memory",
        ),  # fmt: skip
        bn,
        _r("postproc", rows.C_CORE, 10.0, "ns/sample", n=100, classes=24, baseline=bn),
        loop,
        # The PyTorch reference backend is faster than the loop but is not "ours".
        _r("scorer", "pytorch", 1.0, "ms/frame", variant="torch backend", n=100),
        _r(
            "scorer",
            "onnxruntime",
            10.0,
            "ms/frame",
            precision="int8",
            n=100,
            baseline=loop,
            outside_step_fraction=0.08,
        ),  # fmt: skip
        ov1,
        ov128,
        ov_bf16,
        _r(
            "peers",
            "onnxruntime",
            1.0,
            precision="fp32",
            n=1,
            baseline=ov1,
            ratio_vs_openvino_bf16=0.6,
        ),  # fmt: skip
        _r("peers", "onnxruntime", 1.0, precision="fp32", n=128, baseline=ov128),
        # Against a peer that ran bf16: shown, not judged.
        _r("peers", "onnxruntime", 1.0, precision="fp32", n=8, baseline=ov_bf16),
    ]
    got = {t["target"]: t for t in suite.evaluate_targets(rows_)}
    status = {k: v["status"] for k, v in got.items()}
    assert status["step at N=1 <= 0.3 ms (INT8)"] == "met"
    assert "floor int8 0.200 ms (memory-bound)" in got["step at N=1 <= 0.3 ms (INT8)"]["figures"]
    assert status["step at N=1 >= 10x faster than PyTorch eager"] == "met"  # 12x
    assert status["step at N=128 >= 2x faster than batched PyTorch eager"] == "not met"  # 1.5x
    assert "1.50x" in got["step at N=128 >= 2x faster than batched PyTorch eager"]["figures"]
    assert status["post-processing <= 20 ns per (track, class) sample"] == "met"
    assert status["post-processing >= 3x faster than bottleneck.move_median"] == "met"  # 4x
    scorer_x = "online scorer at 100 live tracks >= 10x faster than the per-track PyTorch loop"
    assert status[scorer_x] == "met" and "50.0x" in got[scorer_x]["figures"]
    assert (
        status["online scorer at 100 live tracks: time outside the model step <= 5%"] == "not met"
    )
    peer = got["ahead of OpenVINO on the same model at every N (and the default of each)"]
    assert peer["status"] == "not met"
    assert "fp32 N=1: 1.30x" in peer["figures"] and "fp32 N=128: 0.80x" in peer["figures"]
    assert "not judged (peer ran another precision): fp32 N=8 vs openvino bf16" in peer["figures"]
    assert "fp32 vs OpenVINO bf16: N=1: 0.60x" in peer["figures"]
    # Only the pair against another precision: nothing judged.
    only_bf16 = [ov_bf16, rows_[-1]]
    [peer2] = [t for t in suite.evaluate_targets(only_bf16) if "OpenVINO" in t["target"]]
    assert peer2["status"] == "unknown"
    assert all(t["status"] == "unknown" for t in suite.evaluate_targets([]))


def test_jsonable_drops_nan_and_numpy() -> None:
    out = suite._jsonable({"a": np.float32(1.5), "b": float("nan"), "c": np.arange(2), "d": (1,)})
    assert out == {"a": 1.5, "b": None, "c": [0, 1], "d": [1]}
    json.dumps(out, allow_nan=False)


# ---------------------------------------------------------------- machine facts
def test_cpu_flags_and_isa_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Fake\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni "
        "amx_tile amx_int8\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    flags = machine.cpu_flags(info)
    assert flags == ["sse4_2", "avx", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]
    isa = machine.isa_features(flags)
    assert isa == {"avx2": True, "avx512": True, "vnni": True, "bf16": False, "amx": True}
    line = machine.describe({"cpu_model": "Fake", "usable_cpus": 2, "cpu_flags": flags})
    assert line.endswith("ISA: avx2 avx512 vnni amx")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp bf16\n")
    assert machine.isa_features(machine.cpu_flags(arm))["bf16"] is True
    assert machine.cpu_flags(tmp_path / "absent") == []


def test_cache_sizes_from_a_sysfs_tree(tmp_path: Path) -> None:
    def cache(cpu: int, index: int, level: int, kind: str, size: str, shared: str) -> None:
        d = tmp_path / f"cpu{cpu}" / "cache" / f"index{index}"
        d.mkdir(parents=True)
        for name, value in (
            ("level", level),
            ("type", kind),
            ("size", size),
            ("shared_cpu_list", shared),
        ):
            (d / name).write_text(f"{value}\n")

    for cpu in (0, 1):
        cache(cpu, 0, 1, "Data", "32K", str(cpu))
        cache(cpu, 1, 2, "Unified", "512K", str(cpu))
        cache(cpu, 2, 3, "Unified", "32768K", "0-1")
    caches = machine.cache_sizes(tmp_path)
    assert [(c["level"], c["type"], c["size_bytes"], c["instances"]) for c in caches] == [
        (1, "Data", 32 << 10, 2),
        (2, "Unified", 512 << 10, 2),
        (3, "Unified", 32 << 20, 1),
    ]
    assert machine.last_level_cache_bytes({"caches": caches}) == 32 << 20
    assert "L3 32 MiB" in machine.describe({"cpu_model": "X", "usable_cpus": 2, "caches": caches})


def test_machine_collect_is_json_ready() -> None:
    facts = machine.collect()
    json.dumps(facts)
    assert facts["logical_cpus"] >= 1 and facts["libraries"]["numpy"] == np.__version__


# ---------------------------------------------------------------- the floor
@pytest.mark.parametrize("cell", ["gru", "lstm", "fc"])
@pytest.mark.parametrize(
    "modalities,fusion",
    [
        ({"rgb": 12}, "fusion_layer"),
        ({"rgb": 12, "flow": 9}, "fusion_layer"),
        ({"rgb": 12, "flow": 9}, "average"),
        ({"rgb": 12, "flow": 9}, "gating"),
    ],
)
@pytest.mark.parametrize("layers", [1, 3])
def test_step_model_size_matches_the_torch_model(cell, modalities, fusion, layers) -> None:
    torch = pytest.importorskip("torch")
    from reclnet.train.model import RecLNet

    config = RecLNetConfig(
        num_actions=5,
        modalities=modalities,
        projection_size=8,
        memory_size=6,
        num_layers=layers,
        cell=cell,
        fusion=fusion,
    )
    model = RecLNet(config)
    size = bench_floor.step_model_size(config)
    params = list(model.parameters())
    assert size.params == sum(p.numel() for p in params)
    matrices = sum(p.numel() for n, p in model.named_parameters() if "weight" in n and p.dim() == 2)
    assert size.matrix_params == matrices
    assert size.other_params == size.params - matrices
    # FLOPs: 2 per weight-matrix element per track, checked against a count of the matmuls.
    assert size.flops_per_track == 2 * matrices
    assert isinstance(torch.__version__, str)


def test_paper_model_size() -> None:
    size = bench_floor.step_model_size(RecLNetConfig())
    assert size.params == 11_174_937  # the documented size of the default model
    assert size.fp32_weight_bytes == 4 * size.params
    assert size.int8_weight_bytes < size.fp32_weight_bytes / 3.9


# ---------------------------------------------------------------- the floor
def _fake_rates(monkeypatch, peaks: dict[str, float], absent: dict[str, str] = {}) -> None:  # noqa: B006
    """Bandwidth 10 GB/s from memory, 40 GB/s from the cache (the fastest copy twice the
    median rate); each engine's matmul at ``peaks[precision]`` G-ops/s, or Unavailable."""

    def fake_bandwidth(megabytes: int, quick: bool) -> tuple[Timing, int]:
        nbytes = 2 * megabytes * (1 << 20)
        rate = 10e9 if megabytes > 32 else 40e9
        t = nbytes / rate
        return Timing(t / 2, t, t * 2, t, 3, 1), nbytes

    def fake_matmul(precision, engine, shape, quick) -> Timing:
        if precision in absent:
            raise bench_floor.Unavailable(absent[precision])
        # The second fp32 engine is slower: the peak is the fastest engine's.
        rate = peaks[precision] * (0.5 if engine == "onnxruntime MatMul" else 1.0)
        t = 2 * np.prod(shape) / rate
        return Timing(t, t, t, t, 3, 1)

    monkeypatch.setattr(bench_floor, "_bandwidth", fake_bandwidth)
    monkeypatch.setattr(bench_floor, "_matmul", fake_matmul)


def test_floor_rows_follow_from_the_measured_rates_per_precision(monkeypatch) -> None:
    peaks = {"fp32": 100e9, "bf16": 400e9, "int8": 1000e9}
    _fake_rates(monkeypatch, peaks)
    out = bench_floor.run(quick=True, llc_bytes=16 << 20)  # 16 MiB: INT8 / bf16 weights fit
    assert all(suite.validate_row(r) == [] for r in out)
    assert len({rows.identity(r) for r in out}) == len(out)
    mm = {r["impl"]: r for r in out if r["case"] == "matmul peak"}
    assert {r["precision"] for r in mm.values()} == {"fp32", "bf16", "int8"}
    assert mm["onnxruntime MatMulInteger"]["unit"] == "GOP/s"
    assert mm["numpy.matmul"]["median"] == pytest.approx(100.0)
    by = {(r["n"], r["floor_kind"]): r for r in out if r["case"] == "step floor"}
    assert len(by) == len(bench_floor.TRACKS) * len(bench_floor.FLOORS)
    for n in bench_floor.TRACKS:
        for kind, floor in bench_floor.FLOORS.items():
            size = bench_floor.step_model_size(
                RecLNetConfig(), fold_projection=floor.fold_projection
            )
            if floor.precision == "int8":
                weights = size.int8_bytes(floor.int8_variant)
                low = size.int8_matrix_params(floor.int8_variant)
                compute = 2 * n * (low / peaks["int8"] + (size.matrix_params - low) / peaks["fp32"])
            elif floor.precision == "bf16":
                weights = size.bf16_weight_bytes
                compute = 2 * n * size.matrix_params / peaks["bf16"]
            else:
                weights = 4 * size.params
                compute = 2 * n * size.matrix_params / peaks["fp32"]
            nbytes = weights + 4 * n * size.io_floats_per_track
            resident = weights <= 16 << 20
            rate = 40e9 if resident else 10e9
            r = by[(n, kind)]
            assert r["precision"] == floor.precision and r["benchmark"] == "floor"
            assert r["weights_from"] == ("cache" if resident else "memory")
            # The fastest copy took half the median time (twice the rate); the matmul did
            # not vary. The floor is what the fastest run shows; max the median run.
            assert r["memory_ms"] == pytest.approx(nbytes / (2 * rate) * 1e3)
            assert r["compute_ms"] == pytest.approx(compute * 1e3)
            assert r["median"] == pytest.approx(max(r["memory_ms"], r["compute_ms"]))
            assert r["min"] == r["median"]
            assert r["max"] == pytest.approx(max(nbytes / rate * 1e3, compute * 1e3))
    assert by[(1, "fp32_exported")]["weights_from"] == "memory"
    assert by[(1, "fp32_exported")]["median"] < by[(1, "fp32_torch")]["median"]
    assert by[(1, "int8_input_projections")]["median"] < by[(1, "fp32_exported")]["median"]
    assert by[(1, "int8_all")]["memory_ms"] < by[(1, "int8_input_projections")]["memory_ms"]
    # At N=128 the INT8 floor runs at the INT8 peak, well under an fp32-peak estimate.
    int8_128 = by[(128, "int8_all")]
    size = bench_floor.step_model_size(RecLNetConfig(), fold_projection=True)
    assert int8_128["compute_ms"] == pytest.approx(128 * size.flops_per_track / 1000e9 * 1e3)
    assert int8_128["peaks_used"] == {"int8": pytest.approx(1000.0)}


def test_floor_skips_a_precision_without_a_peak(monkeypatch) -> None:
    _fake_rates(monkeypatch, {"fp32": 100e9, "int8": 1000e9}, absent={"bf16": "no bf16 here"})
    out = bench_floor.run(quick=True, llc_bytes=None)
    skipped = [r for r in out if r.get("skipped")]
    assert {r["precision"] for r in skipped} == {"bf16"}
    assert all(r["skipped"] == "no bf16 here" for r in skipped)
    assert [r["case"] for r in skipped].count("matmul peak") == 1
    assert all(r["weights_from"] == "memory" for r in out if "weights_from" in r)  # LLC unknown
    assert all(suite.validate_row(r) == [] for r in out)


def test_bf16_peak_needs_bf16_instructions(monkeypatch) -> None:
    monkeypatch.setattr(bench_floor, "_cpu_flags", lambda: {"avx2", "avx512f"})
    with pytest.raises(bench_floor.Unavailable, match="no bf16 matmul instructions"):
        bench_floor._matmul("bf16", "torch.matmul", (8, 8, 8), True)


def test_small_matmul_engines_compute_the_product() -> None:
    """Each peak engine multiplies (it is not timing an empty call)."""
    call = bench_floor.ENGINES[("fp32", "numpy.matmul")](3, 4, 5)
    assert call().shape == (3, 5)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    [y] = bench_floor.ENGINES[("int8", "onnxruntime MatMulInteger")](3, 4, 5)()
    assert y.shape == (3, 5) and y.dtype == np.int32
    [z] = bench_floor.ENGINES[("fp32", "onnxruntime MatMul")](3, 4, 5)()
    assert z.shape == (3, 5) and z.dtype == np.float32


def test_floor_kinds_of_step_and_peer_rows() -> None:
    assert bench_floor.int8_floor_kind("input_projections") == "int8_input_projections"
    assert bench_floor.int8_floor_kind("signed") == "int8_all"
    assert bench_floor.int8_floor_kind("reduce_range") == "int8_all"
    assert bench_step._floor_kind("fp32", "unrolled, folded") == "fp32_exported"
    assert bench_step._floor_kind("fp32", "unrolled, unfolded") == "fp32_torch"
    assert bench_step._floor_kind("int8", "signed") == "int8_all"
    assert set(bench_floor.FLOORS) >= {
        "fp32_torch",
        "fp32_exported",
        "bf16_exported",
        "int8_input_projections",
        "int8_all",
    }


def test_folded_size_matches_the_export_graph() -> None:
    pytest.importorskip("torch")
    graphs = pytest.importorskip("reclnet.export.graphs")
    from reclnet.train.model import RecLNet

    for cell in ("gru", "lstm", "fc"):
        config = RecLNetConfig(
            num_actions=3,
            modalities={"rgb": 11, "flow": 7},
            projection_size=5,
            memory_size=4,
            num_layers=2,
            cell=cell,
        )
        graph = graphs.StepGraph(RecLNet(config), fold_projection=True)
        size = bench_floor.step_model_size(config, fold_projection=True)
        assert size.params == sum(p.numel() for p in graph.parameters())
        assert size.input_projection_params == first_layer_input_weights(graph, config)


def first_layer_input_weights(graph, config: RecLNetConfig) -> int:
    """Elements of each modality's first-layer weight matrices that read its input
    (shape ``[out, D]``), wherever the graph keeps them."""
    total = 0
    for name, p in graph.named_parameters():
        for modality, d in config.modalities.items():
            if f"encoders.{modality}.layers.0." in name and p.dim() == 2 and p.shape[1] == d:
                total += p.numel()
    assert total, "no first-layer input weights found"
    return total


# ---------------------------------------------------------------- the peer runtime
def test_openvino_runs_an_onnx_step_like_numpy(tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the `bench` extra (openvino) is not installed")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from reclnet.benchmarks.bench_peers import _OpenVino

    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    u = rng.standard_normal((2, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["rgb", "w"], ["a"]),
            helper.make_node("MatMul", ["state", "u"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
            helper.make_node("Tanh", ["logits"], ["state_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["N", 2]),
        ],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["N", 4]),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(u, "u")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "step.onnx"
    onnx.save(model, path)
    feeds = {
        "rgb": rng.standard_normal((5, 3)).astype(np.float32),
        "state": rng.standard_normal((5, 2)).astype(np.float32),
    }
    logits = feeds["rgb"] @ w + feeds["state"] @ u
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    # fp32 hint: OpenVINO would run bf16 by default on CPUs with AMX / AVX512_BF16.
    np.testing.assert_allclose(
        _OpenVino(path, feeds, "fp32")(feeds), expected, rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------- the peer runtime
@pytest.mark.parametrize(
    "value,expected",
    [
        ("bf16", "bf16"),
        ("<Type: 'bfloat16'>", "bf16"),
        ("f32", "fp32"),
        ("<Type: 'float32'>", "fp32"),
        ("f16", "fp16"),
        ("float16", "fp16"),
        ("u8", "int8"),
        ("dynamic", None),
    ],
)
def test_openvino_precision_names(value, expected) -> None:
    assert bench_peers.openvino_precision(value) == expected


class _FakeType:
    """Like openvino.Type: its str() is not the short name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return "<Type: 'something'>"

    def get_type_name(self) -> str:
        return self.name


def _fake_openvino(monkeypatch, default: str, caps: list[str]) -> list[dict]:
    """An ``openvino`` module whose CPU runs ``default`` unless a hint says otherwise;
    returns the list of compile configs it was given."""
    configs: list[dict] = []

    class Compiled:
        def __init__(self, config: dict) -> None:
            self.config = config

        def get_property(self, name: str):
            assert name == "INFERENCE_PRECISION_HINT"
            return _FakeType(self.config.get(name, default))

        def create_infer_request(self):
            return types.SimpleNamespace(infer=lambda feeds: {"probs": feeds["rgb"] * 2})

        def output(self, name: str) -> str:
            return name

    class Model:
        def reshape(self, shapes) -> None:
            self.shapes = shapes

        def clone(self):
            return Model()

    class Core:
        def read_model(self, path: str) -> Model:
            return Model()

        def compile_model(self, model, device: str, config: dict) -> Compiled:
            configs.append(dict(config))
            return Compiled(config)

        def get_property(self, device: str, name: str) -> list[str]:
            assert name == "OPTIMIZATION_CAPABILITIES"
            return caps

    monkeypatch.setitem(sys.modules, "openvino", types.SimpleNamespace(Core=Core))
    return configs


def test_openvino_peer_records_the_precision_it_ran(monkeypatch) -> None:
    configs = _fake_openvino(monkeypatch, default="bf16", caps=["FP32", "BF16", "INT8"])
    feeds = {"rgb": np.ones((2, 3), np.float32), "state": np.zeros((2, 4), np.float32)}
    fp32 = bench_peers._OpenVino("step.onnx", feeds, "fp32")
    default = bench_peers._OpenVino("step.onnx", feeds)
    assert configs[0] == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    assert "INFERENCE_PRECISION_HINT" not in configs[1]
    assert fp32.inference_precision == "fp32" and default.inference_precision == "bf16"
    np.testing.assert_array_equal(fp32(feeds), feeds["rgb"] * 2)
    assert bench_peers.openvino_bf16_reason() is None
    _fake_openvino(monkeypatch, default="f32", caps=["FP32", "INT8"])
    assert "no BF16 capability" in bench_peers.openvino_bf16_reason()


def test_peer_rows_are_labelled_by_what_ran() -> None:
    specs = {s.key: s for s in bench_peers.PEERS}
    runs = [0.002, 0.001, 0.003]
    fp32 = bench_peers.peer_row(specs["ov_fp32"], "fp32", "f32", 8, runs)
    assert (fp32["impl"], fp32["precision"], fp32["label"]) == ("openvino", "fp32", "openvino fp32")
    assert (fp32["min"], fp32["median"], fp32["max"]) == pytest.approx((1.0, 2.0, 3.0))
    assert fp32["floor_kind"] == "fp32_exported" and fp32["n"] == 8
    # Asked for f32 but it ran bf16: the row says bf16, so no fp32 target is judged on it.
    odd = bench_peers.peer_row(specs["ov_fp32"], "bf16", "bf16", 8, runs)
    assert odd["precision"] == "bf16" and odd["label"] == "openvino bf16 (asked fp32)"
    assert odd["floor_kind"] == "bf16_exported" and odd["requested_precision"] == "fp32"
    bf16 = bench_peers.peer_row(specs["ov_bf16"], "bf16", "bf16", 8, runs)
    assert bf16["precision"] == "bf16" and bf16["inference_precision_hint"] == "bf16"
    int8 = bench_peers.peer_row(specs["ov_int8"], "bf16", "bf16", 8, runs)
    assert int8["precision"] == "int8" and int8["compute_precision"] == "bf16"
    assert int8["floor_kind"] == "int8_all" and "bf16 compute" in int8["label"]
    unknown = bench_peers.peer_row(specs["ov_fp32"], None, "?", 8, runs)
    assert unknown["precision"] == "fp32"  # the hint asked for, when it cannot be read back
    for r in (fp32, odd, bf16, int8, unknown):
        assert suite.validate_row(r) == []
    assert len({rows.identity(r) for r in (fp32, bf16, int8)}) == 3


def test_peers_run_pairs_each_precision_with_its_peer(monkeypatch, tmp_path: Path) -> None:
    """The whole peers ``run`` on fake OpenVINO / ONNX Runtime objects and fixed times."""
    _fake_openvino(monkeypatch, default="bf16", caps=["FP32", "BF16"])
    loader = pytest.importorskip("reclnet.runtime.backends.onnxruntime.loader")

    class FakeRunner:
        def step(self, feats, state):
            return feats["rgb"] * 2 + 0.25, state

        def close(self) -> None:
            pass

    files = {"fp32": tmp_path / "step.onnx", "int8": tmp_path / "step.int8.onnx"}
    monkeypatch.setattr(bench_peers, "paper_step_onnx", lambda seed=0: files)
    monkeypatch.setattr(loader, "load", lambda path, **kw: FakeRunner())
    ov = sys.modules["openvino"]
    monkeypatch.setattr(bench_peers, "_openvino_int8", lambda fp32: ov.Core().read_model("x"))
    monkeypatch.setattr(bench_peers, "_gpu_reason", lambda: "no GPU in this test")
    seconds = {"ours": 0.001, "ov_fp32": 0.002, "ov_bf16": 0.0005, "ov_int8": 0.003}
    seconds["ov_default"] = seconds["ov_bf16"]  # OpenVINO's default, timed beside our INT8

    def fixed(fns, repeat):
        for fn in fns.values():
            fn()
        return {k: [seconds[k]] * repeat for k in fns}

    monkeypatch.setattr(bench_peers, "_interleaved", fixed)
    out = bench_peers.run(quick=True)
    assert all(suite.validate_row(r) == [] for r in out)
    assert len({rows.identity(r) for r in out}) == len(out)
    for n in bench_peers.QUICK_TRACKS:
        at = [r for r in out if r["n"] == n]
        ov32, ovbf, ov8 = (
            suite.select(at, "peers", impl="openvino", precision=p)[0]
            for p in ("fp32", "bf16", "int8")
        )
        assert ovbf["inference_precision_hint"] == "<Type: 'something'>"
        assert ov8["compute_precision"] == "bf16"  # OpenVINO's default on this fake CPU
        [ours32] = suite.select(at, "peers", impl="onnxruntime", precision="fp32")
        [ours8] = suite.select(at, "peers", impl="onnxruntime", precision="int8")
        assert ours32["baseline"]["label"] == ov32["label"] == "openvino fp32"
        assert ours32["ratio_vs_baseline"] == pytest.approx(2.0)
        assert ours32["ratio_vs_openvino_bf16"] == pytest.approx(0.5)
        assert ours32["max_abs_diff"] == pytest.approx(0.25, abs=1e-4)  # float32 rounding
        assert ours8["baseline"]["precision"] == "int8"
        assert ours8["ratio_vs_baseline"] == pytest.approx(3.0)
        # Our INT8 default against OpenVINO's default (bf16 here), in the same runs.
        assert ours8["ratio_vs_openvino_default"] == pytest.approx(0.5)
        assert ours8["openvino_default_precision"] == ovbf["precision"]
    assert not [r for r in out if r.get("skipped") and r["impl"] == "openvino"]  # quick
    trt = [r for r in out if r["impl"] == "tensorrt"]
    assert len(trt) == 3 and all(r["skipped"] == "no GPU in this test" for r in trt)
    peer = [t for t in suite.evaluate_targets(out) if "OpenVINO" in t["target"]][0]
    # Ahead of each peer of the same precision, behind OpenVINO's (faked) bf16 default.
    assert peer["status"] == "not met" and "int8 N=128: 3.00x" in peer["figures"]
    assert "the INT8 default vs OpenVINO's default: N=1: 0.50x" in peer["figures"]
    # Without OpenVINO: one skipped row per peer (not per N), ours measured without a peer.
    monkeypatch.setitem(sys.modules, "openvino", None)
    out = bench_peers.run(quick=True)
    skipped = [r for r in out if r.get("skipped") and r["impl"] == "openvino"]
    assert len(skipped) == len(bench_peers.PEERS) and all(r["n"] is None for r in skipped)
    assert all("needs openvino" in r["skipped"] for r in skipped)
    ours = suite.select(out, "peers", impl="onnxruntime")
    assert len(ours) == 2 * len(bench_peers.QUICK_TRACKS)
    assert all(r["baseline"] is None and r["ratio_vs_baseline"] is None for r in ours)
