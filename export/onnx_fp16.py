"""FP16 copy of an exported FP32 step graph with FP32 inputs and outputs (for strongly typed TensorRT).

TensorRT 11 builds every network strongly typed: precision comes from the
graph, not from a builder flag ("Migrating from TensorRT 10.x to 11.x":
``BuilderFlag.FP16`` removed; convert the model to FP16 with FP32 I/O, the
``keep_io_types=True`` of ModelOpt AutoCast). This module does that for the
step graph's operators (MatMul, Add, Mul, Sub, Sigmoid, Tanh, Softmax, Concat,
Slice, Gemm, Cast, Constant): FP32 initializers and Constant tensors become
FP16, every FP32 graph input gets a Cast to FP16, every FP32 output is produced
by a Cast back to FP32, and ``Cast(to=FLOAT)`` nodes inside become FP16. The
result is checked with ONNX's strict shape/type inference, so a type mismatch
fails here, not in the TensorRT parser.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["convert_to_fp16", "graph_precision"]

_FP32, _FP16 = TensorProto.FLOAT, TensorProto.FLOAT16


def graph_precision(onnx_path: str | os.PathLike) -> str:
    """``"qdq"`` (Q/DQ nodes), ``"fp16"`` (FP16 initializers) or ``"fp32"``."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} <= ops:
        return "qdq"
    if any(t.data_type == _FP16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def convert_to_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an FP16 version of ``src`` with FP32 graph inputs and outputs to ``dst``.

    Parameters
    ----------
    src : path-like
        An FP32 ONNX graph (the exported ``step.onnx``).
    dst : path-like
        Output path.

    Returns
    -------
    Path
        ``dst``.

    Raises
    ------
    ValueError
        A graph that already holds FP16 or Q/DQ nodes, or one that fails strict type inference.
    """
    model = onnx.load(str(src))
    g = model.graph
    if any(t.data_type == _FP16 for t in g.initializer):
        raise ValueError(f"{src}: the graph already holds FP16 initializers")
    for init in g.initializer:
        if init.data_type == _FP32:
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
            )
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == _FP32:
                attr.i = _FP16
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == _FP32:
                attr.t.CopyFrom(
                    numpy_helper.from_array(
                        numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name
                    )
                )
    rename: dict[str, str] = {}
    casts_in = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == _FP32:
            rename[inp.name] = f"{inp.name}__fp16"
            casts_in.append(
                helper.make_node(
                    "Cast", [inp.name], [rename[inp.name]], to=_FP16, name=f"{inp.name}__cast_fp16"
                )
            )
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    casts_out = []
    for out in g.output:
        if out.type.tensor_type.elem_type == _FP32:
            inner = f"{out.name}__fp16"
            for node in g.node:
                for i, name in enumerate(node.output):
                    if name == out.name:
                        node.output[i] = inner
                for i, name in enumerate(node.input):
                    if name == out.name:
                        node.input[i] = inner
            casts_out.append(
                helper.make_node(
                    "Cast", [inner], [out.name], to=_FP32, name=f"{out.name}__cast_fp32"
                )
            )
    nodes = [*casts_in, *g.node, *casts_out]
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale FP32 annotations; inference below recomputes them
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several of its own types
        raise ValueError(f"{src}: the FP16 conversion does not type-check: {exc}") from exc
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst
