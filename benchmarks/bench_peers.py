"""The step model on peer runtimes: OpenVINO's CPU runtime vs ours (ONNX Runtime) on one file.

Both run the same exported ``step.onnx`` of the paper-sized RecLNet, side by side
in this process at each number of live tracks N. OpenVINO gets its best case: a
model compiled per N with static shapes and the latency hint, and for INT8 its own
path (NNCF INT8 weight compression of the same fp32 file) next to our INT8 file,
because OpenVINO runs ONNX Runtime's MatMulInteger graph tens of times slower.

Every OpenVINO row records the precision OpenVINO actually ran, read back from the
compiled model (``INFERENCE_PRECISION_HINT``): on CPUs with bf16 matmul instructions
(AVX-512 BF16, AMX) OpenVINO runs fp32 models in bf16 by default, so the fp32 peer is
compiled with the hint set to f32 explicitly, and a second peer with the hint bf16
is measured where OpenVINO reports the BF16 capability (OpenVINO's default there).
For the INT8 peer, OpenVINO keeps its default (its fastest) compute precision, recorded
as ``compute_precision``. TensorRT FP16 (through ONNX Runtime's TensorRT execution provider) is measured
only when an NVIDIA GPU is present; otherwise its rows say why they are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.benchmarks.bench_floor import int8_floor_kind
from reclnet.benchmarks.rows import ONNXRUNTIME, OPENVINO, PRECISIONS, TENSORRT, row
from reclnet.benchmarks.timing import measure
from reclnet.config import RecLNetConfig
from reclnet.runtime.backends.openvino import loader as ov_loader
from reclnet.runtime.backends.openvino.loader import openvino_precision  # noqa: F401 - re-exported

#: Live tracks per step: the floor benchmark's grid and N = 1024 (issue 14 asks for it).
TRACKS = (1, 8, 32, 128, 256, 1024)
QUICK_TRACKS = (1, 8, 128)
#: Pause before each timed run (see :func:`_interleaved`).
_QUIET_S = 0.05
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


#: Our precision names -> OpenVINO's INFERENCE_PRECISION_HINT values.
OV_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def _OpenVino(  # noqa: N802 - the peers' compiled model under its old (class) name
    model: Any, feeds: dict[str, np.ndarray], precision: str | None = None
) -> ov_loader.CompiledStep:
    """OpenVINO CPU, compiled for static shapes at one N with the latency hint.

    Parameters
    ----------
    model : Path or openvino.Model
        An ONNX file, or a model already read (it is cloned, not changed).
    feeds : dict
        Example inputs: their shapes are compiled in.
    precision : str, optional
        ``"fp32"`` / ``"bf16"`` / ``"fp16"``: set ``INFERENCE_PRECISION_HINT`` to it; None
        keeps OpenVINO's default for this CPU.

    Returns
    -------
    CompiledStep
        The OpenVINO backend's compile (the project's one OpenVINO import and Core):
        called with ``feeds`` it returns ``probs``; ``inference_precision`` is the
        precision it runs in, read back (``rows.PRECISIONS``), ``hint`` the raw value.
    """
    return ov_loader.compile_model(
        model,
        shapes={name: list(a.shape) for name, a in feeds.items()},
        hint=None if precision is None else OV_HINTS[precision],
    )


def openvino_bf16_reason() -> str | None:
    """None when OpenVINO's CPU plugin reports the BF16 capability, else why not."""
    return ov_loader.bf16_reason()


def _openvino_int8(fp32: Path) -> Any:
    """OpenVINO's own INT8 path for a weight-bound model: NNCF data-free INT8 weight
    compression of the fp32 file (per-channel asymmetric; activations stay in the
    compute precision)."""
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)
    model = ov_loader.read_model(fp32)
    # NNCF draws a progress bar even at ERROR level: keep it out of the suite's output.
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def _interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, runs interleaved so that drift hits all alike.

    Each run starts after a pause of :data:`_QUIET_S`: OpenVINO's worker threads keep
    spinning for a while after an inference, and on two cores the runtime timed right
    after them would pay for it (measured: ONNX Runtime INT8 at N = 1024, 47 ms right
    after an OpenVINO call, 27 ms alone). A deployment runs one runtime per process.
    """
    numbers = {k: measure(fn, repeat=1).number for k, fn in fns.items()}
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            time.sleep(_QUIET_S)
            runs[k].append(measure(fn, repeat=1, number=numbers[k], warmup=0).median)
    return runs


def _stats(runs: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(runs) * 1e3
    return float(ms.min()), float(np.median(ms)), float(ms.max())


def _skipped(impl: str, precision: str, n: int | None, reason: str, **fields: Any) -> dict:
    return row(
        "peers",
        "step",
        impl,
        unit="ms",
        stats=None,
        precision=precision,
        n=n,
        skipped=reason,
        **fields,
    )


@dataclass(frozen=True)
class PeerSpec:
    """One OpenVINO configuration measured against one of our files.

    Attributes
    ----------
    key : str
        Name among the interleaved calls.
    ours : str
        Precision of our file it is measured against (``"fp32"``, ``"int8"``).
    hint : str or None
        ``INFERENCE_PRECISION_HINT`` asked for (our precision names); None: the default.
    variant : str
        What OpenVINO runs, for the row's ``variant``.
    baseline : bool
        Our row's baseline (one per our precision).
    """

    key: str
    ours: str
    hint: str | None
    variant: str
    baseline: bool


PEERS = (
    PeerSpec("ov_fp32", "fp32", "fp32", "step.onnx, hint f32", True),
    PeerSpec("ov_bf16", "fp32", "bf16", "step.onnx, hint bf16", False),
    PeerSpec("ov_int8", "int8", None, "NNCF INT8 weights of step.onnx", True),
    PeerSpec("ov_int8_file", "int8", None, "step.int8.onnx (MatMulInteger)", False),
)


def peer_row(spec: PeerSpec, ran: str | None, hint: str, n: int, runs: list[float]) -> dict:
    """The OpenVINO row of ``spec``, labelled with the precision it actually ran.

    Parameters
    ----------
    spec : PeerSpec
    ran : str or None
        ``_OpenVino.inference_precision`` (read back from the compiled model).
    hint : str
        The raw ``INFERENCE_PRECISION_HINT`` read back.
    n : int
        Live tracks.
    runs : list of float
        Seconds per call of each interleaved run.

    Returns
    -------
    dict
        For an fp32 file: ``precision`` is what ran (``spec.hint`` only when the hint
        cannot be read back); for an INT8 file or NNCF weights: ``"int8"`` with the
        compute precision in ``compute_precision``.
    """
    fields: dict[str, Any] = {
        "inference_precision_hint": hint,
        "requested_precision": spec.hint,
    }
    if spec.ours == "int8":
        precision = "int8"
        fields["compute_precision"] = ran
        label = f"{OPENVINO} int8 ({spec.variant}, {ran or 'unknown'} compute)"
        kind = "int8_all" if spec.variant.startswith("NNCF") else int8_floor_kind(_default())
    else:
        precision = ran or spec.hint or "fp32"
        label = f"{OPENVINO} {precision}"
        if spec.hint is not None and precision != spec.hint:
            label += f" (asked {spec.hint})"
        kind = "bf16_exported" if precision == "bf16" else "fp32_exported"
    return row(
        "peers",
        "step",
        OPENVINO,
        unit="ms",
        stats=_stats(runs),
        precision=precision if precision in PRECISIONS else None,
        variant=spec.variant,
        n=n,
        label=label,
        floor_kind=kind,
        repeat=len(runs),
        **fields,
    )


def _default() -> str:
    """The INT8 variant our step.int8.onnx was quantized with (the exporter's default)."""
    from reclnet.benchmarks.bench_floor import _int8_variant

    return _int8_variant()


def _gpu_reason() -> str | None:
    """None when an NVIDIA GPU is usable, else why not."""
    if not (Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()):
        return "no NVIDIA GPU on this machine"
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no TensorRT execution provider (install the ort-gpu extra)"
    return None


def _peer_models(files: dict[str, Path], quick: bool) -> dict[str, Any]:
    """What each of :data:`PEERS` compiles (a path or an NNCF model), or why it cannot."""
    try:
        ov_loader.require_openvino()  # only to say early that the bench extra is absent
    except ImportError as exc:
        why = f"needs {exc.name}, not installed (the bench extra)"
        return {spec.key: why for spec in PEERS}
    out: dict[str, Any] = {"ov_fp32": files["fp32"]}
    reason = openvino_bf16_reason()
    out["ov_bf16"] = files["fp32"] if reason is None else reason
    if "int8" not in files:
        out["ov_int8"] = out["ov_int8_file"] = "no INT8 step model was exported"
        return out
    try:
        out["ov_int8"] = _openvino_int8(files["fp32"])
    except ImportError as exc:
        out["ov_int8"] = f"needs {exc.name}, not installed (the bench extra)"
    out["ov_int8_file"] = "full run only" if quick else files["int8"]
    return out


def run(quick: bool = False) -> list[dict]:
    """ONNX Runtime vs OpenVINO (and TensorRT FP16 on a GPU) on the same step files.

    Parameters
    ----------
    quick : bool
        N in (1, 8, 128) and 3 interleaved runs instead of all of :data:`TRACKS` and 7.

    Returns
    -------
    list of dict
        Rows (``reclnet.benchmarks.rows``), ``case`` "step", per N: OpenVINO rows
        (impl ``openvino``, one per :data:`PEERS` entry, each with the precision it
        ran), ``onnxruntime`` rows (fp32 and int8) whose baseline is the OpenVINO row of
        the same precision (ratio > 1: ONNX Runtime is faster), with ``max_abs_diff``
        (max |probs difference| from that peer) and, for fp32, ``ratio_vs_openvino_bf16``;
        for int8 (the project's default), ``ratio_vs_openvino_default`` against OpenVINO's
        default precision for the fp32 model (``openvino_default_precision``), timed in
        the same interleaved runs;
        ``tensorrt`` fp16 rows (skipped without a GPU). Every row has ``floor_kind``.
    """
    from reclnet.runtime.backends.onnxruntime.loader import load

    config = RecLNetConfig()
    files = paper_step_onnx()
    grid, repeat = (QUICK_TRACKS, 3) if quick else (TRACKS, 7)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    models = _peer_models(files, quick)
    runners = {prec: load(path) for prec, path in files.items()}
    int8_variant = _default()
    for spec in PEERS:  # a peer that cannot run at all: one row, not one per N
        reason = models[spec.key]
        if isinstance(reason, str) and reason != "full run only":
            rows.append(
                _skipped(OPENVINO, spec.hint or spec.ours, None, reason, variant=spec.variant)
            )
    try:
        for n in grid:
            feeds = _features(config, n, rng)
            modality_feeds = {k: feeds[k] for k in config.modalities}
            # OpenVINO's default for an fp32 model (bf16 where the CPU has it, else fp32),
            # compiled in the fp32 group and timed again beside our INT8 default.
            ov_default: ov_loader.CompiledStep | None = None
            for prec in ("fp32", "int8"):
                variant = "step.onnx" if prec == "fp32" else f"step.int8.onnx, {int8_variant}"
                kind = "fp32_exported" if prec == "fp32" else int8_floor_kind(int8_variant)
                if prec not in runners:
                    rows.append(
                        _skipped(
                            ONNXRUNTIME, prec, n, "no INT8 step model was exported", variant=variant
                        )
                    )
                    continue
                ours = partial(runners[prec].step, modality_feeds, feeds["state"])
                fns: dict[str, Callable[[], object]] = {"ours": ours}
                compiled: dict[str, ov_loader.CompiledStep] = {}
                for spec in (s for s in PEERS if s.ours == prec):
                    model = models[spec.key]
                    if isinstance(model, str):  # skipped above
                        continue
                    try:
                        compiled[spec.key] = _OpenVino(model, feeds, spec.hint)
                    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own types
                        rows.append(
                            _skipped(
                                OPENVINO,
                                spec.hint or prec,
                                n,
                                f"OpenVINO cannot run it: {exc}",
                                variant=spec.variant,
                            )
                        )
                        continue
                    fns[spec.key] = partial(compiled[spec.key], feeds)
                if prec == "fp32":
                    ov_default = compiled.get("ov_bf16") or compiled.get("ov_fp32")
                elif ov_default is not None:
                    fns["ov_default"] = partial(ov_default, feeds)
                runs = _interleaved(fns, repeat)
                base, diff = None, None
                for spec in (s for s in PEERS if s.key in compiled):
                    ov = compiled[spec.key]
                    peer = peer_row(spec, ov.inference_precision, ov.hint, n, runs[spec.key])
                    rows.append(peer)
                    if spec.baseline:
                        base = peer
                        diff = float(np.abs(ours()[0] - fns[spec.key]()).max())
                extra: dict[str, Any] = {"max_abs_diff": diff}
                if "ov_bf16" in runs:
                    extra["ratio_vs_openvino_bf16"] = float(
                        np.median(runs["ov_bf16"]) / np.median(runs["ours"])
                    )
                if "ov_default" in runs and ov_default is not None:
                    # Our default (INT8) against what a user gets from OpenVINO by default.
                    extra["ratio_vs_openvino_default"] = float(
                        np.median(runs["ov_default"]) / np.median(runs["ours"])
                    )
                    extra["openvino_default_precision"] = ov_default.inference_precision
                rows.append(
                    row(
                        "peers",
                        "step",
                        ONNXRUNTIME,
                        unit="ms",
                        stats=_stats(runs["ours"]),
                        precision=prec,
                        variant=variant,
                        n=n,
                        baseline=base,
                        label=f"{ONNXRUNTIME} {prec}",
                        floor_kind=kind,
                        repeat=len(runs["ours"]),
                        **extra,
                    )
                )
        reason = _gpu_reason()
        for n in grid:
            if reason is not None:
                rows.append(_skipped(TENSORRT, "fp16", n, reason, floor_kind=None))
                continue
            with load(files["fp32"], providers=("tensorrt",), fp16=True) as trt:
                feeds = _features(config, n, rng)
                modality_feeds = {k: feeds[k] for k in config.modalities}

                def trt_step(t=trt, s=modality_feeds, f=feeds) -> np.ndarray:
                    # Fetch the state too: without it a device backend returns before it is done.
                    return t.fetch_state(t.step(s, f["state"])[1])

                runs = _interleaved({"trt": trt_step}, repeat)
                rows.append(
                    row(
                        "peers",
                        "step",
                        TENSORRT,
                        unit="ms",
                        stats=_stats(runs["trt"]),
                        precision="fp16",
                        n=n,
                        repeat=len(runs["trt"]),
                    )
                )
    finally:
        for runner in runners.values():
            runner.close()
    return rows


if __name__ == "__main__":
    import sys

    # --full: every N of TRACKS (1 .. 1024) and 7 runs; the quick grid otherwise.
    for r in run(quick="--full" not in sys.argv):
        figure = r.get("skipped") or (
            f"{r['median']:9.3f} ms  [{r['min']:.3f} .. {r['max']:.3f}]"
            + (
                f"  {r['ratio_vs_baseline']:.2f}x vs {r['baseline']['label']}"
                if r["ratio_vs_baseline"]
                else ""
            )
            + (
                f", {r['ratio_vs_openvino_default']:.2f}x vs openvino default "
                f"({r['openvino_default_precision']})"
                if r.get("ratio_vs_openvino_default")
                else ""
            )
        )
        n = "-" if r.get("n") is None else r["n"]
        print(f"N={n:<4} {r['label']:<48} {figure}")
