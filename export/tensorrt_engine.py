"""TensorRT engines: build one from an exported ONNX step model (an export step).

Written against the TensorRT 10 Python API: ``Builder`` -> ``create_network(0)``
(explicit batch is the only mode in TensorRT 10) -> ``OnnxParser`` ->
``BuilderConfig`` with a workspace pool limit, precision flags, an optional
timing cache and ONE optimization profile over N (the number of live tracks)
-> ``build_serialized_network``. The engine file holds exactly the serialized
engine (no header), so ``trtexec --loadEngine`` and Polygraphy read it. Engines
are named ``<onnx stem>.<precision>.engine`` (``step.fp16.engine``) so that their
sidecar (``step.fp16.json``) does not overwrite the ONNX model's ``step.json``.

``tensorrt`` itself is imported only by :mod:`reclnet.runtime.backends.tensorrt.loader`
(:func:`~reclnet.runtime.backends.tensorrt.loader.import_tensorrt`); the runner there
deserializes what this module builds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reclnet.runtime.artifacts import Artifact, file_sha256, load_artifact, sidecar_path

__all__ = ["EngineBuildError", "build_engine", "profile_shapes"]

PRECISIONS = ("fp32", "fp16", "int8")


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


def profile_shapes(
    artifact: Artifact, min_tracks: int, opt_tracks: int, max_tracks: int
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Min / opt / max shapes of every input, with its dynamic axis ``N`` set to the track counts.

    Parameters
    ----------
    artifact : Artifact
        A step (or pooled step) ONNX artifact; N must be its only dynamic axis.
    min_tracks, opt_tracks, max_tracks : int
        ``1 <= min <= opt <= max``.

    Returns
    -------
    dict
        ``{input name: (min shape, opt shape, max shape)}``.
    """
    if not 1 <= min_tracks <= opt_tracks <= max_tracks:
        raise ValueError(
            f"need 1 <= min_tracks <= opt_tracks <= max_tracks, got "
            f"{min_tracks}, {opt_tracks}, {max_tracks}"
        )
    out = {}
    for spec in artifact.inputs:
        dims = []
        for d in spec.shape:
            if isinstance(d, str) and d != "N":
                raise ValueError(
                    f"{artifact.path.name}: input {spec.name!r} has dynamic axis {d!r}; "
                    "an engine profile covers only N (export a step model)"
                )
            dims.append(d)
        shapes = tuple(
            tuple(n if d == "N" else int(d) for d in dims)
            for n in (min_tracks, opt_tracks, max_tracks)
        )
        out[spec.name] = shapes  # type: ignore[assignment]
    return out


def _has_qdq(onnx_path: Path) -> bool:
    """Whether the ONNX file contains Q/DQ nodes (explicit quantization), by a byte scan.

    Avoids importing onnx in the runtime; the op type names are stored verbatim.
    """
    data = onnx_path.read_bytes()
    return b"QuantizeLinear" in data and b"DequantizeLinear" in data


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike | None = None,
    *,
    precision: str = "fp16",
    min_tracks: int = 1,
    opt_tracks: int = 32,
    max_tracks: int = 256,
    timing_cache: str | os.PathLike | None = None,
    workspace_mb: int = 1024,
    trt: Any = None,
) -> Path:
    """Build and serialize a TensorRT engine for an exported step model; write its sidecar.

    Parameters
    ----------
    onnx_path : path-like
        Exported ``step.onnx`` (its sidecar is verified first).
    engine_path : path-like, optional
        Destination; default ``<onnx stem>.<precision>.engine`` beside the ONNX file.
    precision : str
        ``"fp32"``, ``"fp16"`` (FP16 kernels allowed) or ``"int8"`` (INT8 + FP16
        allowed; TensorRT 10 quantizes explicitly, so the graph must carry Q/DQ nodes).
    min_tracks, opt_tracks, max_tracks : int
        The optimization profile over N.
    timing_cache : path-like, optional
        Read when it exists, written back after the build.
    workspace_mb : int
        Builder workspace pool limit in MiB.
    trt : module, optional
        The ``tensorrt`` module (tests pass a fake one); imported when None.

    Returns
    -------
    Path
        The engine file; its sidecar is ``<engine>.json`` minus ``.engine``.

    Raises
    ------
    EngineBuildError
        Parser errors (listed) or a failed build.
    ValueError
        Bad precision, profile or model.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    artifact = load_artifact(onnx_path)
    if artifact.kind != "step":
        raise ValueError(f"{onnx_path}: engines are built for step models, not {artifact.kind!r}")
    shapes = profile_shapes(artifact, min_tracks, opt_tracks, max_tracks)
    if precision == "int8" and not _has_qdq(onnx_path):
        raise ValueError(
            f"{onnx_path}: --int8 needs an explicitly quantized graph (QuantizeLinear/"
            "DequantizeLinear nodes); TensorRT 10 does not take ONNX Runtime's dynamic "
            "quantization (MatMulInteger). Use --fp16, or a Q/DQ model."
        )
    if engine_path is None:
        engine_path = onnx_path.with_name(f"{onnx_path.stem}.{precision}.engine")
    engine_path = Path(engine_path)
    if trt is None:
        from reclnet.runtime.backends.tensorrt.loader import import_tensorrt

        trt = import_tensorrt()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"{onnx_path}: TensorRT ONNX parser failed: {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build an engine (see its log)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    # The serialized engine as is: trtexec and Polygraphy load the file directly.
    engine_path.write_bytes(bytes(memoryview(serialized)))
    if cache_path is not None:
        cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    side = dict(artifact.metadata)
    side.update(
        {
            "artifact": engine_path.name,
            "artifact_format": "tensorrt",
            "sha256": file_sha256(engine_path),
            "size_bytes": engine_path.stat().st_size,
            "tensorrt": {
                "version": str(getattr(trt, "__version__", "unknown")),
                "precision": precision,
                "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
                "max_tracks": max_tracks,
                "workspace_mb": workspace_mb,
                "timing_cache": str(cache_path) if cache_path is not None else None,
                "onnx": onnx_path.name,
                "onnx_sha256": artifact.sha256,
            },
        }
    )
    side["tool_versions"] = {
        **side.get("tool_versions", {}),
        "tensorrt": str(getattr(trt, "__version__", "unknown")),
    }
    sidecar_path(engine_path).write_text(json.dumps(side, indent=2) + "\n")
    return engine_path
