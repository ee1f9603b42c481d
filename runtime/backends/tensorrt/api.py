"""The TensorRT Python API surface reclnet uses, recorded per major version with its source.

No ``tensorrt`` import: this is data. CPU tests build their strict double of
``tensorrt`` from it (a name not recorded here raises ``AttributeError``), and
``reclnet gpu-check`` checks the installed wheel against it
(:func:`api_problems`), so the record and the real package cannot drift apart
unnoticed.

Sources (TensorRT documentation, docs.nvidia.com/deeplearning/tensorrt):

* TensorRT 10 Python API reference: ``Builder``, ``IBuilderConfig``,
  ``IOptimizationProfile``, ``ITimingCache``, ``OnnxParser``, ``Runtime``,
  ``ICudaEngine`` (I/O tensors by name: ``num_io_tensors``,
  ``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_dtype``,
  ``get_tensor_shape``, ``get_tensor_profile_shape``), ``IExecutionContext``
  (``set_input_shape`` / ``set_tensor_address`` return bool;
  ``execute_async_v3(stream_handle) -> bool``); ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
* "Migrating from TensorRT 10.x to 11.x", Python API reference: removed
  ``BuilderFlag.FP16`` (use strong typing / ModelOpt AutoCast), ``BuilderFlag.INT8``
  (explicit quantization with Q/DQ nodes), ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``,
  ``IBuilderConfig.int8_calibrator``; 11.0 Builder page: ``STRONGLY_TYPED`` is
  "deprecated ... always enabled ... retained for API compatibility but ignored".
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REMOVED", "SURFACE", "api_problems", "tensorrt_major"]

_COMMON: dict[str, frozenset[str]] = {
    "tensorrt": frozenset(
        {
            "__version__",
            "Logger",
            "Builder",
            "OnnxParser",
            "Runtime",
            "MemoryPoolType",
            "BuilderFlag",
            "NetworkDefinitionCreationFlag",
            "TensorIOMode",
            "DataType",
        }
    ),
    "Logger": frozenset({"WARNING", "ERROR", "INFO"}),
    "MemoryPoolType": frozenset({"WORKSPACE"}),
    "TensorIOMode": frozenset({"INPUT", "OUTPUT"}),
    "DataType": frozenset({"FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL"}),
    "NetworkDefinitionCreationFlag": frozenset({"STRONGLY_TYPED"}),
    "Builder": frozenset(
        {
            "create_network",
            "create_builder_config",
            "create_optimization_profile",
            "build_serialized_network",
        }
    ),
    "OnnxParser": frozenset({"parse_from_file", "num_errors", "get_error"}),
    "IBuilderConfig": frozenset(
        {
            "set_memory_pool_limit",
            "set_flag",
            "add_optimization_profile",
            "create_timing_cache",
            "set_timing_cache",
            "get_timing_cache",
        }
    ),
    "IOptimizationProfile": frozenset({"set_shape"}),
    "ITimingCache": frozenset({"serialize"}),
    "Runtime": frozenset({"deserialize_cuda_engine"}),
    "ICudaEngine": frozenset(
        {
            "num_io_tensors",
            "get_tensor_name",
            "get_tensor_mode",
            "get_tensor_dtype",
            "get_tensor_shape",
            "get_tensor_profile_shape",
            "num_optimization_profiles",
            "create_execution_context",
        }
    ),
    "IExecutionContext": frozenset({"set_input_shape", "set_tensor_address", "execute_async_v3"}),
}

#: Per major version: class -> the names reclnet may use.
SURFACE: dict[int, dict[str, frozenset[str]]] = {
    10: {**_COMMON, "BuilderFlag": frozenset({"FP16", "INT8", "TF32"})},
    # TensorRT 11 removed the weak-typing precision flags; TF32 stays.
    11: {**_COMMON, "BuilderFlag": frozenset({"TF32"})},
}

#: Names removed in a major version (calling them there is the defect this guards).
REMOVED: dict[int, dict[str, frozenset[str]]] = {
    11: {"BuilderFlag": frozenset({"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"})},
}


def tensorrt_major(trt: Any) -> int:
    """Major version of a ``tensorrt`` module from its ``__version__`` (``"10.13.0.35"`` -> 10).

    Raises
    ------
    ValueError
        No parsable version, or a major version reclnet does not support (only 10 and 11).
    """
    version = str(getattr(trt, "__version__", ""))
    match = re.match(r"(\d+)\.", version)
    if match is None:
        raise ValueError(f"cannot tell the TensorRT version from __version__={version!r}")
    major = int(match.group(1))
    if major not in SURFACE:
        raise ValueError(
            f"TensorRT {version} is not supported (reclnet supports TensorRT {sorted(SURFACE)})"
        )
    return major


# Where each recorded class lives on the real module (instances are reached only on a GPU).
_MODULE_CLASSES = {
    "Logger",
    "Builder",
    "OnnxParser",
    "Runtime",
    "MemoryPoolType",
    "BuilderFlag",
    "NetworkDefinitionCreationFlag",
    "TensorIOMode",
    "DataType",
    "IBuilderConfig",
    "IOptimizationProfile",
    "ITimingCache",
    "ICudaEngine",
    "IExecutionContext",
}


def api_problems(trt: Any) -> list[str]:
    """Recorded names missing from a real ``tensorrt`` module, and removed names still used.

    Parameters
    ----------
    trt : module
        The installed ``tensorrt``.

    Returns
    -------
    list of str
        One line per problem; empty when the record matches the package.
    """
    major = tensorrt_major(trt)
    problems = []
    for owner, names in SURFACE[major].items():
        obj = trt if owner == "tensorrt" else getattr(trt, owner, None)
        if obj is None:
            problems.append(f"tensorrt.{owner} is missing (TensorRT {trt.__version__})")
            continue
        for name in sorted(names):
            if not hasattr(obj, name):
                problems.append(f"tensorrt.{owner}.{name} is missing (TensorRT {trt.__version__})")
    for owner, names in REMOVED.get(major, {}).items():
        obj = getattr(trt, owner, None)
        for name in sorted(names):
            if obj is not None and hasattr(obj, name):
                problems.append(f"tensorrt.{owner}.{name} is recorded as removed but present")
    return problems
