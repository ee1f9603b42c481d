"""The physical floor of one RecLNet step on this machine, per precision.

Measures memory bandwidth (a large copy, and a copy that stays in the last-level
cache) and matmul peaks per precision where the machine has them: fp32 (numpy's BLAS
and ONNX Runtime's MatMul), bf16 (torch.matmul in bfloat16, only on CPUs with bf16
matmul instructions) and INT8 (ONNX Runtime's MatMulInteger, the kernel our INT8 step
runs). Then, at each batch of live tracks N, it divides the paper-sized step model's
weight bytes by the bandwidth (from the cache when they fit in it) and its FLOPs by
the peak of the precision each matrix runs in. No backend can run a step faster than
the larger of the two; the suite prints these floors next to each step figure.
The model size is computed from :class:`reclnet.config.RecLNetConfig`, never declared here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reclnet.benchmarks import machine
from reclnet.benchmarks.rows import row
from reclnet.benchmarks.timing import Timing, measure
from reclnet.config import RecLNetConfig

#: Live tracks per step: the same grid as the step and peer benchmarks.
TRACKS = (1, 8, 32, 128, 256)
#: Matmul shape (M, K, N) of each precision's peak: large enough that the kernels reach
#: their top rate (the fast bf16 / INT8 kernels need more work per call than fp32).
MATMUL_SHAPES = {"fp32": (2048, 4096, 2048), "bf16": (4096, 4096, 4096), "int8": (4096, 4096, 4096)}
#: CPU flags that give a hardware bf16 matmul (x86 AVX-512 / AMX, Arm "bf16").
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
#: CPU flags of the INT8 dot-product kernels, fastest first (all x86 CPUs run INT8 on AVX2).
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx2")


@dataclass(frozen=True)
class StepModelSize:
    """Parameter, byte and FLOP counts of one step of a RecLNet model.

    Attributes
    ----------
    params : int
        All parameters (equals ``sum(p.numel())`` of ``train.model.RecLNet``).
    matrix_params : int
        Parameters in weight matrices (the ones a matmul multiplies by; INT8-quantized).
    other_params : int
        Biases and gates (kept fp32 by quantization).
    flops_per_track : int
        Multiply-adds x 2 of one track's step (elementwise gate arithmetic ignored).
    io_floats_per_track : int
        Floats a track reads and writes per step besides the weights:
        its features, its state in and out, its probabilities.
    input_projection_params : int
        Weight-matrix parameters that multiply the stream inputs (the projections, or the
        folded first-layer input weights): what the ``input_projections`` INT8 variant
        quantizes.
    """

    params: int
    matrix_params: int
    other_params: int
    flops_per_track: int
    io_floats_per_track: int
    input_projection_params: int

    @property
    def fp32_weight_bytes(self) -> int:
        return 4 * self.params

    @property
    def int8_weight_bytes(self) -> int:
        """INT8 weight matrices plus fp32 biases (per-tensor scales are negligible)."""
        return self.matrix_params + 4 * self.other_params

    @property
    def bf16_weight_bytes(self) -> int:
        """bf16 weight matrices plus fp32 biases."""
        return 2 * self.matrix_params + 4 * self.other_params

    def int8_bytes(self, variant: str) -> int:
        """Weight bytes of an INT8 variant of ``reclnet.export.quantize``: ``"signed"`` and
        ``"reduce_range"`` quantize every matrix, ``"input_projections"`` only the input
        projections (the rest stays fp32)."""
        if variant == "input_projections":
            return self.input_projection_params + 4 * (self.params - self.input_projection_params)
        return self.int8_weight_bytes

    def int8_matrix_params(self, variant: str) -> int:
        """Weight-matrix parameters an INT8 variant quantizes (their matmuls run in INT8)."""
        return (
            self.input_projection_params if variant == "input_projections" else self.matrix_params
        )

    def to_dict(self) -> dict[str, int]:
        out = asdict(self)
        out["fp32_weight_bytes"] = self.fp32_weight_bytes
        out["int8_weight_bytes"] = self.int8_weight_bytes
        return out


def step_model_size(config: RecLNetConfig, *, fold_projection: bool = False) -> StepModelSize:
    """Count the step model of ``config`` layer by layer (see ``train/model.py``).

    Parameters
    ----------
    config : RecLNetConfig
        Any cell (gru, lstm, fc) and fusion; one stream makes a single-stream model.
    fold_projection : bool
        Count the exported step (``reclnet.export.graphs``), whose input projection is
        folded into the first layer's input weights, instead of the PyTorch model.

    Returns
    -------
    StepModelSize
    """
    gates = {"gru": 3, "lstm": 4}
    matrix = other = inputs = 0
    p, m = config.projection_size, config.memory_size
    for d in config.modalities.values():
        size_in = p
        if not fold_projection:
            matrix += d * p  # the per-stream projection
            other += p
            inputs += d * p
        for layer in range(config.num_layers):
            if fold_projection and layer == 0:
                size_in = d  # W_ih @ W_proj reads the stream input directly
            if config.cell == "fc":
                out = config.fc_hidden_size
                matrix += size_in * out
                other += out
            else:
                out = gates[config.cell] * m
                matrix += out * (size_in + m)  # input and recurrent weights
                other += 2 * out  # bias_ih + bias_hh
            if fold_projection and layer == 0:
                inputs += d * out
            size_in = config.layer_output_size
    n_modalities, classes = len(config.modalities), config.num_classes
    if n_modalities > 1 and config.fusion == "fusion_layer":
        matrix += n_modalities * config.modality_output_size * classes
        other += classes
    else:
        matrix += n_modalities * config.modality_output_size * classes
        other += n_modalities * classes
        if n_modalities > 1 and config.fusion == "gating":
            other += n_modalities * classes
    io = sum(config.modalities.values()) + 2 * config.state_size + classes
    return StepModelSize(matrix + other, matrix, other, 2 * matrix, io, inputs)


class Unavailable(Exception):
    """A matmul peak this machine or environment cannot measure (the message says why)."""


def _bandwidth(megabytes: int, quick: bool) -> tuple[Timing, int]:
    """Time ``np.copyto`` of ``megabytes``; bytes moved count the read and the write."""
    n = megabytes * (1 << 20) // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    timing = measure(lambda: np.copyto(dst, src), repeat=5 if quick else 9)
    return timing, 2 * src.nbytes


def _cpu_flags() -> set[str]:
    return set(machine.cpu_flags())


def _ort_matmul(m: int, k: int, n: int, integer: bool) -> Callable[[], object]:
    """An ONNX Runtime session of one MatMul (fp32) or MatMulInteger (u8 x s8 -> s32)
    with the weight as an initializer, as in the exported step; returns its run call."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        b = rng.integers(-128, 128, (k, n), dtype=np.int8)
        types, op = (TensorProto.UINT8, TensorProto.INT32), "MatMulInteger"
    else:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        types, op = (TensorProto.FLOAT, TensorProto.FLOAT), "MatMul"
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "matmul_peak",
        [helper.make_tensor_value_info("a", types[0], [m, k])],
        [helper.make_tensor_value_info("y", types[1], [m, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


def _numpy_matmul(m: int, k: int, n: int) -> Callable[[], object]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    return lambda: np.matmul(a, b, out=out)


def _torch_bf16_matmul(m: int, k: int, n: int) -> Callable[[], object]:
    if not any(f in _cpu_flags() for f in BF16_FLAGS):
        raise Unavailable(
            f"no bf16 matmul instructions ({' / '.join(BF16_FLAGS)}) on this CPU: "
            "bf16 would be emulated, and runtimes run fp32 there"
        )
    try:
        import torch
    except ImportError as exc:
        raise Unavailable("needs torch, not installed") from exc
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    b = torch.randn(k, n, generator=gen).to(torch.bfloat16)
    out = torch.empty(m, n, dtype=torch.bfloat16)
    return lambda: torch.matmul(a, b, out=out)


#: (precision, engine) of each matmul peak, and how to build its call from (m, k, n).
ENGINES: dict[tuple[str, str], Callable[[int, int, int], Callable[[], object]]] = {
    ("fp32", "numpy.matmul"): _numpy_matmul,
    ("fp32", "onnxruntime MatMul"): lambda m, k, n: _ort_matmul(m, k, n, integer=False),
    ("bf16", "torch.matmul"): _torch_bf16_matmul,
    ("int8", "onnxruntime MatMulInteger"): lambda m, k, n: _ort_matmul(m, k, n, integer=True),
}


def _matmul(precision: str, engine: str, shape: tuple[int, int, int], quick: bool) -> Timing:
    """Time one matmul of ``shape`` (M, K, N) on ``engine`` (all cores, as the runtimes use).

    Raises
    ------
    Unavailable
        When the engine or its hardware support is absent.
    """
    try:
        fn = ENGINES[(precision, engine)](*shape)
    except ImportError as exc:
        raise Unavailable(f"needs {exc.name or exc}, not installed") from exc
    return measure(fn, repeat=3 if quick else 9)


def _rate_row(case: str, impl: str, unit: str, timing: Timing, amount: float, **fields) -> dict:
    """A throughput row: amount per second, min from the slowest run, max from the fastest."""
    stats = (amount / timing.max, amount / timing.median, amount / timing.min)
    return row("floor", case, impl, unit=unit, stats=stats, repeat=timing.repeat, **fields)


def _ms(amount: float, rate: dict) -> dict[str, float]:
    """Milliseconds to move / compute ``amount`` at the rates of a rate row (G-units / s).

    Other work on a shared machine only ever slows a run down, so the fastest run is the
    best estimate of what the machine can do: it gives the floor (``min`` and
    ``median``); the median run gives ``max``, the floor on a machine as busy as this one.
    """
    scale = 1e9 * 1e-3
    best = amount / (rate["max"] * scale)
    return {"min": best, "median": best, "max": amount / (rate["median"] * scale)}


def _int8_variant() -> str:
    """The INT8 variant ``reclnet.export.quantize.quantize_step`` writes by default."""
    from reclnet.export.quantize import DEFAULT_VARIANT

    return DEFAULT_VARIANT


def int8_floor_kind(variant: str) -> str:
    """The floor of an INT8 export variant: ``"input_projections"`` quantizes only the
    input projections, the others (``"signed"``, ``"reduce_range"``) every matrix."""
    return "int8_input_projections" if variant == "input_projections" else "int8_all"


@dataclass(frozen=True)
class Floor:
    """One kind of step floor: which model is counted and how its matrices are stored."""

    label: str
    fold_projection: bool
    precision: str
    #: INT8 variant (see :meth:`StepModelSize.int8_bytes`); None unless precision is int8.
    int8_variant: str | None = None


#: floor_kind -> Floor. Step and peer rows name theirs in a ``floor_kind`` field.
FLOORS = {
    "fp32_torch": Floor("floor fp32 (PyTorch model)", False, "fp32"),
    "fp32_exported": Floor("floor fp32 (exported step, projection folded)", True, "fp32"),
    "bf16_exported": Floor("floor bf16 (exported step, bf16 matrices)", True, "bf16"),
    "int8_input_projections": Floor(
        "floor int8 (exported step, input projections INT8)", True, "int8", "input_projections"
    ),
    "int8_all": Floor("floor int8 (exported step, every matrix INT8)", True, "int8", "signed"),
}


def _storage(size: StepModelSize, floor: Floor) -> tuple[int, dict[str, int]]:
    """Weight bytes of ``floor``'s model and its matrix parameters per compute precision."""
    if floor.precision == "int8":
        variant = floor.int8_variant or "signed"
        low = size.int8_matrix_params(variant)
        parts = {"int8": low, "fp32": size.matrix_params - low}
        return size.int8_bytes(variant), {p: v for p, v in parts.items() if v}
    if floor.precision == "bf16":
        return size.bf16_weight_bytes, {"bf16": size.matrix_params}
    return size.fp32_weight_bytes, {"fp32": size.matrix_params}


def step_floor(
    size: StepModelSize,
    n: int,
    floor: Floor,
    *,
    memory: dict,
    cache: dict,
    peaks: dict[str, dict],
    llc_bytes: int | None,
) -> dict[str, Any]:
    """The floor of one step of ``size`` for ``n`` tracks (ms; see :func:`_ms`).

    Parameters
    ----------
    size : StepModelSize
        Counted with ``floor.fold_projection``.
    n : int
        Live tracks.
    floor : Floor
        How the matrices are stored: fp32, bf16 or an INT8 variant (INT8 matrices run
        at the INT8 peak, the rest at the fp32 peak).
    memory, cache : dict
        Bandwidth rows (GB/s): weights that fit in the last-level cache are read at the
        faster of the two, others at the memory bandwidth.
    peaks : dict
        Precision -> its fastest matmul rate row (GFLOP/s or GOP/s).
    llc_bytes : int or None
        Last-level cache size (None: unknown, weights come from memory).

    Returns
    -------
    dict
        ``min`` / ``median`` / ``max`` (ms), ``memory_ms``, ``compute_ms``, ``bound``,
        ``bytes``, ``flops``, ``weights_from``, ``peaks_used`` (precision -> GFLOP/s).

    Raises
    ------
    KeyError
        When a precision the floor needs has no peak.
    """
    weights, parts = _storage(size, floor)
    nbytes = weights + 4 * n * size.io_floats_per_track
    resident = llc_bytes is not None and weights <= llc_bytes
    # Weights that fit in the cache may still come from memory: the faster rate bounds both.
    mem = _ms(nbytes, max(cache, memory, key=lambda r: r["max"]) if resident else memory)
    compute = {"min": 0.0, "median": 0.0, "max": 0.0}
    for precision, matrix in parts.items():
        part = _ms(2 * matrix * n, peaks[precision])
        compute = {k: compute[k] + part[k] for k in compute}
    return {
        **{k: max(mem[k], compute[k]) for k in ("min", "median", "max")},
        "bound": "memory" if mem["median"] >= compute["median"] else "compute",
        "memory_ms": mem["median"],
        "compute_ms": compute["median"],
        "bytes": nbytes,
        "flops": n * size.flops_per_track,
        "weights_from": "cache" if resident else "memory",
        "peaks_used": {p: peaks[p]["max"] for p in parts},
    }


def run(quick: bool = False, llc_bytes: int | None = -1) -> list[dict]:
    """Measure bandwidths and matmul peaks; the step floors at each N in :data:`TRACKS`.

    Parameters
    ----------
    quick : bool
        Fewer repeats (about 5 s instead of about 10 s).
    llc_bytes : int or None
        Last-level cache size; -1 reads it from sysfs (a parameter for tests).

    Returns
    -------
    list of dict
        Rows (see :mod:`reclnet.benchmarks.rows`): ``case`` "memory bandwidth" and
        "cache bandwidth" (GB/s), "matmul peak" (one per engine, its ``precision``;
        skipped rows say why a peak is absent), and for each N and each kind of
        :data:`FLOORS` a "step floor" row (ms) with ``n``, ``precision``,
        ``floor_kind``, ``bound``, ``memory_ms``, ``compute_ms`` (skipped when its
        precision has no peak). A precision's peak is the fastest of its engines.
    """
    config = RecLNetConfig()
    if llc_bytes == -1:
        llc_bytes = machine.last_level_cache_bytes()
    llc_mib = (llc_bytes or 0) >> 20
    dram_mb = max(256, llc_mib)  # twice the cache touched (source and destination)
    cache_mb = max(1, min(8, llc_mib // 4)) if llc_bytes else 8
    dram_t, dram_bytes = _bandwidth(dram_mb, quick)
    cache_t, cache_bytes = _bandwidth(cache_mb, quick)
    memory = _rate_row(
        "memory bandwidth",
        "numpy.copyto",
        "GB/s",
        dram_t,
        dram_bytes / 1e9,
        variant=f"copy {dram_mb} MiB",
    )
    cache = _rate_row(
        "cache bandwidth",
        "numpy.copyto",
        "GB/s",
        cache_t,
        cache_bytes / 1e9,
        variant=f"copy {cache_mb} MiB, LLC-resident",
    )
    rows = [memory, cache]
    flags = _cpu_flags()
    peaks: dict[str, dict] = {}
    reasons: dict[str, str] = {}
    for precision, engine in ENGINES:
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        isa = [f for f in (INT8_FLAGS if precision == "int8" else BF16_FLAGS) if f in flags]
        m, k, n_ = shape = MATMUL_SHAPES[precision]
        fields = {"precision": precision, "variant": f"{m}x{k} @ {k}x{n_}", "cpu_flags": isa}
        try:
            timing = _matmul(precision, engine, shape, quick)
        except Unavailable as exc:
            reasons.setdefault(precision, str(exc))
            rows.append(
                row(
                    "floor",
                    "matmul peak",
                    engine,
                    unit=unit,
                    stats=None,
                    skipped=str(exc),
                    **fields,
                )
            )
            continue
        rate = _rate_row("matmul peak", engine, unit, timing, 2 * m * k * n_ / 1e9, **fields)
        rows.append(rate)
        if precision not in peaks or rate["max"] > peaks[precision]["max"]:
            peaks[precision] = rate
    variant = _int8_variant()
    for n in TRACKS:
        for kind, floor in FLOORS.items():
            size = step_model_size(config, fold_projection=floor.fold_projection)
            fields = {
                "precision": floor.precision,
                "variant": kind,
                "n": n,
                "label": floor.label,
                "floor_kind": kind,
                "params": size.params,
            }
            if floor.precision == "int8":
                fields["int8_variant"] = floor.int8_variant
                fields["export_default"] = floor.int8_variant == variant
            absent = sorted(p for p in _storage(size, floor)[1] if p not in peaks)
            if absent:
                why = "; ".join(reasons.get(p, f"no {p} matmul peak") for p in absent)
                rows.append(
                    row(
                        "floor", "step floor", "floor", unit="ms", stats=None, skipped=why, **fields
                    )
                )
                continue
            values = step_floor(
                size, n, floor, memory=memory, cache=cache, peaks=peaks, llc_bytes=llc_bytes
            )
            stats = tuple(values.pop(k) for k in ("min", "median", "max"))
            rows.append(
                row("floor", "step floor", "floor", unit="ms", stats=stats, **fields, **values)
            )
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        figure = r.get("skipped") or (
            f"{r['min']:>8.4g} {r['median']:>8.4g} {r['max']:>8.4g} {r['unit']}"
            + (f"  ({r['bound']}-bound)" if "bound" in r else "")
        )
        print(f"{r['case']:<18} {str(r['n'] or ''):>4} {r['label']:<52} {figure}")
