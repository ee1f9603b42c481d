"""`reclnet bench`: discover and run every ``benchmarks/bench_*.py`` and report the results.

Each benchmark module exposes ``run(quick: bool = False) -> list[dict]``: rows made by
:func:`reclnet.benchmarks.rows.row`, whose fields (benchmark, case, impl, precision,
variant, n, classes, baseline, unit, min / median / max) say what was measured; the
targets select rows by these fields, never by the text of a label. The suite runs them
one after another in this process, so a failing benchmark or a missing optional
dependency never stops the others: the first is recorded as ``failed`` with its
traceback, the second as ``skipped`` with the missing module named. It writes

- ``results.json``: the machine (CPU, CPU flags, caches, library versions, load), every
  row, per-benchmark status, and the project's performance targets;
- ``results.md``: the same as tables (the generated block of ``docs/benchmarks.md`` is
  cut from it, see ``--doc``);
- PNG plots: per-frame latency vs live tracks per backend, post-processing cost per
  sample, the end-to-end stage breakdown.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import re
import sys
import time
import traceback
import unittest
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from reclnet.argparsing import ArgumentParser
from reclnet.benchmarks import machine as machine_facts
from reclnet.benchmarks import rows as rows_mod
from reclnet.benchmarks.rows import (
    BOTTLENECK,
    C_CORE,
    EAGER_BATCHED,
    ONNXRUNTIME,
    OPENVINO,
    PER_TRACK_LOOP,
    PYTORCH,
    TENSORRT,
)
from reclnet.jsonsafe import loads_bounded

BENCH_DIR = Path(__file__).resolve().parent
PACKAGE = "reclnet.benchmarks"
#: 2: rows with fields (precision, variant, n, classes, label, baseline as a row's fields).
SCHEMA_VERSION = 2
DEFAULT_OUT = Path("out") / "bench"
#: Where ``--doc`` writes the generated block by default (run from the source checkout).
DEFAULT_DOC = Path("docs") / "benchmarks.md"

STATUSES = ("ok", "skipped", "failed")
# Seconds per unit for the time units benchmarks report (a "/frame"-like suffix is ignored).
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass
class BenchmarkResult:
    """What one benchmark module produced.

    Attributes
    ----------
    name : str
        The subject: ``bench_<name>.py``.
    status : str
        ``"ok"`` (at least one measured row), ``"skipped"`` (a dependency or its data is
        absent, or every row says it skipped) or ``"failed"`` (it raised, or returned no
        valid row).
    reason : str or None
        Why it skipped or failed.
    seconds : float
        Wall time of its ``run``.
    rows : list of dict
        Its valid rows (including rows it marked skipped with a ``"skipped"`` reason).
    problems : list of str
        Rows dropped for breaking the row protocol, and the traceback when it failed.
    """

    name: str
    status: str
    reason: str | None = None
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    load_average: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "load_average_after": self.load_average,
            "problems": self.problems,
            "rows": self.rows,
        }


# ---------------------------------------------------------------- discovery
def discover(directory: Path = BENCH_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """The benchmark modules in ``directory``, sorted by name.

    Parameters
    ----------
    directory : Path
        Where ``bench_*.py`` live.
    only : iterable of str, optional
        Keep these subjects (``"floor"`` or ``"bench_floor"``); an unknown name is an error.

    Returns
    -------
    list of Path
    """
    found = sorted(p for p in Path(directory).glob("bench_*.py") if p.is_file())
    if only is None:
        return found
    wanted = {name.removesuffix(".py").removeprefix("bench_") for name in only}
    by_name = {subject(p): p for p in found}
    unknown = sorted(wanted - set(by_name))
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {unknown}; available: {sorted(by_name) or 'none'} in {directory}"
        )
    return [p for p in found if subject(p) in wanted]


def subject(path: Path) -> str:
    """``bench_floor.py`` -> ``"floor"``."""
    return Path(path).stem.removeprefix("bench_")


def _load(path: Path) -> ModuleType:
    """Import a benchmark: as ``reclnet.benchmarks.<stem>`` when it lives in this package
    (so its own package imports work), else straight from the file."""
    path = Path(path).resolve()
    if path.parent == BENCH_DIR:
        return importlib.import_module(f"{PACKAGE}.{path.stem}")
    name = f"_reclnet_bench_{abs(hash(str(path.parent)))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


# ---------------------------------------------------------------- rows
def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def validate_row(row: Any) -> list[str]:
    """What is wrong with ``row`` under the row protocol (:func:`rows.validate_row`)."""
    return rows_mod.validate_row(row)


def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays become Python ones, NaN / inf become None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # numpy scalar or array
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, str | int | float | bool):
        return x
    return str(x)


def _missing_dependency(exc: BaseException) -> str | None:
    """The absent third-party module when ``exc`` says one is missing, else None.

    A missing ``reclnet.*`` module is a bug (or another part not landed yet), not an
    optional dependency, so it is reported as a failure.
    """
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        if exc.name.split(".")[0] != "reclnet":
            return exc.name
    return None


def run_benchmark(path: Path, quick: bool) -> BenchmarkResult:
    """Import ``path`` and call its ``run(quick)``; never raises (except KeyboardInterrupt).

    Parameters
    ----------
    path : Path
        A ``bench_*.py`` file.
    quick : bool
        Passed on to ``run``.

    Returns
    -------
    BenchmarkResult
        Rows that break the protocol are dropped and named in ``problems``; rows that
        share their identifying fields (:data:`rows.IDENTITY`) are kept and named too.
    """
    name = subject(path)
    t0 = time.perf_counter()
    try:
        module = _load(path)
        run = getattr(module, "run", None)
        if not callable(run):
            raise TypeError(f"{path.name} has no run(quick) function")
        rows = run(quick=quick)
        if not isinstance(rows, list):
            raise TypeError(f"{path.name}: run() returned {type(rows).__name__}, not a list")
    except KeyboardInterrupt:
        raise
    except unittest.SkipTest as exc:
        return BenchmarkResult(name, "skipped", str(exc), time.perf_counter() - t0)
    except BaseException as exc:  # noqa: BLE001 - one benchmark must never stop the suite
        seconds = time.perf_counter() - t0
        missing = _missing_dependency(exc)
        if missing is not None:
            return BenchmarkResult(name, "skipped", f"needs {missing!r}, not installed", seconds)
        if isinstance(exc, SystemExit) and not exc.code:
            return BenchmarkResult(name, "failed", "exited (SystemExit) without rows", seconds)
        tb = traceback.format_exc(limit=-8)
        return BenchmarkResult(
            name, "failed", f"{type(exc).__name__}: {exc}", seconds, problems=[tb]
        )
    seconds = time.perf_counter() - t0
    valid, problems = [], []
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        issues = validate_row(row)
        if issues:
            problems.append(f"row {i} dropped: {'; '.join(issues)}")
            continue
        key = rows_mod.identity(row)
        if key in seen:
            problems.append(f"row {i} has the same fields as row {seen[key]}: {key}")
        seen.setdefault(key, i)
        valid.append(_jsonable(row))
    measured = [r for r in valid if not isinstance(r.get("skipped"), str)]
    if measured:
        return BenchmarkResult(name, "ok", None, seconds, valid, problems)
    if valid:
        reasons = sorted({r["skipped"] for r in valid})
        return BenchmarkResult(name, "skipped", "; ".join(reasons), seconds, valid, problems)
    reason = "returned no valid rows" + (f" ({len(problems)} dropped)" if problems else "")
    return BenchmarkResult(name, "failed", reason, seconds, [], problems)


def run_suite(
    paths: Sequence[Path],
    *,
    quick: bool = False,
    command: str = "reclnet bench",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``paths`` in order and assemble the results document (see :func:`main`).

    Returns
    -------
    dict
        ``{"schema": 2, "created": ISO UTC, "command", "quick", "machine", "benchmarks":
        [BenchmarkResult.to_dict()...], "targets": [...], "seconds"}``.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    facts = machine_facts.collect()
    t0 = time.perf_counter()
    results = []
    for i, path in enumerate(paths, 1):
        log(f"[{i}/{len(paths)}] {subject(path)} ...")
        result = run_benchmark(path, quick)
        result.load_average = machine_facts.load_average()
        detail = f"{len(result.rows)} rows" if result.status == "ok" else result.reason
        took = f"{result.seconds:.1f} s"
        log(f"[{i}/{len(paths)}] {subject(path)}: {result.status} ({detail}, {took})")
        for problem in result.problems:
            log(f"    {problem.rstrip()}")
        results.append(result)
    # The BLAS / OpenMP pools are loaded by the benchmarks themselves: list them now.
    facts["thread_pools"] = machine_facts.thread_pools()
    doc = {
        "schema": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "seconds": round(time.perf_counter() - t0, 3),
        "machine": facts,
        "load_average_end": machine_facts.load_average(),
        "benchmarks": [r.to_dict() for r in results],
    }
    doc["targets"] = evaluate_targets(all_rows(doc))
    return _jsonable(doc)


def all_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured (not skipped) row of a results document."""
    return [
        row
        for bench in doc["benchmarks"]
        for row in bench["rows"]
        if not isinstance(row.get("skipped"), str)
    ]


# ---------------------------------------------------------------- row helpers
def seconds_per_unit(unit: str) -> float | None:
    """``"ms"`` or ``"ms/frame"`` -> 1e-3; None for a unit that is not a time."""
    return TIME_UNITS.get(unit.split("/")[0].strip())


def select(rows: Iterable[dict[str, Any]], benchmark: str, **fields: Any) -> list[dict[str, Any]]:
    """Rows of ``benchmark`` whose fields equal ``fields``.

    A value that is a tuple or a set matches any of its members; ``baseline_impl`` /
    ``baseline_precision`` match the baseline row's ``impl`` / ``precision``.
    """

    def value(row: dict[str, Any], key: str) -> Any:
        if key.startswith("baseline_"):
            return (row.get("baseline") or {}).get(key.removeprefix("baseline_"))
        return row.get(key)

    def ok(got: Any, want: Any) -> bool:
        return got in want if isinstance(want, tuple | set | frozenset) else got == want

    return [
        r
        for r in rows
        if r["benchmark"] == benchmark and all(ok(value(r, k), v) for k, v in fields.items())
    ]


def _ms(row: dict[str, Any], key: str = "median") -> float | None:
    scale = seconds_per_unit(row["unit"])
    return None if scale is None else row[key] * scale * 1e3


def _best(rows: Iterable[dict[str, Any]], worst: bool = False) -> dict[str, Any] | None:
    """The fastest (or slowest) row by median time, None when there is none."""
    timed = [r for r in rows if _ms(r) is not None]
    if not timed:
        return None
    return (max if worst else min)(timed, key=lambda r: _ms(r))


# ---------------------------------------------------------------- targets
def _target(text: str, met: bool | None, figures: str) -> dict[str, Any]:
    return {
        "target": text,
        "status": {True: "met", False: "not met", None: "unknown"}[met],
        "figures": figures,
    }


def evaluate_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's CPU performance targets, judged from the fields of the measured rows.

    A target whose rows are absent (benchmark skipped or not written) is ``"unknown"``.
    Ratios are computed from medians of rows measured in the same run.
    """
    out = []
    floors = floors_by_kind(rows)

    def floor_note(r: dict[str, Any]) -> str:
        fl = floors.get((r.get("n"), r.get("floor_kind")))
        if fl is None:
            return ""
        return f"; floor {fl['precision']} {_ms(fl):.3f} ms ({fl.get('bound')}-bound)"

    text_01 = "step at N=1 <= 0.3 ms (INT8)"
    text_10 = "step at N=1 >= 10x faster than PyTorch eager"
    text_2 = "step at N=128 >= 2x faster than batched PyTorch eager"
    int8_1 = _best(select(rows, "step", impl=ONNXRUNTIME, precision="int8", n=1))
    eager_1 = _best(select(rows, "step", impl=PYTORCH, variant=EAGER_BATCHED, n=1))
    if int8_1 is not None:
        ms = _ms(int8_1)
        figures = f"{int8_1['label']}: {ms:.3f} ms median" + floor_note(int8_1)
        out.append(_target(text_01, ms <= 0.3, figures))
    else:
        out.append(_target(text_01, None, "no onnxruntime int8 step row at N=1"))
    if int8_1 is not None and eager_1 is not None:
        ratio = _ms(eager_1) / _ms(int8_1)
        figures = (
            f"{ratio:.1f}x ({eager_1['label']} {_ms(eager_1):.3f} ms / "
            f"{int8_1['label']} {_ms(int8_1):.3f} ms)"
        )
        out.append(_target(text_10, ratio >= 10, figures))
    else:
        out.append(_target(text_10, None, "rows absent"))
    ours_128 = _best(select(rows, "step", impl=ONNXRUNTIME, n=128))
    eager_128 = _best(select(rows, "step", impl=PYTORCH, variant=EAGER_BATCHED, n=128))
    if ours_128 is not None and eager_128 is not None:
        ratio = _ms(eager_128) / _ms(ours_128)
        figures = (
            f"{ratio:.2f}x ({eager_128['label']} {_ms(eager_128):.2f} ms / {ours_128['label']} "
            f"{_ms(ours_128):.2f} ms{floor_note(ours_128)})"
        )
        out.append(_target(text_2, ratio >= 2, figures))
    else:
        out.append(_target(text_2, None, "rows absent"))
    out += _postproc_targets(rows)
    out += _scorer_targets(rows)
    out.append(_peer_target(rows))
    return out


def _per_sample_ns(row: dict[str, Any]) -> float | None:
    scale = seconds_per_unit(row["unit"])
    return None if scale is None else row["median"] * scale * 1e9


def _postproc_case(row: dict[str, Any]) -> str:
    n, c = row.get("n"), row.get("classes")
    if n is None:
        return row["case"]
    return f"{n} track{'s' if n != 1 else ''}" + (f" x {c} classes" if c else "")


def _postproc_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text_ns = "post-processing <= 20 ns per (track, class) sample"
    text_x = "post-processing >= 3x faster than bottleneck.move_median"
    core = [
        r
        for r in select(rows, "postproc", impl=C_CORE)
        if "sample" in r["unit"] and _per_sample_ns(r) is not None
    ]
    if not core:
        return [_target(text_ns, None, "no C-core per-sample row"), _target(text_x, None, "")]
    worst = max(core, key=_per_sample_ns)
    out = [
        _target(
            text_ns,
            _per_sample_ns(worst) <= 20,
            ", ".join(f"{_postproc_case(r)}: {_per_sample_ns(r):.1f} ns" for r in core),
        )
    ]
    vs_bn = []
    for r in core:
        if (r.get("baseline") or {}).get("impl") == BOTTLENECK and _is_number(
            r.get("ratio_vs_baseline")
        ):
            vs_bn.append(r)
            continue
        # Measured against another baseline: compute the ratio from the medians.
        for b in select(rows, "postproc", impl=BOTTLENECK, case=r["case"], n=r.get("n")):
            if b["unit"] == r["unit"]:
                vs_bn.append({**r, "ratio_vs_baseline": b["median"] / r["median"]})
    if vs_bn:
        low = min(vs_bn, key=lambda r: r["ratio_vs_baseline"])
        figures = ", ".join(f"{_postproc_case(r)}: {r['ratio_vs_baseline']:.1f}x" for r in vs_bn)
        out.append(_target(text_x, low["ratio_vs_baseline"] >= 3, figures))
    else:
        out.append(_target(text_x, None, "no bottleneck row"))
    return out


def _scorer_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text_x = "online scorer at 100 live tracks >= 10x faster than the per-track PyTorch loop"
    text_o = "online scorer at 100 live tracks: time outside the model step <= 5%"
    loop = _best(select(rows, "scorer", n=100, impl=PYTORCH, variant=PER_TRACK_LOOP))
    # Ours: the deployment backends (the PyTorch backend is the reference, not the product).
    ours = _best(select(rows, "scorer", n=100, impl=(ONNXRUNTIME, TENSORRT, OPENVINO)))
    out = []
    if loop is not None and ours is not None:
        ratio = _ms(loop) / _ms(ours)
        figures = (
            f"{ratio:.1f}x ({loop['label']} {_ms(loop):.2f} ms / {ours['label']} "
            f"{_ms(ours):.2f} ms per frame)"
        )
        out.append(_target(text_x, ratio >= 10, figures))
    else:
        out.append(_target(text_x, None, "rows absent"))
    frac = None if ours is None else ours.get("outside_step_fraction")
    if _is_number(frac):
        out.append(
            _target(text_o, frac <= 0.05, f"{ours['label']}: {100 * frac:.1f}% outside step")
        )
    else:
        out.append(_target(text_o, None, "no outside-step fraction reported"))
    return out


def _peer_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every onnxruntime peers row against its OpenVINO baseline of the same precision
    (each precision, each N), and the INT8 default against OpenVINO's default precision
    where measured; a pair whose peer ran another precision is not judged."""
    text = "ahead of OpenVINO on the same model at every N (and the default of each)"
    versus = [
        r
        for r in select(rows, "peers", impl=ONNXRUNTIME, baseline_impl=OPENVINO)
        if _is_number(r.get("ratio_vs_baseline"))
    ]
    if not versus:
        return _target(text, None, "no OpenVINO comparison rows")
    versus.sort(key=lambda r: (r["precision"] or "", r["n"] or 0))
    judged = [r for r in versus if r["baseline"].get("precision") == r["precision"]]
    other = [r for r in versus if r not in judged]
    figures = ", ".join(
        f"{r['precision']} N={r['n']}: {r['ratio_vs_baseline']:.2f}x" for r in judged
    )
    if other:
        figures += "; not judged (peer ran another precision): " + ", ".join(
            f"{r['precision']} N={r['n']} vs openvino {r['baseline'].get('precision')}: "
            f"{r['ratio_vs_baseline']:.2f}x"
            for r in other
        )
    default = [r for r in versus if _is_number(r.get("ratio_vs_openvino_default"))]
    if default:
        figures += "; the INT8 default vs OpenVINO's default: " + ", ".join(
            f"N={r['n']}: {r['ratio_vs_openvino_default']:.2f}x "
            f"({r.get('openvino_default_precision')})"
            for r in default
        )
    bf16 = [r for r in versus if _is_number(r.get("ratio_vs_openvino_bf16"))]
    if bf16:
        figures += "; for the record, fp32 vs OpenVINO bf16: " + ", ".join(
            f"N={r['n']}: {r['ratio_vs_openvino_bf16']:.2f}x" for r in bf16
        )
    if not judged:
        return _target(text, None, figures)
    met = all(r["ratio_vs_baseline"] >= 1 for r in judged) and all(
        r["ratio_vs_openvino_default"] >= 1 for r in default
    )
    return _target(text, met, figures)


# ---------------------------------------------------------------- markdown
def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.3g}"
    return str(x)


def floors_by_kind(rows: Iterable[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """The floor benchmark's measured step floors keyed by ``(n, floor_kind)``."""
    return {
        (r["n"], r["floor_kind"]): r
        for r in rows
        if r["benchmark"] == "floor"
        and isinstance(r.get("floor_kind"), str)
        and r.get("n") is not None
        and not isinstance(r.get("skipped"), str)
    }


def _floor_for(row: dict[str, Any], floors: dict[tuple[int, str], dict[str, Any]]) -> str:
    """The physical floor (in the row's unit) named by a row's ``floor_kind`` at its N."""
    scale = seconds_per_unit(row["unit"])
    floor = floors.get((row.get("n"), row.get("floor_kind")))
    if floor is None or scale is None:
        return ""
    value = _ms(floor) * 1e-3 / scale
    return f"{_fmt(value)} ({floor['precision']}, {floor.get('bound', '')})"


def _machine_lines(m: dict[str, Any]) -> list[str]:
    flags = m.get("cpu_flags") or []
    pools = ", ".join(
        f"{p.get('internal_api') or p.get('user_api')} {p.get('num_threads')} threads"
        for p in m.get("thread_pools") or []
    )
    return [
        f"- machine: {machine_facts.describe(m)}",
        f"- CPU flags: {' '.join(flags) or 'unknown'}",
    ] + ([f"- thread pools: {pools}"] if pools else [])


def render_markdown(doc: dict[str, Any]) -> str:
    """``results.md``: header, targets, one table per benchmark, skipped / failed ones."""
    m = doc["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items() if v)
    lines = [
        "# reclnet benchmark results",
        "",
        f"- date: {doc['created']} (UTC), {doc['seconds']:.0f} s",
        f"- command: `{doc['command']}`" + (" (quick)" if doc.get("quick") else ""),
        *_machine_lines(m),
        f"- load average at start / end: {m.get('load_average')} / {doc.get('load_average_end')}"
        f" on {m.get('usable_cpus')} CPUs (above the CPU count means other work shared the cores)",
        f"- libraries: {libs}",
        f"- commit: {m.get('git_commit')}",
        "",
        "Ratios are baseline median / impl median measured in the same process "
        "(> 1: faster than the baseline). min / median / max are over repeated runs. "
        "precision is what the implementation actually ran.",
        "",
    ]
    if doc.get("targets"):
        lines += ["## Targets", "", "| target | status | figures |", "| --- | --- | --- |"]
        lines += [f"| {t['target']} | {t['status']} | {t['figures']} |" for t in doc["targets"]]
        lines.append("")
    floors = floors_by_kind(all_rows(doc))
    for bench in doc["benchmarks"]:
        lines.append(f"## {bench['name']}")
        lines.append("")
        if bench["status"] != "ok":
            lines += [f"**{bench['status']}**: {bench['reason']}", ""]
        measured = [r for r in bench["rows"] if not isinstance(r.get("skipped"), str)]
        skipped = [r for r in bench["rows"] if isinstance(r.get("skipped"), str)]
        if measured:
            with_n = any(r.get("n") is not None for r in measured)
            with_prec = any(r.get("precision") for r in measured)
            with_floor = bench["name"] != "floor" and any(
                (r.get("n"), r.get("floor_kind")) in floors for r in measured
            )
            head = ["case", *(["N"] if with_n else []), "impl"]
            head += ["precision"] if with_prec else []
            head += ["baseline", "median", "min", "max", "unit", "vs baseline"]
            head += ["floor (precision, bound)"] if with_floor else []
            lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
            for r in measured:
                ratio = r.get("ratio_vs_baseline")
                cells = [r["case"], *([_fmt(r.get("n"))] if with_n else []), r["label"].strip()]
                cells += [r.get("precision") or ""] if with_prec else []
                cells += [
                    (r.get("baseline") or {}).get("label") or "",
                    _fmt(r["median"]),
                    _fmt(r["min"]),
                    _fmt(r["max"]),
                    r["unit"],
                    f"{ratio:.2f}x" if _is_number(ratio) else "",
                ]
                cells += [_floor_for(r, floors)] if with_floor else []
                lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
            lines.append("")
        for r in skipped:
            n = f" N={r['n']}" if r.get("n") is not None else ""
            lines.append(f"- skipped: {r['case']}{n} / {r['label'].strip()}: {r['skipped']}")
        if skipped:
            lines.append("")
        lines.append(f"_{bench['seconds']:.1f} s_")
        lines.append("")
    return "\n".join(lines)


SUMMARY_SECTIONS = ("Targets", "floor", "step", "peers", "postproc", "scorer", "stream")
DOC_START, DOC_END = "<!-- reclnet-bench:start -->", "<!-- reclnet-bench:end -->"


def render_summary(doc: dict[str, Any], heading: str = "##") -> str:
    """The short form for the docs: header lines, the targets and the tables of
    :data:`SUMMARY_SECTIONS`, with their headings at level ``heading``."""
    keep = []
    for section in re.split(r"(?m)^(?=## )", render_markdown(doc)):
        title = section.split("\n", 1)[0]
        if not title.startswith("## "):
            keep.append(section.replace("# reclnet benchmark results\n", "", 1))
        elif title[3:].strip() in SUMMARY_SECTIONS:
            keep.append(heading + section[2:])
    return "".join(keep).strip() + "\n"


def update_doc(path: Path, doc: dict[str, Any]) -> None:
    """Replace the text between the ``reclnet-bench`` markers of ``path`` with the summary.

    A file without the markers gets them appended (under a "Results" heading); a missing
    file is created.

    Raises
    ------
    ValueError
        When only one marker is present, or they are out of order (nothing is written).
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = text.find(DOC_START), text.find(DOC_END)
    if start < 0 and end < 0:
        text = text.rstrip("\n") + f"\n\n## Results\n\n{DOC_START}\n{DOC_END}\n"
        start, end = text.find(DOC_START), text.find(DOC_END)
    elif start < 0 or end < start:
        raise ValueError(
            f"{path}: needs the lines {DOC_START} and {DOC_END} (in this order) "
            "around the results, or neither"
        )
    body = render_summary(doc, heading="####")
    new = text[: start + len(DOC_START)] + "\n" + body + text[end:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


# ---------------------------------------------------------------- plots
def write_plots(doc: dict[str, Any], out: Path) -> list[str]:
    """The PNG plots whose rows exist; returns their file names (relative to ``out``).

    - ``latency_vs_tracks.png``: median time per step / frame vs live tracks, one line per
      backend (min-max as error bars), one panel per benchmark (step, peers, scorer), with
      the physical floor dashed;
    - ``postproc_per_sample.png``: post-processing cost per sample per implementation;
    - ``stream_stages.png``: the end-to-end stage breakdown of the camera path.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    rows = all_rows(doc)
    written = []
    panels = []
    for bench in ("step", "peers", "scorer"):
        series: dict[str, list[tuple[int, float, float, float]]] = {}
        for r in rows:
            n, ms = r.get("n"), _ms(r)
            if r["benchmark"] == bench and n is not None and ms is not None and n > 0:
                points = series.setdefault(r["label"].strip(), [])
                points.append((n, _ms(r, "min"), ms, _ms(r, "max")))
        if series:
            panels.append((bench, series))
    if panels:
        floor_series: dict[str, list[tuple[int, float]]] = {}
        for (n, _), r in floors_by_kind(rows).items():
            if n > 0:
                floor_series.setdefault(r["label"], []).append((n, _ms(r)))
        fig = Figure(figsize=(6 * len(panels), 4.5), layout="constrained")
        for ax, (bench, series) in zip(
            fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
        ):
            for impl, points in sorted(series.items()):
                points.sort()
                x = [p[0] for p in points]
                med = [p[2] for p in points]
                err = [[p[2] - p[1] for p in points], [p[3] - p[2] for p in points]]
                ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label=impl)
            if bench in ("step", "peers"):
                styles = iter(
                    [(0, (5, 2)), (0, (2, 2)), (0, (5, 2, 1, 2)), (0, (1, 1)), (0, (8, 2, 2, 2))]
                )
                for impl, points in sorted(floor_series.items()):
                    points.sort()
                    ax.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        color="0.45",
                        linestyle=next(styles, "--"),
                        linewidth=1,
                        label=impl,
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("live tracks N")
            ax.set_ylabel("ms per step" if bench != "scorer" else "ms per frame")
            ax.set_title(bench)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.savefig(out / "latency_vs_tracks.png", dpi=110)
        written.append("latency_vs_tracks.png")

    post = [r for r in rows if r["benchmark"] == "postproc" and r["median"] > 0]
    if post:
        unit = max({r["unit"] for r in post}, key=lambda u: sum(r["unit"] == u for r in post))
        post = [r for r in post if r["unit"] == unit]
        cases = list(dict.fromkeys(_postproc_case(r) for r in post))
        impls = list(dict.fromkeys(r["label"] for r in post))
        fig = Figure(
            figsize=(max(6, 1.6 * len(cases) * max(1, len(impls)) / 2), 4.5), layout="constrained"
        )
        ax = fig.subplots()
        width = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            xs, med, lo, hi = [], [], [], []
            for i, case in enumerate(cases):
                for r in post:
                    if _postproc_case(r) == case and r["label"] == impl:
                        xs.append(i + j * width)
                        med.append(r["median"])
                        lo.append(r["median"] - r["min"])
                        hi.append(r["max"] - r["median"])
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=impl)
        ax.set_xticks(
            [i + 0.4 - width / 2 for i in range(len(cases))], cases, fontsize=7, rotation=15
        )
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_title("post-processing cost")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.savefig(out / "postproc_per_sample.png", dpi=110)
        written.append("postproc_per_sample.png")

    stream = [r for r in rows if r["benchmark"] == "stream" and _ms(r) is not None]
    if stream:
        staged = [(r, *_stage_of(r)) for r in stream]
        # A "total" row would stack on top of the stages it sums.
        staged = [(r, bar, st) for r, bar, st in staged if st is not None and st != "total"]
        bars_n = len({bar for _, bar, _ in staged}) if staged else len(stream)
        fig = Figure(figsize=(9, 2.0 + 0.45 * bars_n), layout="constrained")
        ax = fig.subplots()
        if staged:
            # One stacked bar per variant, one colour per stage; means add up to the
            # mean frame time (medians would not), so the mean is stacked when given.
            bars = list(dict.fromkeys(bar for _, bar, _ in staged))
            stages = list(dict.fromkeys(st for _, _, st in staged))
            left = [0.0] * len(bars)
            for stage in stages:
                widths = [
                    sum(
                        r["mean_ms"] if _is_number(r.get("mean_ms")) else _ms(r)
                        for r, bar, st in staged
                        if bar == b and st == stage
                    )
                    for b in bars
                ]
                ax.barh(range(len(bars)), widths, left=left, label=stage)
                left = [a + b for a, b in zip(left, widths, strict=True)]
            ax.set_yticks(range(len(bars)), bars, fontsize=7)
            fig.legend(fontsize=7, ncols=min(8, len(stages)), loc="outside lower center")
        else:
            labels = [r["label"].strip() for r in stream]
            med = [_ms(r) for r in stream]
            err = [
                [_ms(r) - _ms(r, "min") for r in stream],
                [_ms(r, "max") - _ms(r) for r in stream],
            ]
            ax.barh(range(len(stream)), med, xerr=err, capsize=2)
            ax.set_yticks(range(len(stream)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("ms per frame")
        ax.set_title("end-to-end stages")
        ax.grid(True, axis="x", alpha=0.3)
        fig.savefig(out / "stream_stages.png", dpi=110)
        written.append("stream_stages.png")
    return written


def _stage_of(row: dict[str, Any]) -> tuple[str, str | None]:
    """(bar, stage) of an end-to-end row: the bar is its variant (else its case), the
    stage its ``stage`` field; stage None for a row that is not a stage."""
    if isinstance(row.get("stage"), str):
        return row.get("variant") or row["case"], row["stage"]
    return row["label"].strip(), None


# ---------------------------------------------------------------- CLI
def write_results(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write results.json, results.md and the plots into ``out`` (created when missing).

    A plot that fails (e.g. matplotlib absent) is noted in the document, not raised.
    """
    out.mkdir(parents=True, exist_ok=True)
    try:
        doc["plots"] = write_plots(doc, out)
    except ImportError as exc:
        doc["plots"] = []
        doc["plot_error"] = f"plots skipped: needs {exc.name or exc}"
    paths = {"json": out / "results.json", "md": out / "results.md"}
    paths["json"].write_text(json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n")
    md = render_markdown(doc)
    if doc["plots"]:
        md += "\n## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in doc["plots"]) + "\n"
    paths["md"].write_text(md)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="reclnet bench",
        description="Run the benchmark suite (benchmarks/bench_*.py) and write results.json, "
        "results.md and PNG plots.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about two minutes)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. step peers)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="RESULTS",
        help="do not run: re-render RESULTS (a results.json) into --out and --doc",
    )
    parser.add_argument(
        "--doc",
        "--readme",
        dest="doc",
        type=Path,
        nargs="?",
        const=DEFAULT_DOC,
        metavar="PATH",
        help="also put the summary between the reclnet-bench markers of PATH "
        f"(default {DEFAULT_DOC}; markers are added when absent)",
    )
    parser.add_argument(
        "--bench-dir", type=Path, default=BENCH_DIR, help=argparse.SUPPRESS
    )  # for tests: a directory of other bench_*.py
    return parser


def read_results(path: Path) -> dict[str, Any]:
    """A saved ``results.json``, its targets judged again by this version.

    Raises
    ------
    OSError
        When it cannot be read.
    ValueError
        When it is not JSON or not of :data:`SCHEMA_VERSION` (schema 1 rows had no
        fields to judge targets on: run the suite again).
    """
    # Results files reach 1-2 MB; a document past 64 MiB or 32 levels is not ours.
    doc = loads_bounded(path.read_bytes(), max_bytes=64 << 20)
    if not isinstance(doc, dict):
        raise ValueError("not a results document")
    schema = doc.get("schema")
    if schema == 1:
        raise ValueError(
            "schema 1: its rows have no fields (precision, variant, n, label) to judge "
            "targets on and render; run `reclnet bench` again to measure them"
        )
    if schema != SCHEMA_VERSION:
        raise ValueError(f"schema {schema!r}, expected {SCHEMA_VERSION}")
    problems = [
        f"{bench.get('name')} row {i}: {'; '.join(issues)}"
        for bench in doc.get("benchmarks", [])
        for i, r in enumerate(bench.get("rows", []))
        if (issues := validate_row(r))
    ]
    if problems or not isinstance(doc.get("benchmarks"), list):
        raise ValueError("invalid rows: " + ("; ".join(problems[:3]) or "no benchmarks list"))
    doc["targets"] = evaluate_targets(all_rows(doc))  # judged by this version
    return doc


def main(argv: list[str] | None = None) -> int:
    """``reclnet bench [--quick] [--out DIR] [--only NAME...] [--list] [--doc [PATH]]
    [--from-json RESULTS]``.

    Returns 0 when every benchmark ran or skipped, 1 when one failed, 2 on bad arguments.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.from_json is not None:
        try:
            doc = read_results(args.from_json)
        except (OSError, ValueError) as exc:
            print(f"reclnet bench: cannot read {args.from_json}: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            paths = discover(args.bench_dir, args.only)
        except ValueError as exc:
            print(f"reclnet bench: {exc}", file=sys.stderr)
            return 2
        if args.list:
            print("\n".join(subject(p) for p in paths))
            return 0
        if not paths:
            print(f"reclnet bench: no bench_*.py in {args.bench_dir}", file=sys.stderr)
            return 2
        command = " ".join(["reclnet bench", *argv])
        doc = run_suite(paths, quick=args.quick, command=command)
    written = write_results(doc, args.out)
    print(render_summary(doc))
    if args.doc is not None:
        try:
            update_doc(args.doc, doc)
        except (OSError, ValueError) as exc:
            print(f"reclnet bench: {args.doc} not updated: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {written['json']}, {written['md']} and {len(doc['plots'])} plot(s) in {args.out}")
    return 1 if any(b["status"] == "failed" for b in doc["benchmarks"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
