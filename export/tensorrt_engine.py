"""TensorRT engines: build one from an exported ONNX step model (an export step), on TensorRT 10 or 11.

``Builder`` -> ``create_network(flags)`` -> ``OnnxParser`` -> ``BuilderConfig``
(workspace pool limit, an optional timing cache, ONE optimization profile over
N, the number of live tracks) -> ``build_serialized_network``. Precision
follows the installed TensorRT (:func:`build_plan`):

* TensorRT 11 builds every network strongly typed and has no ``BuilderFlag.FP16``
  / ``BuilderFlag.INT8`` ("Migrating from TensorRT 10.x to 11.x", removed Python
  APIs): FP16 comes from an FP16 graph with FP32 I/O (converted here by
  :mod:`reclnet.export.onnx_fp16`), INT8 from explicit Q/DQ nodes.
* TensorRT 10 keeps the weak-typing flags (deprecated since 10.12) for an FP32
  graph, and builds a graph that carries its own precision (FP16 weights or
  Q/DQ) with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, like 11.

The engine file holds exactly the serialized engine (no header), so ``trtexec
--loadEngine`` and Polygraphy read it. Its sidecar records the TensorRT version
and the GPU (name, compute capability), which the runner checks. Engines are
named ``<onnx stem>.<precision>.engine`` (``step.fp16.engine``) so that their
sidecar (``step.fp16.json``) does not overwrite the ONNX model's ``step.json``.

``tensorrt`` itself is imported only by :mod:`reclnet.runtime.backends.tensorrt.loader`
(:func:`~reclnet.runtime.backends.tensorrt.loader.import_tensorrt`). Polygraphy's
loaders (``CreateConfig(fp16=...)``) set the same removed flags, so the few
builder calls are written here against the recorded API of
:mod:`reclnet.runtime.backends.tensorrt.api`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reclnet.runtime.artifacts import Artifact, file_sha256, load_artifact, sidecar_path

__all__ = ["EngineBuildError", "build_engine", "build_plan", "profile_shapes"]

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


def build_plan(major: int, precision: str, graph: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Network-creation flags and builder flags for a TensorRT major version and a graph.

    Parameters
    ----------
    major : int
        TensorRT major version (10 or 11).
    precision : str
        ``"fp32"``, ``"fp16"`` or ``"int8"``.
    graph : str
        What the ONNX graph holds (:func:`reclnet.export.onnx_fp16.graph_precision`):
        ``"fp32"``, ``"fp16"`` or ``"qdq"``.

    Returns
    -------
    network_flags : tuple of str
        ``NetworkDefinitionCreationFlag`` names.
    builder_flags : tuple of str
        ``BuilderFlag`` names.

    Raises
    ------
    ValueError
        A precision the graph cannot give on this version (named, with what to do).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and graph != "qdq":
        raise ValueError(
            "--int8 needs an explicitly quantized graph (QuantizeLinear/DequantizeLinear "
            "nodes); TensorRT does not take ONNX Runtime's dynamic quantization "
            "(MatMulInteger). Use --fp16, or a Q/DQ model."
        )
    if graph == "qdq" and precision != "int8":
        raise ValueError(f"a Q/DQ graph builds an int8 engine, not {precision}")
    if graph == "fp16" and precision != "fp16":
        raise ValueError(f"an FP16 graph builds an fp16 engine, not {precision}")
    if major >= 11:
        # Strongly typed always; STRONGLY_TYPED is deprecated and ignored in 11.0.
        if precision == "fp16" and graph != "fp16":
            raise ValueError("TensorRT 11 builds FP16 only from an FP16 graph (convert first)")
        return (), ()
    if major != 10:
        raise ValueError(f"TensorRT {major} is not supported (10 or 11)")
    if graph in ("fp16", "qdq"):
        return ("STRONGLY_TYPED",), ()
    return (), ("FP16",) if precision == "fp16" else ()


def _gpu(device: int) -> dict[str, object] | None:
    """The build GPU for the sidecar; None (recorded as null) without cuda-python."""
    try:
        from reclnet.runtime.backends.tensorrt.cuda_python_memory import gpu_identity

        return gpu_identity(device)
    except (ImportError, RuntimeError):
        return None


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
    device: int = 0,
    trt: Any = None,
) -> Path:
    """Build and serialize a TensorRT engine for an exported step model; write its sidecar.

    Parameters
    ----------
    onnx_path : path-like
        Exported ``step.onnx`` (its sidecar is verified first); FP32, or already
        FP16 / Q/DQ.
    engine_path : path-like, optional
        Destination; default ``<onnx stem>.<precision>.engine`` beside the ONNX file.
    precision : str
        ``"fp32"``, ``"fp16"`` or ``"int8"`` (a Q/DQ graph). On TensorRT 11 an FP32
        graph asked for ``"fp16"`` is first converted to an FP16 graph with FP32
        I/O (``<stem>.fp16.onnx`` beside the engine).
    min_tracks, opt_tracks, max_tracks : int
        The optimization profile over N.
    timing_cache : path-like, optional
        Read when it exists, written back after the build.
    workspace_mb : int
        Builder workspace pool limit in MiB.
    device : int
        CUDA device whose name and compute capability the sidecar records.
    trt : module, optional
        The ``tensorrt`` module; imported when None.

    Returns
    -------
    Path
        The engine file; its sidecar is ``<engine>.json`` minus ``.engine``.

    Raises
    ------
    EngineBuildError
        Parser errors (listed), a rejected timing cache or a failed build.
    ValueError
        Bad precision, profile or model.
    """
    from reclnet.export.onnx_fp16 import convert_to_fp16, graph_precision
    from reclnet.runtime.backends.tensorrt.api import tensorrt_major

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    artifact = load_artifact(onnx_path)
    if artifact.kind != "step":
        raise ValueError(f"{onnx_path}: engines are built for step models, not {artifact.kind!r}")
    shapes = profile_shapes(artifact, min_tracks, opt_tracks, max_tracks)
    if engine_path is None:
        engine_path = onnx_path.with_name(f"{onnx_path.stem}.{precision}.engine")
    engine_path = Path(engine_path)
    graph = graph_precision(onnx_path)
    if precision == "int8" and graph != "qdq":
        build_plan(10, precision, graph)  # raises the explanation, before importing TensorRT
    if trt is None:
        from reclnet.runtime.backends.tensorrt.loader import import_tensorrt

        trt = import_tensorrt()
    major = tensorrt_major(trt)
    parse_path = onnx_path
    if major >= 11 and precision == "fp16" and graph == "fp32":
        parse_path = convert_to_fp16(onnx_path, engine_path.with_suffix(".fp16.onnx"))
        graph = "fp16"
    try:
        network_flags, builder_flags = build_plan(major, precision, graph)
    except ValueError as exc:
        raise ValueError(f"{onnx_path}: {exc}") from exc

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(parse_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"{parse_path}: TensorRT ONNX parser failed: {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for name in builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    if config.add_optimization_profile(profile) < 0:  # documented: -1 for an invalid profile
        raise EngineBuildError(f"{onnx_path}: TensorRT rejected the optimization profile {shapes}")
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.exists() else b""
        cache = config.create_timing_cache(blob)
        # set_timing_cache returns False when the cache does not fit this TensorRT / GPU.
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise EngineBuildError(
                f"{cache_path}: TensorRT rejected the timing cache (another TensorRT "
                "version or GPU?); delete it to start a new one"
            )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build an engine (see its log)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    # The serialized engine as is: trtexec and Polygraphy load the file directly.
    engine_path.write_bytes(bytes(memoryview(serialized)))
    if cache_path is not None:
        cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    version = str(trt.__version__)
    side = dict(artifact.metadata)
    side.update(
        {
            "artifact": engine_path.name,
            "artifact_format": "tensorrt",
            "sha256": file_sha256(engine_path),
            "size_bytes": engine_path.stat().st_size,
            "tensorrt": {
                "version": version,
                "gpu": _gpu(device),
                "precision": precision,
                "strongly_typed": major >= 11 or "STRONGLY_TYPED" in network_flags,
                "builder_flags": list(builder_flags),
                "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
                "max_tracks": max_tracks,
                "workspace_mb": workspace_mb,
                "timing_cache": str(cache_path) if cache_path is not None else None,
                "onnx": onnx_path.name,
                "onnx_sha256": artifact.sha256,
                "parsed": parse_path.name,
            },
        }
    )
    side["tool_versions"] = {**side.get("tool_versions", {}), "tensorrt": version}
    sidecar_path(engine_path).write_text(json.dumps(side, indent=2) + "\n")
    return engine_path
