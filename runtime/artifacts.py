"""Reading exported artifacts: the JSON sidecar beside every model file, verified by sha256.

An exported model directory holds ``step.onnx`` + ``step.json``, optionally
``step.int8.onnx``, ``sequence.onnx``, ``features_rgb.onnx``, ``features_flow.onnx``,
TensorRT ``*.engine`` files, each with a sidecar ``<name>.json`` (the file name
with its last suffix replaced by ``.json``). The sidecar is written by
:mod:`reclnet.export.sidecar`; this module is the only reader. It needs only
numpy and the standard library so that every runtime can use it.

A loader refuses an artifact whose bytes do not hash to the sidecar's sha256
(corrupt or replaced file), a sidecar that describes another file (copied from
another model) and a sidecar of an unknown format.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig, RecLNetConfig

__all__ = [
    "FORMAT",
    "KINDS",
    "Artifact",
    "ArtifactError",
    "check_same_model",
    "TensorSpec",
    "file_sha256",
    "load_artifact",
    "sidecar_path",
]

FORMAT = "reclnet-artifact/1"
KINDS = ("step", "step_pool", "sequence", "features")
_HASH_CHUNK = 1 << 20


class ArtifactError(ValueError):
    """An artifact or its sidecar is missing, corrupt, foreign or inconsistent."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (ints, or names for dynamic axes), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype of the tensor."""
        return np.dtype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        shape = tuple(d if isinstance(d, str) else int(d) for d in data["shape"])
        np.dtype(data["dtype"])  # raises TypeError on an unknown dtype name
        return cls(str(data["name"]), shape, str(data["dtype"]))


@dataclass(frozen=True)
class Artifact:
    """An exported model file and what its sidecar says about it.

    Attributes
    ----------
    path : Path
        The model file (``.onnx`` or ``.engine``).
    sidecar : Path
        Its JSON sidecar.
    kind : str
        ``"step"``, ``"step_pool"``, ``"sequence"`` or ``"features"``.
    format : str
        ``"onnx"`` or ``"tensorrt"``.
    config : RecLNetConfig or None
        The model configuration (None for feature networks).
    postprocess : PostprocessConfig
        Post-processing defaults the model was trained / validated with.
    inputs, outputs : tuple[TensorSpec, ...]
        Graph I/O in graph order.
    sha256 : str
        Hex digest of the model file, verified at load.
    metadata : dict
        The whole sidecar (opset, preprocessing, tool versions, source checkpoint, ...).
    """

    path: Path
    sidecar: Path
    kind: str
    format: str
    config: RecLNetConfig | None
    postprocess: PostprocessConfig
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str
    metadata: dict[str, Any] = field(repr=False)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def model_id(self) -> str:
        """Identifier of the trained weights this artifact was exported from.

        Artifacts exported from one checkpoint share it (see :func:`check_same_model`).
        """
        return str(self.metadata.get("model_id", ""))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.metadata.get("preprocessing", {}))

    def input(self, name: str) -> TensorSpec:
        """The input spec called ``name`` (KeyError naming the inputs otherwise)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.path.name} has no input {name!r}; inputs: {self.input_names}")


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the sidecar of a model file lives: ``step.onnx`` -> ``step.json``."""
    path = Path(path)
    return path.with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _require(data: dict[str, Any], key: str, where: Path) -> Any:
    if key not in data:
        raise ArtifactError(f"{where}: sidecar lacks the required key {key!r}")
    return data[key]


def load_artifact(
    path: str | os.PathLike, *, kind: str | None = None, verify: bool = True
) -> Artifact:
    """Load and verify the sidecar of an exported model file.

    Parameters
    ----------
    path : path-like
        The model file (``step.onnx``, ``step.engine``, ...) or its ``.json`` sidecar.
    kind : str, optional
        Expected kind (``"step"``, ``"sequence"``, ``"features"``, ...); another kind
        is an error.
    verify : bool
        Check the file's sha256 against the sidecar (default; keep it on).

    Returns
    -------
    Artifact

    Raises
    ------
    ArtifactError
        Missing file or sidecar, unreadable sidecar, a sidecar describing
        another file, a hash mismatch (corrupt or replaced model), an
        unexpected kind or an invalid model configuration. The message names
        the file and the problem.
    """
    path = Path(path)
    if path.suffix == ".json":
        side = path
        try:
            target = json.loads(side.read_text()).get("artifact")
        except (OSError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"{side}: cannot read sidecar: {exc}") from exc
        if not isinstance(target, str):
            raise ArtifactError(f"{side}: sidecar does not name its artifact file")
        path = side.parent / target
    else:
        side = sidecar_path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: model file not found")
    if not side.is_file():
        raise ArtifactError(f"{path}: sidecar {side.name} not found beside it")
    try:
        data = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{side}: sidecar is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{side}: sidecar must be a JSON object")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ArtifactError(f"{side}: unknown sidecar format {fmt!r} (expected {FORMAT!r})")
    named = _require(data, "artifact", side)
    if named != path.name:
        raise ArtifactError(
            f"{side}: sidecar describes {named!r}, not {path.name!r} (a sidecar from another model?)"
        )
    art_kind = _require(data, "kind", side)
    if art_kind not in KINDS:
        raise ArtifactError(f"{side}: unknown artifact kind {art_kind!r}; known: {KINDS}")
    if kind is not None and art_kind != kind:
        raise ArtifactError(f"{path}: is a {art_kind!r} artifact, expected {kind!r}")
    expected = str(_require(data, "sha256", side))
    if verify:
        actual = file_sha256(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: sha256 mismatch: file hashes to {actual[:16]}..., sidecar {side.name} "
                f"says {expected[:16]}... (corrupt or replaced model file, or a foreign sidecar)"
            )
    try:
        config = (
            RecLNetConfig.from_dict(data["model_config"])
            if data.get("model_config") is not None
            else None
        )
        postprocess = PostprocessConfig.from_dict(data.get("postprocess") or {})
        inputs = tuple(TensorSpec.from_dict(t) for t in _require(data, "inputs", side))
        outputs = tuple(TensorSpec.from_dict(t) for t in _require(data, "outputs", side))
    except ArtifactError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{side}: invalid sidecar contents: {exc}") from exc
    if art_kind != "features" and config is None:
        raise ArtifactError(f"{side}: a {art_kind!r} artifact needs a model_config")
    return Artifact(
        path=path,
        sidecar=side,
        kind=art_kind,
        format=str(data.get("artifact_format", "onnx")),
        config=config,
        postprocess=postprocess,
        inputs=inputs,
        outputs=outputs,
        sha256=expected,
        metadata=data,
    )


def check_same_model(*artifacts: Artifact) -> str:
    """Check that artifacts were exported from the same trained weights.

    Returns
    -------
    str
        The shared ``model_id``.

    Raises
    ------
    ArtifactError
        When two artifacts carry different model ids.
    """
    ids = [(str(a.path), a.model_id) for a in artifacts]
    if len({model_id for _, model_id in ids}) > 1:
        raise ArtifactError(f"artifacts come from different models: {ids}")
    return ids[0][1] if ids else ""
