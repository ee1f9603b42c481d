"""CPU-side checks that an exported ONNX graph is something the TensorRT ONNX parser accepts.

The supported-operator list is kept in the repository
(``export/tensorrt_supported_ops.txt``, with the TensorRT version it comes
from) and ships inside the package; these checks run on machines without a GPU
or TensorRT. ``python -m reclnet.export.tensorrt_check [--list] [MODEL.onnx ...]``
prints the list or each model's problems (exit status 1 when any model has one).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SUPPORTED_OPS_FILE", "graph_ops", "supported_ops", "tensorrt_problems", "main"]

SUPPORTED_OPS_FILE = Path(__file__).with_name("tensorrt_supported_ops.txt")


def supported_ops() -> tuple[frozenset[str], str]:
    """The operator names of the kept list and the TensorRT version it documents.

    Returns
    -------
    names : frozenset of str
        ONNX operator types the TensorRT ONNX parser accepts.
    version : str
        The TensorRT version the list was taken from (``""`` when the file names none).

    Raises
    ------
    FileNotFoundError
        The list is missing: the package was installed without its data files.
    """
    if not SUPPORTED_OPS_FILE.is_file():
        raise FileNotFoundError(
            f"{SUPPORTED_OPS_FILE} is missing: this reclnet installation lacks its package "
            "data (reinstall it from a wheel built with `python -m build`)"
        )
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


def main(argv: list[str] | None = None) -> int:
    """``python -m reclnet.export.tensorrt_check``: 0 when every model is fine, 1 otherwise."""
    ap = argparse.ArgumentParser(
        prog="python -m reclnet.export.tensorrt_check",
        description="Check ONNX graphs against the TensorRT ONNX parser's operator list.",
    )
    ap.add_argument("models", nargs="*", type=Path, help="ONNX files to check")
    ap.add_argument("--list", action="store_true", help="print the supported operators")
    ap.add_argument(
        "--dynamic-axes",
        default="N,K,H,W",
        help="symbolic axis names allowed on inputs/outputs (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    ops, version = supported_ops()
    if args.list or not args.models:
        print(f"# {len(ops)} operators of the TensorRT {version or '?'} ONNX parser")
        print("\n".join(sorted(ops)))
    status = 0
    for model in args.models:
        problems = tensorrt_problems(
            model, dynamic_axes=[a for a in args.dynamic_axes.split(",") if a]
        )
        print(f"{model}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        for problem in problems:
            print(f"  {problem}")
        status = status or int(bool(problems))
    return status


if __name__ == "__main__":
    sys.exit(main())
