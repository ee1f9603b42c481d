"""CPU-side checks that an exported ONNX graph is something the TensorRT ONNX parser accepts.

The supported-operator list is kept in the repository
(``export/tensorrt_supported_ops.txt``, with the TensorRT version it comes
from); these checks run on machines without a GPU or TensorRT.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SUPPORTED_OPS_FILE", "graph_ops", "supported_ops", "tensorrt_problems"]

SUPPORTED_OPS_FILE = Path(__file__).with_name("tensorrt_supported_ops.txt")


def supported_ops() -> tuple[frozenset[str], str]:
    """The operator names of the kept list and the TensorRT version it documents."""
    names, version = set(), ""
    for line in SUPPORTED_OPS_FILE.read_text().splitlines():
        if m := re.match(r"#\s*tensorrt_version:\s*(\S+)", line):
            version = m.group(1)
        body = line.split("#", 1)[0].strip()
        if body:
            names.add(body)
    return frozenset(names), version


def graph_ops(path: str | os.PathLike) -> set[tuple[str, str]]:
    """(domain, op_type) of every node, subgraphs included."""
    import onnx

    model = onnx.load(str(path))
    out: set[tuple[str, str]] = set()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            out.add((node.domain or "", node.op_type))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return out


def tensorrt_problems(
    path: str | os.PathLike, *, dynamic_axes: Iterable[str] = ("N", "K", "H", "W")
) -> list[str]:
    """Everything in an ONNX graph that stands in the way of a TensorRT engine.

    Parameters
    ----------
    path : path-like
        The ONNX file.
    dynamic_axes : iterable of str
        Symbolic axis names allowed on graph inputs and outputs.

    Returns
    -------
    list[str]
        Human-readable problems (empty when the graph is fine): operators outside
        the supported list or from a non-default domain, dynamic axes other than
        ``dynamic_axes``, unnamed dynamic axes, opset outside the parser's range.
    """
    import onnx

    supported, _ = supported_ops()
    problems = []
    for domain, op in sorted(graph_ops(path)):
        if domain not in ("", "ai.onnx"):
            problems.append(f"operator {domain}::{op} is not in the default ONNX domain")
        elif op not in supported:
            problems.append(f"operator {op} is not supported by the TensorRT ONNX parser")
    model = onnx.load(str(path), load_external_data=False)
    allowed = set(dynamic_axes)
    for value in [*model.graph.input, *model.graph.output]:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param and dim.dim_param not in allowed:
                problems.append(f"{value.name} axis {i} is dynamic ({dim.dim_param!r})")
            elif not dim.dim_param and dim.dim_value <= 0:
                problems.append(f"{value.name} axis {i} has no fixed size and no name")
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not 9 <= opset.version <= 24:
            problems.append(f"opset {opset.version} outside TensorRT 10's range 9..24")
    return problems
