"""The one row constructor every benchmark uses, and the row protocol the suite checks.

A row is a JSON-ready dict whose *fields* say what was measured: which benchmark and
workload (``case``), which implementation (``impl``: the runtime or library), at which
numeric ``precision``, which ``variant`` of it, at how many live tracks ``n`` and
``classes``, against which ``baseline`` row, in which ``unit``, with ``min`` / ``median``
/ ``max`` over repeated runs. ``label`` is free text for tables and plot legends only:
the suite selects rows by the fields, never by the text of a label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from reclnet.benchmarks.timing import Timing

#: Numeric precisions a row may name (None: not a numeric kernel, e.g. the evaluator).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: Fields every row carries (None where one does not apply).
FIELDS = (
    "benchmark",
    "case",
    "impl",
    "precision",
    "variant",
    "n",
    "classes",
    "baseline",
    "unit",
    "min",
    "median",
    "max",
    "ratio_vs_baseline",
    "label",
)
#: Fields that name a row (with ``stage`` where a row has one): no two rows of a run share them.
IDENTITY = ("benchmark", "case", "impl", "precision", "variant", "n", "classes", "stage")
#: Fields of a baseline row kept on the rows measured against it.
BASELINE_FIELDS = ("impl", "precision", "variant", "label")

# Names the suite's targets select on, shared here so benchmarks and suite cannot drift.
PYTORCH = "pytorch"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
TENSORRT = "tensorrt"
#: variant of the batched PyTorch eager step (the step benchmark's baseline).
EAGER_BATCHED = "eager, batched"
#: variant of the scorer benchmark's baseline (impl PYTORCH).
PER_TRACK_LOOP = "per-track loop + numpy median"
#: impl of the whole post-processing job in C (median + threshold + top-k).
C_CORE = "reclnet C core"
#: impl of the post-processing baseline.
BOTTLENECK = "bottleneck.move_median"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def default_label(impl: str, precision: str | None, variant: str | None) -> str:
    """``"onnxruntime int8 (signed)"`` from the fields (what a table shows by default)."""
    text = " ".join(s for s in (impl, precision) if s)
    return f"{text} ({variant})" if variant else text


def row(
    benchmark: str,
    case: str,
    impl: str,
    *,
    unit: str,
    stats: Timing | Sequence[float] | None,
    precision: str | None = None,
    variant: str | None = None,
    n: int | None = None,
    classes: int | None = None,
    baseline: dict[str, Any] | None = None,
    ratio: float | None = None,
    label: str | None = None,
    scale: float = 1.0,
    skipped: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A benchmark row with every field of :data:`FIELDS`.

    Parameters
    ----------
    benchmark, case, impl : str
        The subject (``bench_<benchmark>.py``), the workload, the implementation.
    unit : str
        Unit of min / median / max after ``scale`` (``"ms"``, ``"ns/sample"``, ``"GB/s"``).
    stats : Timing or (min, median, max) or None
        What was measured; a :class:`Timing` also records ``repeat``, ``number`` and
        ``p99``. None only with ``skipped``.
    precision : str, optional
        One of :data:`PRECISIONS`: the precision the implementation actually ran.
    variant, n, classes
        Which variant, live tracks, classes (None where they do not apply).
    baseline : dict, optional
        The baseline row (made by this function, same unit): its :data:`BASELINE_FIELDS`
        are kept, and ``ratio_vs_baseline`` is its median / this median unless ``ratio``
        is given.
    ratio : float, optional
        An explicit ratio (> 1: faster than the baseline).
    label : str, optional
        Display text; :func:`default_label` of the fields when None.
    scale : float
        Multiplies the values of ``stats`` (``1e3``: seconds to ms).
    skipped : str, optional
        Why nothing was measured.
    **extra
        Further JSON-ready fields (``floor_kind``, ``max_abs_diff``, ...).

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        When ``stats`` is None without ``skipped``, or ``precision`` is unknown.
    """
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
    timing: dict[str, Any] = {}
    if stats is None:
        if skipped is None:
            raise ValueError(f"{benchmark}/{case}/{impl}: no stats and no skipped reason")
        lo = med = hi = None
    elif isinstance(stats, Timing):
        lo, med, hi = stats.min * scale, stats.median * scale, stats.max * scale
        timing = {"repeat": stats.repeat, "number": stats.number, "p99": stats.p99 * scale}
    else:
        lo, med, hi = (float(v) * scale for v in stats)
    if ratio is None and baseline is not None and med:
        base_median = baseline.get("median")
        if _is_number(base_median) and baseline.get("unit") == unit:
            ratio = base_median / med
    out: dict[str, Any] = {
        "benchmark": benchmark,
        "case": case,
        "impl": impl,
        "precision": precision,
        "variant": variant,
        "n": n,
        "classes": classes,
        "baseline": None if baseline is None else {k: baseline.get(k) for k in BASELINE_FIELDS},
        "unit": unit,
        "min": lo,
        "median": med,
        "max": hi,
        "ratio_vs_baseline": ratio,
        "label": label if label is not None else default_label(impl, precision, variant),
        **timing,
        **extra,
    }
    if skipped is not None:
        out["skipped"] = skipped
    return out


def validate_row(r: Any) -> list[str]:
    """What is wrong with ``r`` under the row protocol (empty when nothing is).

    A row marked ``{"skipped": "reason"}`` may leave ``min`` / ``median`` / ``max`` None.
    """
    if not isinstance(r, dict):
        return [f"row is a {type(r).__name__}, not a dict"]
    problems = [f"missing field {k!r}" for k in FIELDS if k not in r]
    for key in ("benchmark", "case", "impl", "unit", "label"):
        if key in r and not isinstance(r[key], str):
            problems.append(f"{key} must be a str, got {r[key]!r}")
    if r.get("precision") is not None and r["precision"] not in PRECISIONS:
        problems.append(f"precision must be one of {PRECISIONS} or None, got {r['precision']!r}")
    if r.get("variant") is not None and not isinstance(r["variant"], str):
        problems.append(f"variant must be a str or None, got {r['variant']!r}")
    for key in ("n", "classes"):
        if r.get(key) is not None and not _is_count(r[key]):
            problems.append(f"{key} must be a count (int >= 0) or None, got {r[key]!r}")
    base = r.get("baseline")
    if base is not None and not (isinstance(base, dict) and isinstance(base.get("impl"), str)):
        problems.append(f"baseline must be None or a dict with an impl, got {base!r}")
    skipped = isinstance(r.get("skipped"), str)
    for key in ("min", "median", "max"):
        if key not in r:
            continue
        value = r[key]
        if skipped and (value is None or (_is_number(value) and math.isnan(value))):
            continue
        if not _is_number(value) or not math.isfinite(value):
            problems.append(f"{key} must be a finite number, got {value!r}")
    if not problems and not skipped and not r["min"] <= r["median"] <= r["max"]:
        problems.append(f"need min <= median <= max, got {r['min']}, {r['median']}, {r['max']}")
    ratio = r.get("ratio_vs_baseline")
    if ratio is not None and not _is_number(ratio):
        problems.append(f"ratio_vs_baseline must be a number or None, got {ratio!r}")
    return problems


def identity(r: dict[str, Any]) -> tuple[Any, ...]:
    """The fields that name a row (:data:`IDENTITY`)."""
    return tuple(r.get(k) for k in IDENTITY)
