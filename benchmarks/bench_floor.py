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

    def int8_bytes(self, variant: str) -> int:
        """Weight bytes of an INT8 variant of ``reclnet.export.quantize``: ``"signed"`` and
        ``"reduce_range"`` quantize every matrix, ``"input_projections"`` only the input
        projections (the rest stays fp32)."""
        if variant == "input_projections":
            return self.input_projection_params + 4 * (self.params - self.input_projection_params)
        return self.int8_weight_bytes

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


def _bandwidth(megabytes: int, quick: bool) -> tuple[Timing, int]:
    """Time ``np.copyto`` of ``megabytes``; bytes moved count the read and the write."""
    n = megabytes * (1 << 20) // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    timing = measure(lambda: np.copyto(dst, src), repeat=5 if quick else 9)
    return timing, 2 * src.nbytes


def _matmul(size: int, quick: bool) -> tuple[Timing, int]:
    """Time a square fp32 matmul through numpy's BLAS (all cores, as the runtimes use)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    timing = measure(lambda: np.matmul(a, b, out=out), repeat=5 if quick else 9)
    return timing, 2 * size**3


def _rate_row(case: str, impl: str, unit: str, timing: Timing, amount: float) -> dict:
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
    }


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
    try:
        import inspect

        from reclnet.export.quantize import quantize_step
    except ImportError:
        return "input_projections"
    return str(inspect.signature(quantize_step).parameters["variant"].default)


#: floor_kind -> (impl label, fold the projection, INT8 variant ("default": the export's
#: default) or None for fp32)
FLOORS = {
    "fp32_torch": ("floor fp32 (PyTorch model)", False, None),
    "fp32_exported": ("floor fp32 (exported step, projection folded)", True, None),
    "int8_exported": ("floor int8 (exported step, {variant})", True, "default"),
    "int8_all": ("floor int8 (exported step, every matrix)", True, "signed"),
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
        bandwidth" (GB/s), "matmul throughput" (GFLOP/s), and for each N three ``step
        N=<n>`` rows (ms) with ``n`` and ``floor_kind``: the PyTorch model in fp32
        (``fp32_torch``), the exported step with its projection folded in fp32
        (``fp32_exported``, weights from memory) and in INT8 (``int8_exported``, the
        export's default variant, and ``int8_all``, every matrix INT8; weights from the
        last-level cache). Each floor is the
        larger of ``memory_ms`` (bytes / bandwidth) and ``compute_ms`` (FLOPs / fp32
        matmul throughput), named by ``bound``.
    """
    config = RecLNetConfig()
    variant = _int8_variant()
    dram_mb, cache_mb, mm = 256, 8, (1024 if quick else 2048)
    dram_t, dram_bytes = _bandwidth(dram_mb, quick)
    cache_t, cache_bytes = _bandwidth(cache_mb, quick)
    mm_t, mm_flops = _matmul(mm, quick)
    dram = _rate_row(
        f"memory bandwidth (copy {dram_mb} MiB)", "numpy.copyto", "GB/s", dram_t, dram_bytes / 1e9
    )
    cache = _rate_row(
        f"cache bandwidth (copy {cache_mb} MiB, LLC-resident)",
        "numpy.copyto",
        "GB/s",
        cache_t,
        cache_bytes / 1e9,
    )
    matmul = _rate_row(
        f"matmul throughput (fp32 {mm}x{mm})", "numpy.matmul", "GFLOP/s", mm_t, mm_flops / 1e9
    )
    rows = [dram, cache, matmul]
    for n in TRACKS:
        for kind, (label, fold, int8) in FLOORS.items():
            size = step_model_size(config, fold_projection=fold)
            if int8 is None:
                weights = size.fp32_weight_bytes
            else:
                weights = size.int8_bytes(variant if int8 == "default" else int8)
            nbytes = weights + 4 * n * size.io_floats_per_track
            flops = n * size.flops_per_track
            memory = _ms(nbytes, cache if int8 else dram)
            compute = _ms(flops, matmul)
            rows.append(
                {
                    "benchmark": "floor",
                    "case": f"step N={n}",
                    "impl": label.format(variant=variant),
                    "baseline": None,
                    "unit": "ms",
                    **{k: max(memory[k], compute[k]) for k in ("min", "median", "max")},
                    "ratio_vs_baseline": None,
                    "n": n,
                    "floor_kind": kind,
                    "bound": "memory" if memory["median"] >= compute["median"] else "compute",
                    "memory_ms": memory["median"],
                    "compute_ms": compute["median"],
                    "bytes": nbytes,
                    "flops": flops,
                    "params": size.params,
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        extra = f"  ({row['bound']}-bound)" if "bound" in row else ""
        print(
            f"{row['case']:<45} {row['impl']:<50} "
            f"{row['min']:>8.4g} {row['median']:>8.4g} {row['max']:>8.4g} {row['unit']}{extra}"
        )
