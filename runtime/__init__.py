"""reclnet.runtime: online scoring, post-processing and evaluation.

Needs only numpy (and onnxruntime for the ONNX backend); torch, tensorrt and
CUDA bindings are imported only by the backend that needs them. The public
names below are imported on first use, so ``import reclnet.runtime`` stays
light and never pulls in an optional dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule of reclnet.runtime that defines it.
# Each part adds its own line here.
_EXPORTS: dict[str, str] = {
    "OnlineScorer": "scorer",
    "FrameResult": "scorer",
    "Event": "scorer",
    "get_include": "postproc",
    "causal_median": "postproc",
    "SegmentBank": "postproc",
    "flow_image": "camera.flow",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reclnet.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"reclnet.runtime.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
