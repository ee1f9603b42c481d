"""``reclnet gpu-check``: one command proving the GPU step path against ONNX Runtime on the CPU.

It exports a random-weight step model (paper-sized by default), derives an FP16
graph (FP32 I/O) and a Q/DQ INT8 graph, builds FP32 / FP16 / INT8 TensorRT
engines, and runs every GPU backend -- native TensorRT with cuda-python and
with pycuda, ONNX Runtime's CUDA and TensorRT execution providers -- over the
same stream of frames with track churn (live tracks grow through 1, 8, 128 and
1024, tracks end and start every frame), comparing each frame's probabilities
and states with ONNX Runtime on the CPU. A table is printed, a JSON report is
written, and the exit status is 1 when anything failed or could not run:
nothing is skipped silently.

``--dry`` (CPU-only machines) runs all of it except the device: the FP16 and
Q/DQ graphs run on ONNX Runtime's CPU provider through the same churn driver
and tolerances, and every device backend is reported as ``not run (dry)``.

Tolerances (max |difference| over all frames, vs the FP32 CPU reference):
fp32 1e-3, fp16 3e-2, int8 1.5e-1 (probabilities and states alike). See docs/gpu.md.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.argparsing import ArgumentParser, positive_int

__all__ = ["TOLERANCE", "churn_schedule", "compare_stream", "main", "reference_stream"]

#: Max |difference| allowed per precision (probabilities and states).
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "int8": 1.5e-1}
TARGETS = (1, 8, 128, 1024)


def churn_schedule(frames: int, seed: int = 0) -> list[list[int]]:
    """Live track ids per frame: the count moves through :data:`TARGETS`, with churn.

    Every frame a few tracks end and new ones start (new ids), so the batch
    changes (host states) most frames and stays the same (device states) on the
    others.

    Returns
    -------
    list of list of int
        Track ids alive in each frame, in slot order.
    """
    rng = np.random.default_rng(seed)
    live: list[int] = []
    next_id = 0
    out = []
    for t in range(frames):
        target = TARGETS[min(t * len(TARGETS) // max(frames, 1), len(TARGETS) - 1)]
        if t % 3 == 2 and live:  # steady frames: same tracks, same order
            out.append(list(live))
            continue
        ending = rng.random(len(live)) < 0.05
        live = [k for k, e in zip(live, ending, strict=True) if not e] if live else []
        while len(live) < target:
            live.append(next_id)
            next_id += 1
        live = live[:target]
        out.append(list(live))
    return out


@dataclass
class Result:
    """One backend's outcome."""

    name: str
    precision: str
    status: str  # "ok", "FAIL", "not run (dry)"
    max_prob_diff: float = float("nan")
    max_state_diff: float = float("nan")
    frames: int = 0
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def reference_stream(
    reference: Callable[[dict[str, np.ndarray], np.ndarray], Any],
    config: Any,
    schedule: list[list[int]],
    seed: int = 1,
) -> list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Features and reference (probs, new states) of every frame, computed once.

    The reference carries each track's state from frame to frame by track id.
    """
    rng = np.random.default_rng(seed)
    s = config.state_size
    states: dict[int, np.ndarray] = {}
    out = []
    for ids in schedule:
        n = len(ids)
        feats = {
            k: rng.normal(size=(n, d)).astype(np.float32) for k, d in config.modalities.items()
        }
        probs, new = reference(
            feats, np.stack([states.get(i, np.zeros(s, np.float32)) for i in ids])
        )
        states = {k: new[j] for j, k in enumerate(ids)}
        out.append((feats, probs, new))
    return out


def compare_stream(
    runner: Any,
    frames: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]],
    config: Any,
    schedule: list[list[int]],
) -> tuple[float, float]:
    """Drive ``runner`` over the schedule; max |prob| and |state| differences to the reference.

    The runner keeps its own states as the scorer does: the device handle is
    passed back while the batch is unchanged, host rows (after
    :meth:`fetch_state`, reordered by track id) when it changes.
    """
    s = config.state_size
    run_states: dict[int, np.ndarray] = {}
    handle: Any = None
    prev: list[int] | None = None
    max_p = max_s = 0.0
    for ids, (feats, ref_p, ref_s) in zip(schedule, frames, strict=True):
        if ids == prev and handle is not None:
            state_in = handle
        else:
            if handle is not None and prev is not None:
                host = runner.fetch_state(handle)
                run_states = {k: host[j] for j, k in enumerate(prev)}
            state_in = np.stack([run_states.get(i, np.zeros(s, np.float32)) for i in ids])
        probs, handle = runner.step(feats, state_in)
        new_s = runner.fetch_state(handle)
        max_p = max(max_p, float(np.abs(probs - ref_p).max()))
        max_s = max(max_s, float(np.abs(new_s - ref_s).max()))
        prev = list(ids)
    return max_p, max_s


def _qdq(src: Path, dst: Path, config: Any) -> Path:
    """A Q/DQ INT8 graph by ONNX Runtime static quantization (calibrated on random frames)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(7)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [
                    {
                        **{
                            k: rng.normal(size=(64, d)).astype(np.float32)
                            for k, d in config.modalities.items()
                        },
                        "state": rng.uniform(-1, 1, (64, config.state_size)).astype(np.float32),
                    }
                    for _ in range(8)
                ]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        # Only the MatMuls: a quantized Softmax output would no longer sum to 1.
        op_types_to_quantize=["MatMul"],
        per_channel=True,
    )
    from reclnet.export.sidecar import write_sidecar
    from reclnet.runtime.artifacts import load_artifact

    write_sidecar(dst, kind="step", config=load_artifact(src).config)
    return dst


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in (
        "numpy",
        "onnxruntime",
        "onnxruntime-gpu",
        "tensorrt",
        "cuda-python",
        "cuda-bindings",
        "pycuda",
        "torch",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _run(result: Result, fn: Callable[[], tuple[float, float]]) -> Result:
    start = time.perf_counter()
    try:
        result.max_prob_diff, result.max_state_diff = fn()
        tol = TOLERANCE[result.precision]
        ok = max(result.max_prob_diff, result.max_state_diff) <= tol
        result.status = "ok" if ok else "FAIL"
        if not ok:
            result.detail = f"difference above the {result.precision} tolerance {tol}"
    except Exception as exc:  # a backend that cannot run is a failure, reported
        result.status, result.detail = "FAIL", f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    result.seconds = time.perf_counter() - start
    return result


def check(out_dir: Path, *, dry: bool, frames: int, size: str, device: int) -> dict[str, Any]:
    """Run the whole check; returns the report (see the module docstring)."""
    import onnxruntime as ort

    from reclnet.config import RecLNetConfig
    from reclnet.export.onnx_export import export_step
    from reclnet.export.onnx_fp16 import convert_to_fp16
    from reclnet.runtime.backends import load_backend
    from reclnet.train.model import RecLNet

    config = (
        RecLNetConfig()
        if size == "paper"
        else RecLNetConfig(
            num_actions=4, modalities={"rgb": 24, "flow": 16}, projection_size=16, memory_size=8
        )
    )
    import torch

    torch.manual_seed(0)
    export_step(RecLNet(config).eval(), out_dir / "step.onnx")
    fp32 = out_dir / "step.onnx"
    graphs = {"fp32": fp32}
    graphs["fp16"] = convert_to_fp16(fp32, out_dir / "step_fp16.onnx")
    from reclnet.export.sidecar import write_sidecar

    write_sidecar(graphs["fp16"], kind="step", config=config)
    graphs["int8"] = _qdq(fp32, out_dir / "step_qdq.onnx", config)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])

    def reference(feats: dict[str, np.ndarray], state: np.ndarray):
        return ref.run(None, {**feats, "state": state})

    schedule = churn_schedule(frames)
    ref_frames = reference_stream(reference, config, schedule)
    max_n = max(len(ids) for ids in schedule)
    results: list[Result] = []
    # CPU twins of the graphs the GPU backends build from (these run in --dry too).
    for prec, path in graphs.items():
        results.append(
            _run(
                Result(f"ort-cpu/{path.name}", prec, "FAIL"),
                lambda p=path: _stream(
                    load_backend("onnxruntime", model=p, providers=["cpu"]),
                    ref_frames,
                    config,
                    schedule,
                ),
            )
        )
    gpu: list[tuple[str, str, Callable[[], Any]]] = []
    for prec in ("fp32", "fp16", "int8"):
        for memory in ("cuda-python", "pycuda"):
            gpu.append(
                (
                    f"tensorrt/{memory}",
                    prec,
                    lambda p=prec, m=memory: _trt(graphs, p, m, max_n, device, out_dir),
                )
            )
    gpu.append(
        (
            "ort-cuda",
            "fp32",
            lambda: load_backend("onnxruntime", model=fp32, providers=["cuda"], device_id=device),
        )
    )
    for prec, fp16 in (("fp32", False), ("fp16", True)):
        gpu.append(
            (
                f"ort-tensorrt{'-fp16' if fp16 else ''}",
                prec,
                lambda f=fp16: load_backend(
                    "onnxruntime",
                    model=fp32,
                    providers=["tensorrt"],
                    device_id=device,
                    fp16=f,
                    trt_cache_dir=out_dir / "ort-trt-cache",
                    trt_profile_tracks=(1, 128, max_n),
                ),
            )
        )
    for name, prec, make in gpu:
        if dry:
            results.append(Result(name, prec, "not run (dry)"))
        else:
            results.append(
                _run(
                    Result(name, prec, "FAIL"),
                    lambda mk=make: _stream(mk(), ref_frames, config, schedule),
                )
            )
    report = {
        "dry": dry,
        "frames": frames,
        "size": size,
        "max_tracks": max_n,
        "tolerance": TOLERANCE,
        "versions": _versions(),
        "gpu": None if dry else _gpu(device),
        "tensorrt_api_problems": None if dry else _api_problems(),
        "results": [r.__dict__ for r in results],
    }
    return report


def _stream(runner: Any, frames: Any, config: Any, schedule: list[list[int]]):
    with runner:
        return compare_stream(runner, frames, config, schedule)


def _trt(
    graphs: dict[str, Path], precision: str, memory: str, max_n: int, device: int, out_dir: Path
) -> Any:
    from reclnet.export.tensorrt_engine import build_engine
    from reclnet.runtime.backends import load_backend

    engine = out_dir / f"step.{precision}.engine"
    if not engine.exists():
        src = graphs["int8"] if precision == "int8" else graphs["fp32"]
        build_engine(
            src, engine, precision=precision, opt_tracks=128, max_tracks=max_n, device=device
        )
    return load_backend("tensorrt", engine=engine, memory=memory, device=device)


def _gpu(device: int) -> Any:
    try:
        from reclnet.runtime.backends.tensorrt.cuda_python_memory import gpu_identity

        return gpu_identity(device)
    except Exception as exc:  # reported, not hidden
        return f"unknown ({exc})"


def _api_problems() -> Any:
    try:
        from reclnet.runtime.backends.tensorrt.api import api_problems
        from reclnet.runtime.backends.tensorrt.loader import import_tensorrt

        return api_problems(import_tensorrt())
    except Exception as exc:
        return [f"cannot check the TensorRT API: {exc}"]


def format_table(report: dict[str, Any]) -> str:
    """The report's results as a markdown table."""
    lines = [
        "| backend | precision | status | max prob diff | max state diff | s | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['name']} | {r['precision']} | {r['status']} | {r['max_prob_diff']:.2e} | "
            f"{r['max_state_diff']:.2e} | {r['seconds']:.1f} | {r['detail'][:160]} |"
        )
    return "\n".join(lines)


def failed(report: dict[str, Any]) -> bool:
    """Whether anything failed (a dry run's device rows do not count; a real run's do)."""
    bad = [
        r
        for r in report["results"]
        if r["status"] != "ok" and not (report["dry"] and r["status"] == "not run (dry)")
    ]
    return bool(bad) or bool(report.get("tensorrt_api_problems"))


def main(argv: list[str] | None = None) -> int:
    """``reclnet gpu-check``; exit status 0 only when every check passed."""
    p = ArgumentParser(prog="reclnet gpu-check", description=__doc__.splitlines()[0])
    p.add_argument("--dry", action="store_true", help="CPU only: everything but the device")
    p.add_argument("--frames", type=positive_int, default=200, help="frames (default 200)")
    p.add_argument("--size", choices=("paper", "tiny"), default="paper", help="model size")
    p.add_argument("--device", type=int, default=0, help="CUDA device (default 0)")
    p.add_argument("--out", type=Path, default=Path("gpu-check"), help="report directory")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = check(
            Path(tmp), dry=args.dry, frames=args.frames, size=args.size, device=args.device
        )
    table = format_table(report)
    (args.out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "gpu-check.md").write_text(table + "\n")
    if args.dry:
        print("DRY RUN: no device used; device backends are listed as not run.")
    print(table)
    if report.get("tensorrt_api_problems"):
        print("TensorRT API record problems:", *report["tensorrt_api_problems"], sep="\n  ")
    bad = failed(report)
    print(f"gpu-check: {'FAILED' if bad else 'passed'} (report in {args.out})", file=sys.stderr)
    return 1 if bad else 0
