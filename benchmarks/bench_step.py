"""Latency of one streaming step of the paper-sized RecLNet for N live tracks.

In one process, at each N in {1, 8, 32, 128, 256}: PyTorch eager
(``RecLNet.step``, batched, the baseline), ONNX Runtime fp32 (the exported
step with the projection folded, and the same unfolded) and ONNX Runtime INT8
(the three dynamic-quantization variants).
Random weights: speed does not depend on their values. Exports go to a
temporary folder; nothing is downloaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from reclnet.benchmarks.bench_floor import int8_floor_kind
from reclnet.benchmarks.rows import EAGER_BATCHED, ONNXRUNTIME, PYTORCH, row
from reclnet.benchmarks.timing import Timing, measure
from reclnet.config import RecLNetConfig

TRACKS = (1, 8, 32, 128, 256)


def _row(
    n: int, impl: str, precision: str, variant: str, t: Timing, base: dict | None, **extra: object
) -> dict:
    return row(
        "step",
        "step",
        impl,
        unit="ms",
        stats=t,
        scale=1e3,
        precision=precision,
        variant=variant,
        n=n,
        baseline=base,
        label=f"ort {precision} ({variant})" if impl == ONNXRUNTIME else None,
        **extra,
    )


def _floor_kind(precision: str, variant: str) -> str:
    """The floor (``bench_floor.FLOORS``) of an exported variant: unfolded ones keep the
    projection apart, as the PyTorch model does."""
    if precision == "int8":
        return int8_floor_kind(variant)
    return "fp32_torch" if "unfolded" in variant.split(", ") else "fp32_exported"


def _sessions(
    folder: Path, config: RecLNetConfig, quick: bool
) -> tuple[object, dict[tuple[str, str], object]]:
    """Export the paper-sized model's step variants; one ORT session per
    ``(precision, variant)``."""
    import onnxruntime as ort
    import torch

    from reclnet.export.onnx_export import export_step
    from reclnet.export.quantize import DEFAULT_VARIANT, VARIANTS, quantize_step
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    model = RecLNet(config).eval()
    step = export_step(model, folder / "step.onnx")
    paths = {
        ("fp32", "unrolled, folded"): step,
        ("int8", DEFAULT_VARIANT): quantize_step(step, folder / "step.int8.onnx"),
    }
    if not quick:
        paths[("fp32", "unrolled, unfolded")] = export_step(
            model, folder / "unfolded" / "step.onnx", fold_projection=False
        )
        for variant in (v for v in VARIANTS if v != DEFAULT_VARIANT):
            paths[("int8", variant)] = quantize_step(
                step, folder / f"step.int8_{variant}.onnx", variant=variant
            )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = {
        key: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for key, path in paths.items()
    }
    return model, sessions


def run(quick: bool = False) -> list[dict]:
    """Step latency rows (ms) for every implementation at each N.

    Parameters
    ----------
    quick : bool
        N in {1, 128} and only the default fp32 and INT8 exports (about 1 min).

    Returns
    -------
    list[dict]
        Rows (``reclnet.benchmarks.rows``): impl ``pytorch`` (variant ``eager, batched``,
        the baseline) or ``onnxruntime`` with its precision and export variant, ``n``,
        ``floor_kind``; ``ratio_vs_baseline`` against PyTorch eager at the same N.
    """
    import torch

    config = RecLNetConfig()  # the paper's model: 2 x 4096 inputs, 11.2 M parameters
    tracks = (1, 128) if quick else TRACKS
    repeat = 3 if quick else 7
    rows: list[dict] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="reclnet-bench-step-") as tmp:
        model, sessions = _sessions(Path(tmp), config, quick)
        for n in tracks:
            feats = {
                s: rng.standard_normal((n, d), dtype=np.float32)
                for s, d in config.modalities.items()
            }
            state = (0.1 * rng.standard_normal((n, config.state_size))).astype(np.float32)
            t_feats = {k: torch.from_numpy(v) for k, v in feats.items()}
            t_state = torch.from_numpy(state)

            def eager(t_feats=t_feats, t_state=t_state) -> None:
                with torch.inference_mode():
                    model.step(t_feats, t_state)

            t = measure(eager, repeat=repeat)
            base = _row(
                n,
                PYTORCH,
                "fp32",
                EAGER_BATCHED,
                t,
                None,
                floor_kind="fp32_torch",
                threads=torch.get_num_threads(),
            )
            rows.append(base)
            feed = {**feats, "state": state}
            for (precision, variant), sess in sessions.items():
                t = measure(lambda sess=sess, feed=feed: sess.run(None, feed), repeat=repeat)
                kind = _floor_kind(precision, variant)
                rows.append(_row(n, ONNXRUNTIME, precision, variant, t, base, floor_kind=kind))
    return rows


if __name__ == "__main__":
    results = run()
    print(f"{'N':>4}  {'impl':<32} {'median ms':>10} {'min':>9} {'max':>9} {'vs eager':>9}")
    for r in results:
        ratio = "" if r["ratio_vs_baseline"] is None else f"{r['ratio_vs_baseline']:.2f}x"
        print(
            f"{r['n']:>4}  {r['label']:<32} {r['median']:>10.3f} {r['min']:>9.3f} "
            f"{r['max']:>9.3f} {ratio:>9}"
        )
