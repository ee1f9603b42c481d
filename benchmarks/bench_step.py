"""Latency of one streaming step of the paper-sized RecLNet for N live tracks.

In one process, at each N in {1, 8, 32, 128, 256}: PyTorch eager
(``RecLNet.step``, batched, the baseline), ONNX Runtime fp32 (the exported
unrolled step with the projection folded, the same unfolded, the ONNX GRU
operator variant, the state-pool variant with Gather/ScatterND inside the
graph) and ONNX Runtime INT8 (the three dynamic-quantization variants).
Random weights: speed does not depend on their values. Exports go to a
temporary folder; nothing is downloaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from reclnet.benchmarks.timing import Timing, measure
from reclnet.config import RecLNetConfig

TRACKS = (1, 8, 32, 128, 256)
BASELINE = "pytorch eager (batched)"
POOL_CAPACITY = 256


def _row(n: int, impl: str, t: Timing, base: Timing | None, **extra: object) -> dict:
    ms = t.scaled(1e3)
    return {
        "benchmark": "step",
        "case": f"N={n}",
        "impl": impl,
        "baseline": None if base is None else BASELINE,
        "unit": "ms",
        "min": ms.min,
        "median": ms.median,
        "max": ms.max,
        "ratio_vs_baseline": None if base is None else base.median / t.median,
        "n": n,
        "repeat": t.repeat,
        "number": t.number,
        **extra,
    }


def _sessions(folder: Path, config: RecLNetConfig, quick: bool) -> dict[str, object]:
    """Export the paper-sized model's step variants; one ORT session per variant."""
    import onnx
    import onnxruntime as ort
    import torch

    from reclnet.export.onnx_builder import build_step_rnn_model
    from reclnet.export.onnx_export import export_step, export_step_pool
    from reclnet.export.quantize import quantize_step
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    model = RecLNet(config).eval()
    step = export_step(model, folder / "step.onnx")
    paths = {
        "ort fp32 (unrolled, folded)": step,
        "ort int8 (input_projections)": quantize_step(step, folder / "step.int8.onnx"),
    }
    if not quick:
        paths["ort fp32 (unrolled, unfolded)"] = export_step(
            model, folder / "unfolded" / "step.onnx", fold_projection=False
        )
        gru = folder / "step_gru_op.onnx"
        onnx.save(build_step_rnn_model(model), str(gru))
        paths["ort fp32 (GRU op)"] = gru
        paths["ort fp32 pool (gather/scatter)"] = export_step_pool(
            model, folder / "pool" / "step_pool.onnx", capacity=POOL_CAPACITY
        )
        for variant in ("reduce_range", "signed"):
            paths[f"ort int8 ({variant})"] = quantize_step(
                step, folder / f"step.int8_{variant}.onnx", variant=variant
            )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out: dict[str, object] = {"model": model}
    for impl, path in paths.items():
        out[impl] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return out


def run(quick: bool = False) -> list[dict]:
    """Step latency rows (ms) for every implementation at each N.

    Parameters
    ----------
    quick : bool
        N in {1, 128} and only the default fp32 and INT8 exports (about 1 min).

    Returns
    -------
    list[dict]
        Rows of the shared benchmark contract, ``ratio_vs_baseline`` against
        PyTorch eager at the same N.
    """
    import torch

    config = RecLNetConfig()  # the paper's model: 2 x 4096 inputs, 11.2 M parameters
    tracks = (1, 128) if quick else TRACKS
    repeat = 3 if quick else 7
    rows: list[dict] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="reclnet-bench-step-") as tmp:
        sessions = _sessions(Path(tmp), config, quick)
        model = sessions.pop("model")
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

            base = measure(eager, repeat=repeat)
            rows.append(_row(n, BASELINE, base, None, threads=torch.get_num_threads()))
            pool = np.zeros((POOL_CAPACITY, config.state_size), np.float32)
            slots = rng.permutation(POOL_CAPACITY)[:n].astype(np.int64)
            for impl, sess in sessions.items():
                if "pool" in impl:
                    feed = {**feats, "pool": pool, "slots": slots}
                else:
                    feed = {**feats, "state": state}
                t = measure(lambda sess=sess, feed=feed: sess.run(None, feed), repeat=repeat)
                rows.append(_row(n, impl, t, base))
    return rows


if __name__ == "__main__":
    results = run()
    print(f"{'case':>6}  {'impl':<32} {'median ms':>10} {'min':>9} {'max':>9} {'vs eager':>9}")
    for r in results:
        ratio = "" if r["ratio_vs_baseline"] is None else f"{r['ratio_vs_baseline']:.2f}x"
        print(
            f"{r['case']:>6}  {r['impl']:<32} {r['median']:>10.3f} {r['min']:>9.3f} "
            f"{r['max']:>9.3f} {ratio:>9}"
        )
