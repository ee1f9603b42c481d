"""`reclnet bench`: discover and run every ``benchmarks/bench_*.py`` and report the results.

Each benchmark module exposes ``run(quick: bool = False) -> list[dict]`` (rows per
the protocol in ``benchmarks/timing.py`` and the shared brief). The suite runs them
one after another in this process, so a failing benchmark or a missing optional
dependency never stops the others: the first is recorded as ``failed`` with its
traceback, the second as ``skipped`` with the missing module named. It writes

- ``results.json``: the machine (CPU, caches, library versions, load), every row
  with min / median / max, per-benchmark status, and the project's performance targets;
- ``results.md``: the same as tables (the README's "Benchmarks" section is cut from it);
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

from reclnet.benchmarks import machine as machine_facts

BENCH_DIR = Path(__file__).resolve().parent
PACKAGE = "reclnet.benchmarks"
SCHEMA_VERSION = 1
DEFAULT_OUT = Path("out") / "bench"

REQUIRED_KEYS = ("benchmark", "case", "impl", "unit", "min", "median", "max")
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
    """What is wrong with ``row`` under the row protocol (empty when nothing is).

    A row marked ``{"skipped": "reason"}`` may leave ``min``/``median``/``max`` None.
    """
    if not isinstance(row, dict):
        return [f"row is a {type(row).__name__}, not a dict"]
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in row]
    for key in ("benchmark", "case", "impl", "unit"):
        if key in row and not isinstance(row[key], str):
            problems.append(f"{key} must be a str, got {row[key]!r}")
    skipped = isinstance(row.get("skipped"), str)
    for key in ("min", "median", "max"):
        if key not in row:
            continue
        value = row[key]
        if skipped and (value is None or (_is_number(value) and math.isnan(value))):
            continue
        if not _is_number(value) or not math.isfinite(value):
            problems.append(f"{key} must be a finite number, got {value!r}")
    if not problems and not skipped and not row["min"] <= row["median"] <= row["max"]:
        problems.append(
            f"need min <= median <= max, got {row['min']}, {row['median']}, {row['max']}"
        )
    ratio = row.get("ratio_vs_baseline")
    if ratio is not None and not _is_number(ratio):
        problems.append(f"ratio_vs_baseline must be a number or None, got {ratio!r}")
    return problems


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
    for i, row in enumerate(rows):
        issues = validate_row(row)
        if issues:
            problems.append(f"row {i} dropped: {'; '.join(issues)}")
        else:
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
        ``{"schema": 1, "created": ISO UTC, "command", "quick", "machine", "benchmarks":
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


def tracks(row: dict[str, Any]) -> int | None:
    """Live tracks (batch N) of a row: its ``n`` / ``tracks`` / ``num_tracks`` field, or
    ``N=<n>`` / ``<n> tracks`` in its case."""
    for key in ("n", "tracks", "num_tracks", "live_tracks", "batch"):
        value = row.get(key)
        if _is_number(value):
            return int(value)
    match = re.search(r"\bN\s*=\s*(\d+)|(\d+)\s+(?:live\s+)?tracks?\b", str(row.get("case", "")))
    if match:
        return int(match.group(1) or match.group(2))
    return None


def _find(
    rows: Iterable[dict[str, Any]],
    benchmark: str,
    *,
    impl: Sequence[str] = (),
    not_impl: Sequence[str] = (),
    n: int | None = None,
    case: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rows of ``benchmark`` whose impl contains all of ``impl`` and none of ``not_impl``
    (case-insensitive), at ``n`` live tracks, whose case contains all of ``case``."""
    out = []
    for row in rows:
        if row["benchmark"] != benchmark:
            continue
        name, text = row["impl"].lower(), row["case"].lower()
        if any(s not in name for s in impl) or any(s in name for s in not_impl):
            continue
        if any(s not in text for s in case):
            continue
        if n is not None and tracks(row) != n:
            continue
        out.append(row)
    return out


def _ms(row: dict[str, Any], key: str = "median") -> float | None:
    scale = seconds_per_unit(row["unit"])
    return None if scale is None else row[key] * scale * 1e3


# ---------------------------------------------------------------- targets
def _target(text: str, met: bool | None, figures: str) -> dict[str, Any]:
    return {
        "target": text,
        "status": {True: "met", False: "not met", None: "unknown"}[met],
        "figures": figures,
    }


def evaluate_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's CPU performance targets, judged from the measured rows.

    A target whose rows are absent (benchmark skipped or not written) is ``"unknown"``.
    Ratios are computed from medians of rows measured in the same run.
    """
    out = []
    floor = {key: _ms(r) for key, r in floors_by_kind(rows).items()}
    # Step model at N=1 and N=128.
    int8_1 = _best(_find(rows, "step", impl=("int8",), n=1))
    eager_1 = _best(_find(rows, "step", impl=("eager",), n=1), worst=True)
    if int8_1 is not None:
        ms = _ms(int8_1)
        fl = floor.get((1, floor_kind(int8_1["impl"])))
        out.append(
            _target(
                "step at N=1 <= 0.3 ms (INT8)",
                ms <= 0.3,
                f"{int8_1['impl']}: {ms:.3f} ms median"
                + (f" (floor int8 {fl:.3f} ms)" if fl else ""),
            )
        )
    else:
        out.append(_target("step at N=1 <= 0.3 ms (INT8)", None, "no INT8 step row at N=1"))
    if int8_1 is not None and eager_1 is not None:
        ratio = _ms(eager_1) / _ms(int8_1)
        out.append(
            _target(
                "step at N=1 >= 10x faster than PyTorch eager",
                ratio >= 10,
                f"{ratio:.1f}x ({eager_1['impl']} {_ms(eager_1):.3f} ms / "
                f"{int8_1['impl']} {_ms(int8_1):.3f} ms)",
            )
        )
    else:
        out.append(_target("step at N=1 >= 10x faster than PyTorch eager", None, "rows absent"))
    ours_128 = _best(_find(rows, "step", impl=("ort",), n=128)) or _best(
        _find(rows, "step", impl=("onnx",), n=128)
    )
    eager_128 = _best(_find(rows, "step", impl=("eager", "batch"), n=128))
    if ours_128 is not None and eager_128 is not None:
        ratio = _ms(eager_128) / _ms(ours_128)
        fl = floor.get((128, "fp32_exported"))
        out.append(
            _target(
                "step at N=128 >= 2x faster than batched PyTorch eager",
                ratio >= 2,
                f"{ratio:.2f}x ({eager_128['impl']} {_ms(eager_128):.2f} ms / {ours_128['impl']} "
                f"{_ms(ours_128):.2f} ms" + (f"; fp32 floor {fl:.2f} ms" if fl else "") + ")",
            )
        )
    else:
        out.append(
            _target("step at N=128 >= 2x faster than batched PyTorch eager", None, "rows absent")
        )
    # Post-processing.
    out += _postproc_targets(rows)
    # Online scorer.
    out += _scorer_targets(rows)
    # Peers.
    out.append(_peer_target(rows))
    return out


def _best(rows: list[dict[str, Any]], worst: bool = False) -> dict[str, Any] | None:
    """The fastest (or slowest) row by median time, None when there is none."""
    timed = [r for r in rows if _ms(r) is not None]
    if not timed:
        return None
    return (max if worst else min)(timed, key=lambda r: _ms(r))


def _per_sample_ns(row: dict[str, Any]) -> float | None:
    scale = seconds_per_unit(row["unit"])
    return None if scale is None else row["median"] * scale * 1e9


def _postproc_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text_ns = "post-processing <= 20 ns per (track, class) sample"
    text_x = "post-processing >= 3x faster than bottleneck.move_median"
    timed = [r for r in _find(rows, "postproc") if "sample" in r["unit"] and _per_sample_ns(r)]
    # The whole job in C ("C core"); else any of ours.
    core = [r for r in timed if "c core" in r["impl"].lower()] or [
        r for r in timed if r["impl"].lower().startswith(("c ", "reclnet"))
    ]
    if not core:
        return [_target(text_ns, None, "no C-core per-sample row"), _target(text_x, None, "")]
    worst = max(core, key=_per_sample_ns)
    out = [
        _target(
            text_ns,
            _per_sample_ns(worst) <= 20,
            ", ".join(f"{r['case']}: {_per_sample_ns(r):.1f} ns" for r in core),
        )
    ]
    vs_bn = [
        r
        for r in core
        if "bottleneck" in str(r.get("baseline") or "").lower()
        and _is_number(r.get("ratio_vs_baseline"))
    ]
    if not vs_bn:
        # The ratio may be stated on a row with another baseline: compute it from medians.
        for r in core:
            for b in _find(rows, "postproc", impl=("bottleneck",), case=(r["case"].lower(),)):
                if b["unit"] == r["unit"]:
                    vs_bn.append({**r, "ratio_vs_baseline": b["median"] / r["median"]})
    if vs_bn:
        low = min(vs_bn, key=lambda r: r["ratio_vs_baseline"])
        out.append(
            _target(
                text_x,
                low["ratio_vs_baseline"] >= 3,
                ", ".join(f"{r['case']}: {r['ratio_vs_baseline']:.1f}x" for r in vs_bn),
            )
        )
    else:
        out.append(_target(text_x, None, "no bottleneck row"))
    return out


def _scorer_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text_x = "online scorer at 100 live tracks >= 10x faster than the per-track PyTorch loop"
    text_o = "online scorer at 100 live tracks: time outside the model step <= 5%"
    at100 = _find(rows, "scorer", n=100)
    loop = _best(
        [r for r in at100 if "loop" in r["impl"].lower() or "per-track" in r["impl"].lower()]
    )
    ours = _best(
        [
            r
            for r in at100
            if r not in ([loop] if loop else [])
            and "loop" not in r["impl"].lower()
            and "per-track" not in r["impl"].lower()
            and "torch" not in r["impl"].lower()
        ]
    )
    out = []
    if loop is not None and ours is not None:
        ratio = _ms(loop) / _ms(ours)
        out.append(
            _target(
                text_x,
                ratio >= 10,
                f"{ratio:.1f}x ({loop['impl']} {_ms(loop):.2f} ms / {ours['impl']} "
                f"{_ms(ours):.2f} ms per frame)",
            )
        )
    else:
        out.append(_target(text_x, None, "rows absent"))
    fractions = [
        (r, r[k])
        for r in at100
        for k in ("outside_step_fraction", "overhead_fraction", "outside_step")
        if _is_number(r.get(k))
    ]
    if ours is not None:
        fractions = [f for f in fractions if f[0] is ours] or fractions
    if fractions:
        r, frac = fractions[0]
        frac = frac / 100 if frac > 1 else frac
        out.append(_target(text_o, frac <= 0.05, f"{r['impl']}: {100 * frac:.1f}% outside step"))
    else:
        out.append(_target(text_o, None, "no outside-step fraction reported"))
    return out


def _peer_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    text = "ahead of OpenVINO on the same model at every N"
    versus = [
        r
        for r in _find(rows, "peers")
        if "openvino" in str(r.get("baseline") or "").lower()
        and _is_number(r.get("ratio_vs_baseline"))
    ]
    if not versus:
        return _target(text, None, "no OpenVINO comparison rows")
    # Every one of our rows against its OpenVINO peer (each precision, each N).
    versus.sort(key=lambda r: (r["impl"], tracks(r) or 0))
    met = all(r["ratio_vs_baseline"] >= 1 for r in versus)
    figures = ", ".join(f"{r['impl']} N={tracks(r)}: {r['ratio_vs_baseline']:.2f}x" for r in versus)
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
    """The floor benchmark's rows keyed by ``(N, floor_kind)``."""
    return {
        (tracks(r), r["floor_kind"]): r
        for r in rows
        if r["benchmark"] == "floor" and isinstance(r.get("floor_kind"), str) and tracks(r)
    }


def floor_kind(impl: str) -> str:
    """Which floor a step implementation runs against (``bench_floor.FLOORS``): an INT8
    exported step, the PyTorch model (eager and the unfolded export keep the projection
    apart), or the fp32 exported step."""
    name = impl.lower()
    if "int8" in name:
        # The "signed" / "reduce_range" INT8 variants quantize every matrix.
        return "int8_all" if ("signed" in name or "reduce_range" in name) else "int8_exported"
    if any(s in name for s in ("eager", "pytorch", "torch", "unfolded")):
        return "fp32_torch"
    return "fp32_exported"


def _floor_for(row: dict[str, Any], floors: dict[tuple[int, str], dict[str, Any]]) -> str:
    """The physical floor (in the row's unit) next to a step figure at the same N."""
    n, scale = tracks(row), seconds_per_unit(row["unit"])
    if n is None or scale is None:
        return ""
    floor = floors.get((n, floor_kind(row["impl"])))
    if floor is None:
        return ""
    value = _ms(floor) * 1e-3 / scale
    return f"{_fmt(value)} ({floor.get('bound', '')})"


def render_markdown(doc: dict[str, Any]) -> str:
    """``results.md``: header, targets, one table per benchmark, skipped / failed ones."""
    m = doc["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items() if v)
    lines = [
        "# reclnet benchmark results",
        "",
        f"- date: {doc['created']} (UTC), {doc['seconds']:.0f} s",
        f"- command: `{doc['command']}`" + (" (quick)" if doc.get("quick") else ""),
        f"- machine: {machine_facts.describe(m)}",
        f"- load average at start / end: {m.get('load_average')} / {doc.get('load_average_end')}"
        f" on {m.get('usable_cpus')} CPUs (above the CPU count means other work shared the cores)",
        f"- libraries: {libs}",
        f"- commit: {m.get('git_commit')}",
        "",
        "Ratios are baseline median / impl median measured in the same process "
        "(> 1: faster than the baseline). min / median / max are over repeated runs.",
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
        with_floor = bench["name"] in ("step", "peers") and floors
        if measured:
            head = ["case", "impl", "baseline", "median", "min", "max", "unit", "vs baseline"]
            if with_floor:
                head.append("floor (bound)")
            lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
            for r in measured:
                ratio = r.get("ratio_vs_baseline")
                cells = [
                    r["case"],
                    r["impl"],
                    r.get("baseline") or "",
                    _fmt(r["median"]),
                    _fmt(r["min"]),
                    _fmt(r["max"]),
                    r["unit"],
                    f"{ratio:.2f}x" if _is_number(ratio) else "",
                ]
                if with_floor:
                    cells.append(_floor_for(r, floors))
                lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
            lines.append("")
        for r in skipped:
            lines.append(f"- skipped: {r['case']} / {r['impl']}: {r['skipped']}")
        if skipped:
            lines.append("")
        lines.append(f"_{bench['seconds']:.1f} s_")
        lines.append("")
    return "\n".join(lines)


SUMMARY_SECTIONS = ("Targets", "step", "peers", "postproc", "scorer", "stream")
README_START, README_END = "<!-- reclnet-bench:start -->", "<!-- reclnet-bench:end -->"


def render_summary(doc: dict[str, Any], heading: str = "##") -> str:
    """The short form for the README: header lines, the targets and the tables of
    :data:`SUMMARY_SECTIONS`, with their headings at level ``heading``."""
    keep = []
    for section in re.split(r"(?m)^(?=## )", render_markdown(doc)):
        title = section.split("\n", 1)[0]
        if not title.startswith("## "):
            keep.append(section.replace("# reclnet benchmark results\n", "", 1))
        elif title[3:].strip() in SUMMARY_SECTIONS:
            keep.append(heading + section[2:])
    return "".join(keep).strip() + "\n"


def update_readme(readme: Path, doc: dict[str, Any]) -> None:
    """Replace the text between the README's ``reclnet-bench`` markers with the summary.

    Raises
    ------
    ValueError
        When the markers are missing or out of order (nothing is written then).
    """
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(
            f"{readme}: needs the lines {README_START} and {README_END} (in this order) "
            "around the results"
        )
    body = render_summary(doc, heading="####")
    new = text[: start + len(README_START)] + "\n" + body + text[end:]
    readme.write_text(new)


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
            n, ms = tracks(r), _ms(r)
            if r["benchmark"] == bench and n is not None and ms is not None and n > 0:
                series.setdefault(r["impl"], []).append((n, _ms(r, "min"), ms, _ms(r, "max")))
        if series:
            panels.append((bench, series))
    if panels:
        floor_series = {}
        for r in rows:
            if r["benchmark"] == "floor" and isinstance(r.get("floor_kind"), str) and tracks(r):
                floor_series.setdefault(r["impl"], []).append((tracks(r), _ms(r)))
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
                styles = iter([(0, (5, 2)), (0, (2, 2)), (0, (5, 2, 1, 2)), (0, (1, 1))])
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
        cases = list(dict.fromkeys(r["case"] for r in post))
        impls = list(dict.fromkeys(r["impl"] for r in post))
        fig = Figure(
            figsize=(max(6, 1.6 * len(cases) * max(1, len(impls)) / 2), 4.5), layout="constrained"
        )
        ax = fig.subplots()
        width = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            xs, med, lo, hi = [], [], [], []
            for i, case in enumerate(cases):
                for r in post:
                    if r["case"] == case and r["impl"] == impl:
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
            labels = [f"{r['case']} / {r['impl']}" for r in stream]
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
    """(bar, stage) of an end-to-end row: its ``stage`` field, or an impl of the form
    ``"stage NAME (VARIANT)"``; stage None for a row that is not a stage."""
    if isinstance(row.get("stage"), str):
        return f"{row['case']} / {row['impl']}", row["stage"]
    match = re.match(r"\s*stage\s+(\S+)\s*(?:\((.*)\))?\s*$", row["impl"])
    if match:
        return (match.group(2) or row["case"]), match.group(1)
    return row["impl"], None


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
    parser = argparse.ArgumentParser(
        prog="reclnet bench",
        description="Run the benchmark suite (benchmarks/bench_*.py) and write results.json, "
        "results.md and PNG plots.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
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
        help="do not run: re-render RESULTS (a results.json) into --out and --readme",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        metavar="PATH",
        help="also put the summary between the reclnet-bench markers of this README",
    )
    parser.add_argument(
        "--bench-dir", type=Path, default=BENCH_DIR, help=argparse.SUPPRESS
    )  # for tests: a directory of other bench_*.py
    return parser


def main(argv: list[str] | None = None) -> int:
    """``reclnet bench [--quick] [--out DIR] [--only NAME...] [--list] [--readme PATH]
    [--from-json RESULTS]``.

    Returns 0 when every benchmark ran or skipped, 1 when one failed, 2 on bad arguments.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.from_json is not None:
        try:
            doc = json.loads(args.from_json.read_text())
            if doc.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"schema {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
            doc["targets"] = evaluate_targets(all_rows(doc))  # judged by this version
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
    if args.readme is not None:
        try:
            update_readme(args.readme, doc)
        except (OSError, ValueError) as exc:
            print(f"reclnet bench: README not updated: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {written['json']}, {written['md']} and {len(doc['plots'])} plot(s) in {args.out}")
    return 1 if any(b["status"] == "failed" for b in doc["benchmarks"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
