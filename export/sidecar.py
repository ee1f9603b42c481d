"""Writing the JSON sidecar beside an exported artifact (read back by reclnet.runtime.artifacts).

The sidecar carries everything a runtime needs that is not in the graph
itself, so nothing is re-declared by hand downstream: the model configuration,
the graph's inputs and outputs (read from the ONNX file, so the sidecar cannot
disagree with it), opset, preprocessing constants, post-processing defaults,
the artifact's sha256, the source checkpoint and the tool versions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from importlib import metadata as _md
from pathlib import Path
from typing import Any

from reclnet.config import PostprocessConfig, RecLNetConfig
from reclnet.runtime.artifacts import (
    FORMAT,
    SIDECAR_KEYS,
    Artifact,
    TensorSpec,
    file_sha256,
    sidecar_path,
)

__all__ = ["onnx_io", "tool_versions", "weights_id", "write_derived_sidecar", "write_sidecar"]

_ONNX_DTYPES = {
    1: "float32",
    6: "int32",
    7: "int64",
    10: "float16",
    3: "int8",
    2: "uint8",
    9: "bool",
}


def tool_versions() -> dict[str, str]:
    """Versions of the packages that took part in the export (absent ones omitted)."""
    out = {"python": platform.python_version()}
    for dist in (
        "reclnet",
        "torch",
        "torchvision",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "onnxruntime-gpu",
        "tensorrt",
        "numpy",
    ):
        try:
            out[dist] = _md.version(dist)
        except _md.PackageNotFoundError:
            pass
    return out


def weights_id(state_dict: dict[str, Any]) -> str:
    """A sha256 over a model's parameter names, shapes and bytes: its identity.

    Every artifact exported from the same weights carries the same id, so a
    runtime can refuse to mix a step model with features of another model.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def onnx_io(path: str | os.PathLike) -> tuple[list[TensorSpec], list[TensorSpec], int]:
    """Inputs, outputs and default-domain opset of an ONNX file, as the graph declares them."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def spec(value: Any) -> TensorSpec:
        ttype = value.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in ttype.shape.dim)
        return TensorSpec(value.name, shape, _ONNX_DTYPES[ttype.elem_type])

    initializers = {i.name for i in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [spec(v) for v in model.graph.output]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return inputs, outputs, int(opset)


def write_sidecar(
    artifact: str | os.PathLike,
    *,
    kind: str,
    config: RecLNetConfig | None,
    postprocess: PostprocessConfig | None = None,
    inputs: list[TensorSpec] | None = None,
    outputs: list[TensorSpec] | None = None,
    opset: int | None = None,
    artifact_format: str = "onnx",
    model_id: str = "",
    source_checkpoint: dict[str, Any] | None = None,
    preprocessing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<name>.json`` beside ``artifact``.

    Parameters
    ----------
    artifact : path-like
        The finished model file; its sha256 is computed here, so write the
        sidecar last.
    kind : str
        ``"step"`` (also the INT8 and Triton copies) or ``"features"``.
    config : RecLNetConfig or None
        The model configuration (None for feature networks).
    inputs, outputs, opset : optional
        Read from the ONNX file when None (for ``artifact_format="onnx"``).
    model_id : str
        :func:`weights_id` of the source model.
    source_checkpoint : dict, optional
        ``{"path": ..., "sha256": ..., "epoch": ...}``.
    preprocessing, extra : dict, optional
        Preprocessing constants; other keys merged into the sidecar.

    Returns
    -------
    Path
        The sidecar path.

    Raises
    ------
    ValueError
        A key of ``extra`` that :data:`reclnet.runtime.artifacts.SIDECAR_KEYS` does not
        know (the reader would refuse the sidecar), or a NaN / infinite value.
    """
    unknown = sorted(set(extra or {}) - set(SIDECAR_KEYS))
    if unknown:
        raise ValueError(
            f"sidecar keys {unknown} are unknown to reclnet.runtime.artifacts.SIDECAR_KEYS "
            "(declare them there first: the reader refuses unknown keys)"
        )
    artifact = Path(artifact)
    if artifact_format == "onnx" and (inputs is None or outputs is None or opset is None):
        g_in, g_out, g_opset = onnx_io(artifact)
        inputs = g_in if inputs is None else inputs
        outputs = g_out if outputs is None else outputs
        opset = g_opset if opset is None else opset
    data: dict[str, Any] = {
        "format": FORMAT,
        "artifact": artifact.name,
        "artifact_format": artifact_format,
        "kind": kind,
        "sha256": file_sha256(artifact),
        "size_bytes": artifact.stat().st_size,
        "model_id": model_id,
        "model_config": config.to_dict() if config is not None else None,
        "postprocess": (postprocess or PostprocessConfig()).to_dict(),
        "inputs": [t.to_dict() for t in inputs or []],
        "outputs": [t.to_dict() for t in outputs or []],
        "opset": opset,
        "preprocessing": preprocessing or {},
        "source_checkpoint": source_checkpoint,
        "tool_versions": tool_versions(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    data.update(extra or {})
    side = sidecar_path(artifact)
    # allow_nan=False: NaN and Infinity are not JSON and the reader refuses them.
    side.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return side


def write_derived_sidecar(
    artifact: str | os.PathLike, source: Artifact, extra: dict[str, Any]
) -> Path:
    """The sidecar of a model made from an exported one (its INT8 copy, its Triton copy).

    Kind, configuration, post-processing, model id, source checkpoint,
    preprocessing and export variant are the source's; the graph I/O and
    sha256 are read from ``artifact`` itself.

    Parameters
    ----------
    artifact : path-like
        The derived model file (finished).
    source : Artifact
        The loaded artifact it was made from.
    extra : dict
        What the derivation adds (e.g. ``{"quantization": {...}}``).

    Returns
    -------
    Path
        The sidecar path.
    """
    meta = source.metadata
    return write_sidecar(
        artifact,
        kind=source.kind,
        config=source.config,
        postprocess=source.postprocess,
        model_id=source.model_id,
        source_checkpoint=meta.get("source_checkpoint"),
        preprocessing=meta.get("preprocessing"),
        extra={"variant": meta.get("variant"), **extra},
    )
