"""INT8 for CPUs: ONNX Runtime dynamic quantization of the exported step model.

Three variants (``variant=``):

- ``"signed"``: every MatMul weight as signed INT8, full range;
- ``"reduce_range"``: the same with 7-bit weights (``reduce_range=True``), which
  avoids the saturation of the u8 x s8 -> s16 pair sums of AVX2 kernels
  without VNNI;
- ``"input_projections"``: only each modality's first MatMul (the input
  projection folded into layer 0, about 85% of the paper model's weight bytes)
  is quantized; the recurrent and classifier matrices stay float32 so that
  quantization error does not feed back through the recurrent state.

:data:`DEFAULT_VARIANT` is ``"reduce_range"``: every matrix in INT8 is 1.4-2x
faster than ``"input_projections"`` from N = 32 tracks on (the float32 recurrent
matrices are ~40% of the step at N = 1024), which is what keeps the INT8 step
ahead of OpenVINO's bf16 at large N on AMX CPUs (docs/benchmarks.md); the 7-bit
weights keep the u8 x s8 pair sums of AVX2 kernels (AMD EPYC, no VNNI) from
saturating, and its accuracy is within a hair of ``"input_projections"``
(docs/export.md: video-mAP@0.5 unchanged, @0.2 -0.06).

:func:`quantization_error` measures a variant against the float model on real
inputs (max probability difference and state error over streamed tracks).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.export.sidecar import write_derived_sidecar
from reclnet.runtime.artifacts import load_artifact

__all__ = [
    "DEFAULT_VARIANT",
    "VARIANTS",
    "input_projection_nodes",
    "quantization_error",
    "quantize_step",
]

VARIANTS = ("signed", "reduce_range", "input_projections")
#: What ``quantize_step`` and ``reclnet export --int8`` write (see the module docstring).
DEFAULT_VARIANT = "reduce_range"


def input_projection_nodes(model_path: str | os.PathLike) -> list[str]:
    """Names of the MatMul nodes that read a modality input directly (one per modality)."""
    import onnx

    model = onnx.load(str(model_path))
    modalities = {i.name for i in model.graph.input if i.name != "state"}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in modalities]


def quantize_step(
    src: str | os.PathLike, dst: str | os.PathLike, *, variant: str = DEFAULT_VARIANT
) -> Path:
    """Write a dynamically quantized INT8 copy of an exported step model, with its sidecar.

    Parameters
    ----------
    src : path-like
        Exported float32 ``step.onnx`` (its sidecar beside it is verified and copied).
    dst : path-like
        Destination, conventionally ``step.int8.onnx`` (sidecar ``step.int8.json``).
    variant : str
        One of :data:`VARIANTS`.

    Returns
    -------
    Path
        The quantized model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant not in VARIANTS:
        raise ValueError(f"unknown INT8 variant {variant!r}; choose one of {VARIANTS}")
    src, dst = Path(src), Path(dst)
    source = load_artifact(src)
    if source.kind != "step":
        raise ValueError(f"{src}: INT8 export takes a step model, got a {source.kind!r} artifact")
    nodes = input_projection_nodes(src) if variant == "input_projections" else None
    if nodes is not None and not nodes:
        raise ValueError(f"{src}: no input-projection MatMul found to quantize")
    options: dict[str, Any] = {
        "model_input": str(src),
        "model_output": str(dst),
        "op_types_to_quantize": ["MatMul"],
        "weight_type": QuantType.QInt8,
        "per_channel": False,
        "reduce_range": variant == "reduce_range",
        "nodes_to_quantize": nodes,
    }
    # The quantizer logs an advisory (run its shape-inference pre-processing first) on
    # the root logger; the exported graph is already shape-inferred by the exporter.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(**options)
    finally:
        root.setLevel(level)
    write_derived_sidecar(
        dst,
        source,
        {
            "quantization": {
                "method": "onnxruntime.quantization.quantize_dynamic",
                "variant": variant,
                "weight_type": "QInt8",
                "activation_type": "QUInt8 (dynamic, per tensor)",
                "reduce_range": variant == "reduce_range",
                "nodes": nodes,
                "float_model": src.name,
                "float_sha256": source.sha256,
            },
        },
    )
    return dst


def quantization_error(
    float_model: str | os.PathLike,
    int8_model: str | os.PathLike,
    tracks: list[dict[str, np.ndarray]],
) -> dict[str, float]:
    """Stream whole tracks through both models; compare probabilities and states.

    Parameters
    ----------
    float_model, int8_model : path-like
        Step models with the same I/O.
    tracks : list of dict
        Per track, ``{modality: float32 [T, D]}`` features; each track runs from a
        zero state, frame by frame, all tracks batched together while alive.

    Returns
    -------
    dict
        ``max_prob_diff`` (max over frames and classes of |p_int8 - p_fp32|),
        ``mean_prob_diff``, ``max_state_rel_err`` (max over frames of
        ||s_int8 - s_fp32|| / ||s_fp32||), ``argmax_agreement`` (fraction of frames
        whose top class agrees).
    """
    import onnxruntime as ort

    sessions = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        for p in (float_model, int8_model)
    ]
    names = [i.name for i in sessions[0].get_inputs() if i.name != "state"]
    s_size = int(sessions[0].get_inputs()[-1].shape[1])
    lengths = np.array([len(t[names[0]]) for t in tracks])
    states = [np.zeros((len(tracks), s_size), np.float32) for _ in sessions]
    max_diff, sum_diff, count, rel, agree = 0.0, 0.0, 0, 0.0, 0
    for t in range(int(lengths.max())):
        live = np.flatnonzero(lengths > t)
        feeds = {n: np.stack([tracks[i][n][t] for i in live]).astype(np.float32) for n in names}
        outs = [
            s.run(None, {**feeds, "state": st[live]})
            for s, st in zip(sessions, states, strict=True)
        ]
        (p32, s32), (p8, s8) = outs
        diff = np.abs(p8 - p32)
        max_diff = max(max_diff, float(diff.max()))
        sum_diff += float(diff.sum())
        count += diff.size
        agree += int((p8.argmax(1) == p32.argmax(1)).sum())
        if s_size:
            norm = np.linalg.norm(s32, axis=1) + 1e-12
            rel = max(rel, float((np.linalg.norm(s8 - s32, axis=1) / norm).max()))
        states[0][live], states[1][live] = s32, s8
    return {
        "max_prob_diff": max_diff,
        "mean_prob_diff": sum_diff / max(count, 1),
        "max_state_rel_err": rel,
        "argmax_agreement": agree / max(int(lengths.sum()), 1),
    }
