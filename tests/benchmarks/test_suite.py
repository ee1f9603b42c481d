"""The benchmark suite runner (`reclnet bench`), machine facts and the floor's model size.

Benchmarks here are tiny fake modules written into a temporary directory: the
tests check discovery, the results document, robustness to a failing or
dependency-less benchmark and the plots, never timings.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from reclnet.benchmarks import bench_floor, machine, suite
from reclnet.benchmarks.timing import Timing
from reclnet.config import RecLNetConfig

GOOD = """
def _row(case, impl, median, unit="ms", baseline=None, ratio=None, **extra):
    return {"benchmark": "{name}", "case": case, "impl": impl, "baseline": baseline,
            "unit": unit, "min": median * 0.9, "median": median, "max": median * 1.2,
            "ratio_vs_baseline": ratio, **extra}

def run(quick=False):
    rows = []
    for n in (1, 8, 128):
        rows.append(_row(f"step N={n}", "pytorch eager batched", 2.0 * n, n=n, quick=quick))
        rows.append(_row(f"step N={n}", "ort int8", 0.1 * n, baseline="pytorch eager batched",
                         ratio=20.0, n=n))
    return rows
"""

POSTPROC = """
def run(quick=False):
    rows = []
    for case in ("100 tracks x 24 classes", "1 track x 24 classes"):
        for impl, ns in (("C core", 5.0), ("bottleneck.move_median", 40.0), ("numpy", 900.0)):
            rows.append({"benchmark": "postproc", "case": case, "impl": impl,
                         "baseline": None if impl != "C core" else "bottleneck.move_median",
                         "unit": "ns/sample", "min": ns, "median": ns * 1.1, "max": ns * 2,
                         "ratio_vs_baseline": 8.0 if impl == "C core" else None})
    return rows
"""

STREAM = """
def run(quick=False):
    return [{"benchmark": "stream", "case": "vtest.avi 4 tracks", "impl": "reclnet",
             "baseline": None, "unit": "ms/frame", "min": t, "median": t, "max": t,
             "ratio_vs_baseline": None, "stage": stage}
            for stage, t in (("decode", 2.0), ("detect", 9.0), ("step", 1.0), ("post", 0.1))] + [
            {"benchmark": "stream", "case": "vtest.avi", "impl": impl, "baseline": None,
             "unit": "ms/frame", "min": t, "median": t, "max": t, "ratio_vs_baseline": None,
             "mean_ms": t}
            for impl, t in (("end to end", 12.0), ("  stage decode (HOG every 3)", 2.0),
                            ("  stage detect (HOG every 3)", 3.0))]
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
def run(quick=False):
    return [{"benchmark": "invalid", "case": "x", "impl": "y", "unit": "ms",
             "min": 3.0, "median": 1.0, "max": 2.0}, "not a row"]
"""

SKIPPING = """
def run(quick=False):
    return [{"benchmark": "skipping", "case": "needs data", "impl": "x", "baseline": None,
             "unit": "ms", "min": None, "median": None, "max": None,
             "ratio_vs_baseline": None, "skipped": "data set absent"}]
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
        ["step", "postproc", "stream", "failing", "missing", "invalid", "skipping"]
    )
    only = suite.discover(bench_dir, only=["bench_step", "stream.py"])
    assert [suite.subject(p) for p in only] == ["step", "stream"]
    with pytest.raises(ValueError, match="unknown benchmark.*nope"):
        suite.discover(bench_dir, only=["nope"])


def test_real_benchmarks_are_discovered() -> None:
    names = [suite.subject(p) for p in suite.discover()]
    assert {"floor", "peers"} <= set(names)


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
    assert by_name["invalid"]["status"] == "failed"
    assert len(by_name["invalid"]["problems"]) == 2
    assert any("min <= median <= max" in p for p in by_name["invalid"]["problems"])
    assert by_name["skipping"]["status"] == "skipped"
    assert by_name["skipping"]["reason"] == "data set absent"


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
    assert doc["schema"] == suite.SCHEMA_VERSION and doc["quick"] is True
    assert doc["command"].startswith("reclnet bench --quick")
    m = doc["machine"]
    for key in ("cpu_model", "logical_cpus", "caches", "libraries", "load_average"):
        assert key in m
    assert m["libraries"]["numpy"] == np.__version__
    for bench in doc["benchmarks"]:
        assert bench["status"] in suite.STATUSES
        assert set(bench) >= {"name", "reason", "seconds", "rows", "problems"}
        for row in bench["rows"]:
            assert suite.validate_row(row) == []
            if "skipped" not in row:
                assert row["min"] <= row["median"] <= row["max"]
    assert [t["status"] for t in doc["targets"]]  # judged, even if unknown
    assert set(doc["plots"]) == {
        "latency_vs_tracks.png",
        "postproc_per_sample.png",
        "stream_stages.png",
    }
    for name in doc["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    assert "## step" in md and "| step N=128 | ort int8 |" in md
    assert "**failed**: RuntimeError: boom" in md
    assert "skipped: needs data / x: data set absent" in md
    assert "## Targets" in capsys.readouterr().out


def test_only_one_benchmark_exits_zero(bench_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert suite.main(["--out", str(out), "--bench-dir", str(bench_dir), "--only", "postproc"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [b["name"] for b in doc["benchmarks"]] == ["postproc"]
    assert doc["quick"] is False
    assert doc["plots"] == ["postproc_per_sample.png"]
    assert suite.main(["--bench-dir", str(bench_dir), "--only", "nope"]) == 2


def test_readme_block_is_replaced_between_markers(bench_dir: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    head, tail = "# x\n\n## Benchmarks\n\nintro\n\n", "\n\n## Later\n\nkept\n"
    readme.write_text(f"{head}{suite.README_START}\nold table\n{suite.README_END}{tail}")
    argv = ["--out", str(tmp_path / "o"), "--bench-dir", str(bench_dir), "--only", "step"]
    assert suite.main([*argv, "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(head) and text.endswith(f"{suite.README_END}{tail}")
    assert "old table" not in text
    assert "#### step" in text and "| step N=128 | ort int8 |" in text
    assert "#### Targets" in text and "- command: `reclnet bench --out" in text
    assert "# reclnet benchmark results" not in text
    # Re-rendering a saved results.json gives the same block without running anything.
    saved = tmp_path / "o" / "results.json"
    readme2 = tmp_path / "README2.md"
    readme2.write_text(f"{suite.README_START}\n{suite.README_END}\n")
    out2 = tmp_path / "o2"
    assert (
        suite.main(["--from-json", str(saved), "--out", str(out2), "--readme", str(readme2)]) == 0
    )
    assert suite.render_summary(json.loads(saved.read_text()), "####") in readme2.read_text()
    assert (out2 / "results.md").read_text() == (tmp_path / "o" / "results.md").read_text()
    saved.write_text("{}")
    assert suite.main(["--from-json", str(saved), "--out", str(out2)]) == 2
    before = readme.read_text()
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert suite.main([*argv, "--readme", str(bare)]) == 2
    assert bare.read_text() == "no markers\n" and readme.read_text() == before


def test_validate_row() -> None:
    good = {
        "benchmark": "b",
        "case": "c",
        "impl": "i",
        "baseline": None,
        "unit": "ms",
        "min": 1.0,
        "median": 2.0,
        "max": 3,
        "ratio_vs_baseline": None,
    }
    assert suite.validate_row(good) == []
    assert suite.validate_row({**good, "median": float("nan")})
    assert suite.validate_row({**good, "median": "2"})
    assert suite.validate_row({**good, "median": True})
    assert suite.validate_row({**good, "ratio_vs_baseline": "fast"})
    without_unit = {k: v for k, v in good.items() if k != "unit"}
    assert suite.validate_row(without_unit) == ["missing key 'unit'"]
    assert suite.validate_row({**good, "unit": None}) == ["unit must be a str, got None"]
    skipped = {**good, "min": None, "median": None, "max": None, "skipped": "why"}
    assert suite.validate_row(skipped) == []
    assert suite.validate_row({**skipped, "skipped": None})


def test_tracks_and_units() -> None:
    row = {"case": "step N=32 fp32"}
    assert suite.tracks(row) == 32
    assert suite.tracks({"case": "100 live tracks"}) == 100
    assert suite.tracks({"case": "x", "n": 7}) == 7
    assert suite.tracks({"case": "no count"}) is None
    assert suite.seconds_per_unit("ms/frame") == 1e-3
    assert suite.seconds_per_unit("ns/sample") == 1e-9
    assert suite.seconds_per_unit("GB/s") is None
    assert suite._stage_of({"case": "c", "impl": "  stage detect (HOG every 3)"}) == (
        "HOG every 3",
        "detect",
    )
    assert suite._stage_of({"case": "c", "impl": "end to end"}) == ("end to end", None)
    assert suite._stage_of({"case": "c", "impl": "x", "stage": "step"}) == ("c / x", "step")


def _r(benchmark, case, impl, median, unit="ms", **extra):
    return {
        "benchmark": benchmark,
        "case": case,
        "impl": impl,
        "baseline": extra.pop("baseline", None),
        "unit": unit,
        "min": median,
        "median": median,
        "max": median,
        "ratio_vs_baseline": extra.pop("ratio", None),
        **extra,
    }


def test_targets_met_not_met_unknown() -> None:
    rows = [
        _r("step", "step N=1", "pytorch eager", 3.0),
        _r("step", "step N=1", "ort int8", 0.25),
        _r("step", "step N=128", "pytorch eager batched", 30.0),
        _r("step", "step N=128", "ort fp32", 20.0),
        _r("postproc", "100x24", "C core", 10.0, unit="ns/sample"),
        _r("postproc", "100x24", "bottleneck.move_median", 40.0, unit="ns/sample"),
        _r("scorer", "100 tracks", "per-track pytorch loop", 500.0, unit="ms/frame"),
        _r(
            "scorer", "100 tracks", "onnxruntime", 10.0, unit="ms/frame", outside_step_fraction=0.08
        ),
        _r("peers", "N=1", "onnxruntime fp32", 1.0, baseline="openvino fp32", ratio=1.3),
        _r("peers", "N=128", "onnxruntime fp32", 1.0, baseline="openvino fp32", ratio=0.8),
    ]
    got = {t["target"]: t for t in suite.evaluate_targets(rows)}
    status = {k: v["status"] for k, v in got.items()}
    assert status["step at N=1 <= 0.3 ms (INT8)"] == "met"
    assert status["step at N=1 >= 10x faster than PyTorch eager"] == "met"  # 12x
    assert status["step at N=128 >= 2x faster than batched PyTorch eager"] == "not met"  # 1.5x
    assert "1.50x" in got["step at N=128 >= 2x faster than batched PyTorch eager"]["figures"]
    assert status["post-processing <= 20 ns per (track, class) sample"] == "met"
    assert status["post-processing >= 3x faster than bottleneck.move_median"] == "met"  # 4x
    scorer_x = "online scorer at 100 live tracks >= 10x faster than the per-track PyTorch loop"
    assert status[scorer_x] == "met"  # 50x
    assert (
        status["online scorer at 100 live tracks: time outside the model step <= 5%"] == "not met"
    )
    assert status["ahead of OpenVINO on the same model at every N"] == "not met"
    figures = got["ahead of OpenVINO on the same model at every N"]["figures"]
    assert "onnxruntime fp32 N=128: 0.80x" in figures
    assert all(t["status"] == "unknown" for t in suite.evaluate_targets([]))


def test_jsonable_drops_nan_and_numpy() -> None:
    out = suite._jsonable({"a": np.float32(1.5), "b": float("nan"), "c": np.arange(2), "d": (1,)})
    assert out == {"a": 1.5, "b": None, "c": [0, 1], "d": [1]}
    json.dumps(out, allow_nan=False)


# ---------------------------------------------------------------- machine facts
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


def test_floor_rows_follow_from_the_measured_rates(monkeypatch) -> None:
    def fake_bandwidth(megabytes: int, quick: bool) -> tuple[Timing, int]:
        # 10 GB/s from DRAM, 40 GB/s from cache: seconds per copy of the byte count.
        nbytes = 2 * megabytes * (1 << 20)
        rate = 10e9 if megabytes > 32 else 40e9
        return Timing(
            nbytes / rate / 2, nbytes / rate, nbytes / rate * 2, nbytes / rate, 3, 1
        ), nbytes

    def fake_matmul(size: int, quick: bool) -> tuple[Timing, int]:
        flops = 2 * size**3
        return Timing(flops / 100e9, flops / 100e9, flops / 100e9, flops / 100e9, 3, 1), flops

    monkeypatch.setattr(bench_floor, "_bandwidth", fake_bandwidth)
    monkeypatch.setattr(bench_floor, "_matmul", fake_matmul)
    rows = bench_floor.run(quick=True)
    assert all(suite.validate_row(r) == [] for r in rows)
    variant = bench_floor._int8_variant()
    by = {(r.get("n"), r.get("floor_kind")): r for r in rows}
    for n in bench_floor.TRACKS:
        for kind, fold, rate, int8 in (
            ("fp32_torch", False, 10e9, None),
            ("fp32_exported", True, 10e9, None),
            ("int8_exported", True, 40e9, variant),
            ("int8_all", True, 40e9, "signed"),
        ):
            size = bench_floor.step_model_size(RecLNetConfig(), fold_projection=fold)
            weights = size.int8_bytes(int8) if int8 else 4 * size.params
            nbytes = weights + 4 * n * size.io_floats_per_track
            row = by[(n, kind)]
            # The fastest copy took half the median time (twice the rate); the matmul
            # did not vary. The floor is what the fastest run shows; max the median run.
            assert row["memory_ms"] == pytest.approx(nbytes / (2 * rate) * 1e3)
            assert row["compute_ms"] == pytest.approx(n * size.flops_per_track / 100e9 * 1e3)
            assert row["median"] == pytest.approx(max(row["memory_ms"], row["compute_ms"]))
            assert row["min"] == row["median"]
            assert row["max"] == pytest.approx(max(nbytes / rate * 1e3, row["compute_ms"]))
            assert suite.floor_kind(row["impl"]) == kind or kind in ("fp32_torch", "int8_all")
    assert by[(1, "fp32_exported")]["median"] < by[(1, "fp32_torch")]["median"]
    assert by[(1, "int8_exported")]["median"] < by[(1, "fp32_exported")]["median"]
    assert by[(1, "int8_all")]["memory_ms"] < by[(1, "int8_exported")]["memory_ms"]
    assert suite.floor_kind("ort int8 (signed)") == "int8_all"
    assert suite.floor_kind("ort fp32 (unrolled, unfolded)") == "fp32_torch"
    assert suite.floor_kind("onnxruntime int8") == "int8_exported"


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
        assert size.input_projection_params == sum(
            layers[0].w_ih.numel() for layers in graph_layers(graph)
        )


def graph_layers(graph) -> list:
    """The per-stream layer lists of a StepGraph, wherever it keeps them."""
    found = [m for m in graph.modules() if m.__class__.__name__ == "ModuleList"]
    return [m for m in found if len(m) and m[0].__class__.__name__ == "_Layer"]


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
    np.testing.assert_allclose(_OpenVino(path, feeds)(feeds), expected, rtol=1e-5, atol=1e-6)
