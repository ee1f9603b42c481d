"""The physical floor of one RecLNet step on this machine.

Measures memory bandwidth (a large copy, and a copy that stays in the last-level
cache) and matmul throughput, then divides the paper-sized step model's weight
bytes (fp32, and INT8 with fp32 biases) by the bandwidth and its FLOPs by the
throughput, at each batch of live tracks N. No backend can run a step faster
than the larger of the two; the suite prints these floors next to each step figure.
The model size is computed from :class:`reclnet.config.RecLNetConfig`, never declared here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reclnet.benchmarks.timing import Timing, measure
from reclnet.config import RecLNetConfig

#: Live tracks per step: the same grid as the step and peer benchmarks.
TRACKS = (1, 8, 32, 128, 256)


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
    """

    params: int
    matrix_params: int
    other_params: int
    flops_per_track: int
    io_floats_per_track: int

    @property
    def fp32_weight_bytes(self) -> int:
        return 4 * self.params

    @property
    def int8_weight_bytes(self) -> int:
        """INT8 weight matrices plus fp32 biases (per-tensor scales are negligible)."""
        return self.matrix_params + 4 * self.other_params

    def to_dict(self) -> dict[str, int]:
        out = asdict(self)
        out["fp32_weight_bytes"] = self.fp32_weight_bytes
        out["int8_weight_bytes"] = self.int8_weight_bytes
        return out


def step_model_size(config: RecLNetConfig) -> StepModelSize:
    """Count the step model of ``config`` layer by layer (see ``train/model.py``).

    Parameters
    ----------
    config : RecLNetConfig
        Any cell (gru, lstm, fc) and fusion; one stream makes a single-stream model.

    Returns
    -------
    StepModelSize
    """
    gates = {"gru": 3, "lstm": 4}
    matrix = other = 0
    p, m = config.projection_size, config.memory_size
    for d in config.streams.values():
        matrix += d * p  # the per-stream projection
        other += p
        size_in = p
        for _ in range(config.num_layers):
            if config.cell == "fc":
                h = config.fc_hidden_size
                matrix += size_in * h
                other += h
                size_in = h
            else:
                g = gates[config.cell]
                matrix += g * (size_in * m + m * m)  # input and recurrent weights
                other += g * 2 * m  # bias_ih + bias_hh
                size_in = m
    n_streams, classes = len(config.streams), config.num_classes
    if n_streams > 1 and config.fusion == "fusion_layer":
        matrix += n_streams * config.stream_output_size * classes
        other += classes
    else:
        matrix += n_streams * config.stream_output_size * classes
        other += n_streams * classes
        if n_streams > 1 and config.fusion == "gating":
            other += n_streams * classes
    io = sum(config.streams.values()) + 2 * config.state_size + classes
    return StepModelSize(matrix + other, matrix, other, 2 * matrix, io)


def _bandwidth(megabytes: int, quick: bool) -> tuple[Timing, int]:
    """Time ``np.copyto`` of ``megabytes``; bytes moved count the read and the write."""
    n = megabytes * (1 << 20) // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    timing = measure(lambda: np.copyto(dst, src), repeat=3 if quick else 9)
    return timing, 2 * src.nbytes


def _matmul(size: int, quick: bool) -> tuple[Timing, int]:
    """Time a square fp32 matmul through numpy's BLAS (all cores, as the runtimes use)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    timing = measure(lambda: np.matmul(a, b, out=out), repeat=3 if quick else 9)
    return timing, 2 * size**3


def _rate_row(case: str, impl: str, unit: str, timing: Timing, amount: float, **extra) -> dict:
    """A throughput row: amount per second, min from the slowest run, max from the fastest."""
    return {
        "benchmark": "floor",
        "case": case,
        "impl": impl,
        "baseline": None,
        "unit": unit,
        "min": amount / timing.max,
        "median": amount / timing.median,
        "max": amount / timing.min,
        "ratio_vs_baseline": None,
        "repeat": timing.repeat,
        **extra,
    }


def _floor_row(n: int, impl: str, amount: float, rate: dict, **extra) -> dict:
    """Milliseconds to move / compute ``amount`` at the rates of ``rate`` (a rate row)."""
    scale = 1e9 * 1e-3  # rates are in G-units per second; the floor is in ms
    return {
        "benchmark": "floor",
        "case": f"step N={n}",
        "impl": impl,
        "baseline": None,
        "unit": "ms",
        "min": amount / (rate["max"] * scale),
        "median": amount / (rate["median"] * scale),
        "max": amount / (rate["min"] * scale),
        "ratio_vs_baseline": None,
        "n": n,
        **extra,
    }


def run(quick: bool = False) -> list[dict]:
    """Measure bandwidth and matmul throughput; the step floors at each N in :data:`TRACKS`.

    Parameters
    ----------
    quick : bool
        Fewer repeats and a smaller matmul (about 3 s instead of about 15 s).

    Returns
    -------
    list of dict
        Rows per the benchmark protocol: ``case`` "memory bandwidth" / "cache
        bandwidth" (GB/s), "matmul throughput" (GFLOP/s), and for each N ``step N=<n>``
        rows (ms, with ``n``) for impl "fp32 weights / memory bandwidth", "int8 weights /
        cache bandwidth", "FLOPs / matmul throughput", "floor fp32" and "floor int8"
        (the larger of the memory and compute floors).
    """
    config = RecLNetConfig()
    size = step_model_size(config)
    dram_mb, cache_mb, mm = 256, 8, (1024 if quick else 2048)
    dram_t, dram_bytes = _bandwidth(dram_mb, quick)
    cache_t, cache_bytes = _bandwidth(cache_mb, quick)
    mm_t, mm_flops = _matmul(mm, quick)
    dram = _rate_row(
        f"memory bandwidth (copy {dram_mb} MiB)",
        "numpy.copyto",
        "GB/s",
        dram_t,
        dram_bytes / 1e9,
    )
    cache = _rate_row(
        f"cache bandwidth (copy {cache_mb} MiB, LLC-resident)",
        "numpy.copyto",
        "GB/s",
        cache_t,
        cache_bytes / 1e9,
    )
    matmul = _rate_row(
        f"matmul throughput (fp32 {mm}x{mm})",
        "numpy.matmul",
        "GFLOP/s",
        mm_t,
        mm_flops / 1e9,
    )
    rows = [dram, cache, matmul]
    model = size.to_dict()
    for n in TRACKS:
        io = 4 * n * size.io_floats_per_track
        fp32_bytes, int8_bytes = size.fp32_weight_bytes + io, size.int8_weight_bytes + io
        flops = n * size.flops_per_track
        mem32 = _floor_row(n, "fp32 weights / memory bandwidth", fp32_bytes, dram, bytes=fp32_bytes)
        mem8 = _floor_row(n, "int8 weights / cache bandwidth", int8_bytes, cache, bytes=int8_bytes)
        comp = _floor_row(n, "FLOPs / matmul throughput", flops, matmul, flops=flops)
        rows += [mem32, mem8, comp]
        for name, mem in (("floor fp32", mem32), ("floor int8", mem8)):
            rows.append(
                {
                    **mem,
                    "impl": name,
                    **{k: max(mem[k], comp[k]) for k in ("min", "median", "max")},
                    "bound": "memory" if mem["median"] >= comp["median"] else "compute",
                    "model": model,
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(
            f"{row['case']:<45} {row['impl']:<34} "
            f"{row['min']:>10.4g} {row['median']:>10.4g} {row['max']:>10.4g} {row['unit']}"
        )
