"""The step model on peer runtimes: OpenVINO's CPU runtime vs ours (ONNX Runtime) on one file.

Both run the same exported ``step.onnx`` of the paper-sized RecLNet, side by side
in this process at each number of live tracks N. OpenVINO gets its best case: a
model compiled per N with static shapes and the latency hint, and for INT8 its own
path (NNCF INT8 weight compression of the same fp32 file) next to our INT8 file,
because OpenVINO runs ONNX Runtime's MatMulInteger graph tens of times slower.
TensorRT FP16 (through ONNX Runtime's TensorRT execution provider) is measured
only when an NVIDIA GPU is present; otherwise its rows say why they are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.benchmarks.timing import measure
from reclnet.config import RecLNetConfig

#: Live tracks per step (the floor benchmark uses the same grid).
TRACKS = (1, 8, 32, 128, 256)
QUICK_TRACKS = (1, 8, 128)
PEER = "openvino"
REPO = Path(__file__).resolve().parents[1]
#: Sources whose change makes a cached export stale.
_EXPORT_SOURCES = ("train/model.py", "export", "reclnet/config.py")


def _cache_dir() -> Path:
    """Where exported benchmark models are kept between runs (export takes ~30 s)."""
    root = os.environ.get("RECLNET_BENCH_CACHE")
    return Path(root) if root else Path(tempfile.gettempdir()) / "reclnet-bench-cache"


def _export_key(config: RecLNetConfig, seed: int) -> str:
    """Changes with the model config, the seed, the exporter and model sources, torch."""
    from importlib.metadata import version

    h = hashlib.sha256(f"{config.to_json()}|{seed}|torch {version('torch')}".encode())
    for rel in _EXPORT_SOURCES:
        p = REPO / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def paper_step_onnx(seed: int = 0) -> dict[str, Path]:
    """The paper-sized step model (default :class:`RecLNetConfig`, random weights), exported
    through ``reclnet.export``; cached by :func:`_export_key`.

    Returns
    -------
    dict
        ``{"fp32": step.onnx, "int8": step.int8.onnx}``.
    """
    config = RecLNetConfig()
    target = _cache_dir() / _export_key(config, seed)
    if not (target / "step.onnx").is_file():
        import torch

        from reclnet.export.onnx_export import export_step
        from reclnet.train.model import RecLNet

        torch.manual_seed(seed)
        model = RecLNet(config).eval()
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=target.parent))
        try:
            export_step(model, work / "step.onnx")
            _quantize(work / "step.onnx", work / "step.int8.onnx")
            work.rename(target)
            for stale in target.parent.iterdir():  # exports of older sources: ~60 MB each
                if stale != target and (stale / "step.onnx").is_file():
                    shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            if not (target / "step.onnx").is_file():  # not a concurrent run's rename
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    out = {"fp32": target / "step.onnx"}
    if (target / "step.int8.onnx").is_file():
        out["int8"] = target / "step.int8.onnx"
    return out


def _quantize(src: Path, dst: Path) -> None:
    """INT8 through the exporter's quantizer with its default variant (as ``reclnet export``)."""
    from reclnet.export.quantize import quantize_step

    quantize_step(src, dst)


def _features(config: RecLNetConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {k: rng.standard_normal((n, d), dtype=np.float32) for k, d in config.modalities.items()}
    feeds["state"] = rng.standard_normal((n, config.state_size), dtype=np.float32) * 0.1
    return feeds


class _OpenVino:
    """OpenVINO CPU, compiled for static shapes at one N with the latency hint.

    Parameters
    ----------
    model : Path or openvino.Model
        An ONNX file, or a model already read (it is cloned, not changed).
    feeds : dict
        Example inputs: their shapes are compiled in.
    """

    def __init__(self, model: Any, feeds: dict[str, np.ndarray]) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(model)) if isinstance(model, str | Path) else model.clone()
        model.reshape({name: list(a.shape) for name, a in feeds.items()})
        self.compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.probs = self.compiled.output("probs")

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.request.infer(feeds)[self.probs]


def _openvino_int8(fp32: Path) -> Any:
    """OpenVINO's own INT8 path for a weight-bound model: NNCF data-free INT8 weight
    compression of the fp32 file (per-channel asymmetric; activations stay fp32)."""
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(fp32))
    # NNCF draws a progress bar even at ERROR level: keep it out of the suite's output.
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def _interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, runs interleaved so that drift hits all alike."""
    numbers = {k: measure(fn, repeat=1).number for k, fn in fns.items()}
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            runs[k].append(measure(fn, repeat=1, number=numbers[k], warmup=0).median)
    return runs


def _row(
    case: str,
    impl: str,
    n: int,
    runs: list[float],
    baseline: str | None,
    base_runs: list[float] | None,
    **extra,
) -> dict:
    ms = np.asarray(runs) * 1e3
    ratio = None if base_runs is None else float(np.median(base_runs) / np.median(runs))
    return {
        "benchmark": "peers",
        "case": case,
        "impl": impl,
        "baseline": baseline,
        "unit": "ms",
        "min": float(ms.min()),
        "median": float(np.median(ms)),
        "max": float(ms.max()),
        "ratio_vs_baseline": ratio,
        "n": n,
        "repeat": len(runs),
        **extra,
    }


def _skipped(case: str, impl: str, n: int | None, reason: str) -> dict:
    return {
        "benchmark": "peers",
        "case": case,
        "impl": impl,
        "baseline": None,
        "unit": "ms",
        "min": None,
        "median": None,
        "max": None,
        "ratio_vs_baseline": None,
        "n": n,
        "skipped": reason,
    }


def _gpu_reason() -> str | None:
    """None when an NVIDIA GPU is usable, else why not."""
    if not (Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()):
        return "no NVIDIA GPU on this machine"
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no TensorRT execution provider (install the ort-gpu extra)"
    return None


def run(quick: bool = False) -> list[dict]:
    """ONNX Runtime vs OpenVINO (and TensorRT FP16 on a GPU) on the same step files.

    Parameters
    ----------
    quick : bool
        N in (1, 8, 128) and 3 interleaved runs instead of all of :data:`TRACKS` and 7.

    Returns
    -------
    list of dict
        Per N and precision: an ``openvino <prec>`` row and an ``onnxruntime <prec>`` row
        whose baseline is OpenVINO (ratio > 1: ONNX Runtime is faster); for int8 the peer
        is OpenVINO with NNCF INT8 weights (its own INT8 path), and in a full run also
        OpenVINO on our ``step.int8.onnx``; ``tensorrt fp16`` rows (skipped without a
        GPU). Each ONNX Runtime row has ``n`` and the max |probs difference| from its peer
        (``max_abs_diff``).
    """
    from reclnet.runtime.backends.onnxruntime.loader import load

    config = RecLNetConfig()
    files = paper_step_onnx()
    grid, repeat = (QUICK_TRACKS, 3) if quick else (TRACKS, 7)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    # The peer of each of our files: OpenVINO on the same fp32 file, and OpenVINO's own
    # INT8 (NNCF weights from the same fp32 file) for our INT8 file.
    peers: dict[str, Any] = {"fp32": files["fp32"]}
    no_int8 = "no INT8 step model was exported"
    if "int8" in files:
        try:
            peers["int8"] = _openvino_int8(files["fp32"])
        except ImportError as exc:
            peers["int8"] = f"needs {exc.name}, not installed (the bench extra)"
    runners = {prec: load(path) for prec, path in files.items()}
    try:
        for n in grid:
            feeds = _features(config, n, rng)
            modality_feeds = {k: feeds[k] for k in config.modalities}
            for prec in ("fp32", "int8"):
                case, peer_name = f"step N={n} {prec}", f"{PEER} {prec}"
                if prec not in runners:
                    rows.append(_skipped(case, f"onnxruntime {prec}", n, no_int8))
                    continue
                ours = partial(runners[prec].step, modality_feeds, feeds["state"])
                fns = {"ours": ours}
                peer = peers[prec]
                if isinstance(peer, str) and prec == "int8":
                    rows.append(_skipped(case, peer_name, n, peer))
                else:
                    try:
                        fns["peer"] = partial(_OpenVino(peer, feeds), feeds)
                    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own types
                        rows.append(_skipped(case, peer_name, n, f"OpenVINO cannot run it: {exc}"))
                if prec == "int8" and not quick:
                    # OpenVINO on our INT8 file itself (MatMulInteger), for the record.
                    try:
                        fns["peer_file"] = partial(_OpenVino(files["int8"], feeds), feeds)
                    except Exception as exc:  # noqa: BLE001
                        rows.append(
                            _skipped(case, f"{PEER} on step.int8.onnx", n, f"cannot run: {exc}")
                        )
                runs = _interleaved(fns, repeat)
                diff = None
                if "peer" in fns:
                    diff = float(np.abs(ours()[0] - fns["peer"]()).max())
                    rows.append(_row(case, peer_name, n, runs["peer"], None, None))
                if "peer_file" in fns:
                    rows.append(
                        _row(case, f"{PEER} on step.int8.onnx", n, runs["peer_file"], None, None)
                    )
                rows.append(
                    _row(
                        case,
                        f"onnxruntime {prec}",
                        n,
                        runs["ours"],
                        peer_name if "peer" in fns else None,
                        runs.get("peer"),
                        max_abs_diff=diff,
                    )
                )
        reason = _gpu_reason()
        for n in grid:
            if reason is not None:
                rows.append(_skipped(f"step N={n} fp16", "tensorrt fp16", n, reason))
                continue
            with load(files["fp32"], providers=("tensorrt",), fp16=True) as trt:
                feeds = _features(config, n, rng)
                modality_feeds = {k: feeds[k] for k in config.modalities}

                def trt_step(t=trt, s=modality_feeds, f=feeds) -> np.ndarray:
                    # Fetch the state too: without it a device backend returns before it is done.
                    return t.fetch_state(t.step(s, f["state"])[1])

                runs = _interleaved({"trt": trt_step}, repeat)
                rows.append(_row(f"step N={n} fp16", "tensorrt fp16", n, runs["trt"], None, None))
    finally:
        for runner in runners.values():
            runner.close()
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        figure = row.get("skipped") or (
            f"{row['median']:9.3f} ms  [{row['min']:.3f} .. {row['max']:.3f}]"
            + (
                f"  {row['ratio_vs_baseline']:.2f}x vs {row['baseline']}"
                if row["ratio_vs_baseline"]
                else ""
            )
        )
        print(f"{row['case']:<22} {row['impl']:<20} {figure}")
