"""Reading exported artifacts: the JSON sidecar beside every model file, verified by sha256.

An exported model directory holds ``step.onnx`` + ``step.json``, optionally
``step.int8.onnx``, ``features_rgb.onnx``, ``features_flow.onnx``,
TensorRT ``*.engine`` files, each with a sidecar ``<name>.json`` (the file name
with its last suffix replaced by ``.json``). The sidecar is written by
:mod:`reclnet.export.sidecar`; this module is the only reader. It needs only
numpy and the standard library so that every runtime can use it.

A loader refuses an artifact whose bytes do not hash to the sidecar's sha256
(corrupt or replaced file), a sidecar that describes another file (copied from
another model) and a sidecar of an unknown format. The sidecar is untrusted
input and is validated whole at load (size, nesting, keys, exact types, ranges,
the step graph's inputs / outputs against the model configuration), so that a
bad file fails there with a message naming the file and the field, never at
the first frame with a MemoryError or a backend's shape error.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig, RecLNetConfig
from reclnet.jsonsafe import JSONLimitError, loads_bounded

__all__ = [
    "ARTIFACT_FORMATS",
    "DTYPES",
    "FORMAT",
    "KINDS",
    "PRECISIONS",
    "SIDECAR_KEYS",
    "Artifact",
    "ArtifactError",
    "TensorSpec",
    "check_same_model",
    "file_sha256",
    "load_artifact",
    "model_config_from_dict",
    "model_file",
    "sidecar_path",
    "step_graph_mismatch",
    "step_graph_problem",
]

FORMAT = "reclnet-artifact/1"
KINDS = ("step", "features")
#: Precision choices of a model file; ``"auto"`` takes the INT8 copy when it was exported.
PRECISIONS = ("auto", "fp32", "int8")
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
        """Read back :meth:`to_dict` output; TypeError / ValueError naming a bad field."""
        return _tensor_spec(data, "tensor")


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
        ``"step"`` or ``"features"``.
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


def model_file(model_dir: str | os.PathLike, stem: str, precision: str = "auto") -> Path:
    """The file of model ``stem`` (``"step"``, ``"features_rgb"``, ...) for ``precision``.

    Parameters
    ----------
    model_dir : path-like
        Exported model directory.
    stem : str
        File name without suffix.
    precision : str
        ``"fp32"`` (``<stem>.onnx``), ``"int8"`` (``<stem>.int8.onnx``) or ``"auto"``:
        the INT8 copy when present (the faster one in this project's benchmarks,
        docs/benchmarks.md), else the float file.

    Returns
    -------
    Path
        The path; it may not exist for ``"fp32"`` / ``"int8"`` (the caller reports it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    fp32 = Path(model_dir) / f"{stem}.onnx"
    int8 = Path(model_dir) / f"{stem}.int8.onnx"
    if precision == "int8" or (precision == "auto" and int8.is_file()):
        return int8
    return fp32


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


# ------------------------------------------------------------------ validation
#: Largest sidecar accepted (a real one is about 2 KiB).
MAX_SIDECAR_BYTES = 1 << 20
#: Deepest nesting of arrays / objects accepted in a sidecar (a real one nests 5 deep).
MAX_SIDECAR_DEPTH = 16
#: Largest batch (``tensorrt.max_tracks``) an engine sidecar may declare.
MAX_TRACKS = 1 << 20
#: Tensor dtypes an artifact may declare (those of the exporters' graphs).
DTYPES = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool")
_MAX_RANK = 8
_MAX_NAME = 256
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRITON_CONTROLS = ("START", "END")

#: Every top-level sidecar key and the JSON types its value may have (``None`` = null).
#: The writer (:mod:`reclnet.export.sidecar`) refuses any other key, so the two agree.
SIDECAR_KEYS: dict[str, tuple[type | None, ...]] = {
    "format": (str,),
    "artifact": (str,),
    "artifact_format": (str,),
    "kind": (str,),
    "sha256": (str,),
    "size_bytes": (int,),
    "model_id": (str,),
    "model_config": (dict, None),
    "postprocess": (dict,),
    "inputs": (list,),
    "outputs": (list,),
    "opset": (int, None),
    "preprocessing": (dict,),
    "source_checkpoint": (dict, None),
    "tool_versions": (dict,),
    "created_utc": (str,),
    # What an export variant or a derivation adds (INT8, Triton, TensorRT, feature nets);
    # a derived sidecar copies these from its source, where they may be absent (null).
    "variant": (dict, None),
    "quantization": (dict,),
    "triton": (dict,),
    "tensorrt": (dict,),
    "precision": (str, None),
    "backbone": (str, None),
    "box_head": (str, None),
    "frame_stage": (str, None),
    "frame_grid": (int, None),
    "weights": (str, None),
    "weights_file": (dict, None),
    "head": (str, None),
    "out_dim": (int, None),
    "seed": (int, None),
    "class_names": (list,),
}
_REQUIRED = ("format", "artifact", "kind", "sha256", "inputs", "outputs")
ARTIFACT_FORMATS = ("onnx", "tensorrt")


def _type_names(types: tuple[type | None, ...]) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", list: "an array", None: "null"}
    return " or ".join(names.get(t, str(t)) for t in types)


def _check_type(field_name: str, value: Any, types: tuple[type | None, ...]) -> None:
    """TypeError unless ``value`` has one of the JSON ``types`` (bool is not an integer)."""
    for t in types:
        if t is None and value is None:
            return
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if t not in (None, int) and isinstance(value, t):
            return
    raise TypeError(f"{field_name} must be {_type_names(types)}, got {value!r:.60}")


def _check_int(field_name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]`` (a JSON integer: not a bool, a float or a string)."""
    _check_type(field_name, value, (int,))
    if not lo <= value <= hi:
        raise ValueError(f"{field_name} must be in [{lo}, {hi}], got {value}")
    return value


def _owner_to_field(message: str, owner: str, where: str) -> str:
    """``"RecLNetConfig.memory_size must ..."`` as ``"model_config.memory_size must ..."``."""
    if message.startswith(owner + "."):
        return where + message[len(owner) :]
    if message.startswith(owner + ":"):
        return where + message[len(owner) :]
    return f"{where}: {message}"


def model_config_from_dict(data: Any, where: str = "model_config") -> RecLNetConfig:
    """A :class:`RecLNetConfig` from untrusted JSON-like data (:meth:`RecLNetConfig.from_dict`).

    Parameters
    ----------
    data : Any
        The ``model_config`` object of a sidecar or checkpoint.
    where : str
        Field name put before the message.

    Raises
    ------
    TypeError, ValueError
        Naming the field and the problem.
    """
    _check_type(where, data, (dict,))
    try:
        return RecLNetConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise type(exc)(_owner_to_field(str(exc), "RecLNetConfig", where)) from None


def _postprocess_from_dict(data: Any, where: str = "postprocess") -> PostprocessConfig:
    _check_type(where, data, (dict,))
    try:
        return PostprocessConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise type(exc)(_owner_to_field(str(exc), "PostprocessConfig", where)) from None


def _tensor_spec(data: Any, where: str) -> TensorSpec:
    _check_type(where, data, (dict,))
    keys = set(data)
    if keys != {"name", "shape", "dtype"}:
        raise ValueError(
            f"{where} must have exactly the keys name, shape, dtype "
            f"(unknown {sorted(keys - {'name', 'shape', 'dtype'})}, "
            f"missing {sorted({'name', 'shape', 'dtype'} - keys)})"
        )
    name = data["name"]
    _check_type(f"{where}.name", name, (str,))
    if not 1 <= len(name) <= _MAX_NAME:
        raise ValueError(f"{where}.name must be 1 to {_MAX_NAME} characters, got {name!r:.60}")
    shape = data["shape"]
    _check_type(f"{where}.shape", shape, (list,))
    if len(shape) > _MAX_RANK:
        raise ValueError(f"{where}.shape has rank {len(shape)} (at most {_MAX_RANK})")
    dims: list[int | str] = []
    for i, dim in enumerate(shape):
        _check_type(f"{where}.shape[{i}]", dim, (int, str))
        if isinstance(dim, str) and not 1 <= len(dim) <= 64:
            raise ValueError(
                f"{where}.shape[{i}]: a dynamic axis needs a name of 1 to 64 characters"
            )
        if isinstance(dim, int) and not 0 <= dim < 1 << 31:
            raise ValueError(f"{where}.shape[{i}] must be in [0, 2**31), got {dim}")
        dims.append(dim)
    dtype = data["dtype"]
    if dtype not in DTYPES:
        raise ValueError(f"{where}.dtype must be one of {DTYPES}, got {dtype!r:.60}")
    return TensorSpec(name, tuple(dims), dtype)


def _tensor_specs(data: Any, where: str) -> tuple[TensorSpec, ...]:
    _check_type(where, data, (list,))
    if len(data) > 64:
        raise ValueError(f"{where} lists {len(data)} tensors (at most 64)")
    specs = tuple(_tensor_spec(t, f"{where}[{i}]") for i, t in enumerate(data))
    names = [t.name for t in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{where}: duplicate name(s) {dupes}")
    return specs


def _check_matrix(spec: TensorSpec, width: int, what: str) -> str | None:
    """Problem of a ``float32 [N, width]`` graph tensor, None when it is one."""
    if spec.dtype != "float32":
        return f"{spec.name!r} is {spec.dtype}, {what} is float32"
    if len(spec.shape) != 2 or spec.shape[1] != width:
        return f"{spec.name!r} has shape {list(spec.shape)}, {what} is [N, {width}]"
    if isinstance(spec.shape[0], int) and spec.shape[0] < 1:
        return f"{spec.name!r} has shape {list(spec.shape)}: no rows"
    return None


def step_graph_problem(
    config: RecLNetConfig,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    *,
    controls: tuple[str, ...] = (),
) -> str | None:
    """How a step graph's inputs / outputs disagree with its model configuration.

    A step graph takes ``float32 [N, D]`` per modality (D = ``config.modalities[m]``)
    and ``state`` ``float32 [N, S]`` (S = ``config.state_size``), plus ``controls``
    (Triton's START / END), and returns ``probs`` ``float32 [N, C+1]`` and, when
    listed, ``state_out`` ``float32 [N, S]``.

    Parameters
    ----------
    config : RecLNetConfig
    inputs, outputs : tuple of TensorSpec
        As the sidecar (or the opened session) declares them.
    controls : tuple of str
        Extra inputs the graph must also have.

    Returns
    -------
    str or None
        The first disagreement, None when there is none.
    """
    need = [*config.modality_names, "state", *controls]
    names = [t.name for t in inputs]
    if sorted(names) != sorted(need):
        return f"inputs {names}, the model_config needs {need}"
    by_name = {t.name: t for t in inputs}
    for name, size in config.modalities.items():
        problem = _check_matrix(by_name[name], size, f"model_config.modalities[{name!r}]")
        if problem:
            return f"input {problem}"
    problem = _check_matrix(by_name["state"], config.state_size, "the state of model_config")
    if problem:
        return f"input {problem}"
    out = {t.name: t for t in outputs}
    if "probs" not in out or set(out) - {"probs", "state_out"}:
        return f"outputs {list(out)}, a step model has probs (and state_out)"
    problem = _check_matrix(out["probs"], config.num_classes, "num_actions + 1 of model_config")
    if problem is None and "state_out" in out:
        problem = _check_matrix(out["state_out"], config.state_size, "the state of model_config")
    return None if problem is None else f"output {problem}"


def _spec_problem(kind: str, graph: list[TensorSpec], declared: tuple[TensorSpec, ...]) -> str:
    g = {t.name: t for t in graph}
    d = {t.name: t for t in declared}
    if len(g) != len(graph) or set(g) != set(d):
        return f"graph {kind} {sorted(t.name for t in graph)}, sidecar declares {sorted(d)}"
    for name, spec in g.items():
        want = d[name]
        if spec.dtype != want.dtype:
            return f"{kind[:-1]} {name!r} is {spec.dtype} in the graph, {want.dtype} in the sidecar"
        concrete = [
            (a, b) for a, b in zip(spec.shape, want.shape, strict=False) if isinstance(a, int)
        ]
        if len(spec.shape) != len(want.shape) or any(a != b for a, b in concrete):
            return (
                f"{kind[:-1]} {name!r} has shape {list(spec.shape)} in the graph, "
                f"{list(want.shape)} in the sidecar"
            )
    return ""


def step_graph_mismatch(
    artifact: Artifact, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> str:
    """How a step graph, as a backend reads it, disagrees with the artifact's sidecar.

    The sidecar was checked against its model configuration at load; this checks the
    graph itself (names, dtypes, ranks, fixed sizes), so a forged or mismatched sidecar
    fails when a backend opens the model, not with the backend's shape error at the first
    frame. Each backend turns its own ports into :class:`TensorSpec` (a dimension it
    does not know as ``"?"``) and calls this.

    Parameters
    ----------
    artifact : Artifact
        A loaded step artifact.
    inputs, outputs : list of TensorSpec
        The graph's ports, as the backend reports them.

    Returns
    -------
    str
        The first disagreement; empty when there is none.
    """
    problem = _spec_problem("inputs", inputs, artifact.inputs) or _spec_problem(
        "outputs", outputs, artifact.outputs
    )
    if problem:
        return problem
    need = {*artifact.config.modalities, "state"}
    if {t.name for t in inputs} != need:
        return f"graph inputs {sorted(t.name for t in inputs)}, a step model needs {sorted(need)}"
    if {t.name for t in outputs} != {"probs", "state_out"}:
        return f"graph outputs {sorted(t.name for t in outputs)}, a step model has probs, state_out"

    def symbolic(specs: list[TensorSpec]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(t.name, tuple(d if isinstance(d, int) else "N" for d in t.shape), t.dtype)
            for t in specs
        )

    return step_graph_problem(artifact.config, symbolic(inputs), symbolic(outputs)) or ""


def _check_artifact_name(named: Any, side: Path) -> str:
    if not isinstance(named, str):
        raise ArtifactError(
            f"{side}: sidecar does not name its artifact file (artifact: {named!r:.60})"
        )
    if not named or named in (".", "..") or any(c in named for c in "/\\\0") or len(named) > 255:
        raise ArtifactError(
            f"{side}: artifact {named!r:.80} is not a plain file name beside the sidecar"
        )
    return named


def _read_sidecar(side: Path) -> dict[str, Any]:
    """The sidecar's JSON object, size and nesting bounded."""
    try:
        size = side.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise ArtifactError(
                f"{side}: sidecar has {size} bytes (at most {MAX_SIDECAR_BYTES}): not a sidecar"
            )
        raw = side.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{side}: cannot read sidecar: {exc.strerror or exc}") from exc
    try:
        data = loads_bounded(raw, max_depth=MAX_SIDECAR_DEPTH, max_bytes=MAX_SIDECAR_BYTES)
    except JSONLimitError as exc:
        raise ArtifactError(f"{side}: sidecar is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{side}: sidecar must be a JSON object, got {type(data).__name__}")
    return data


def _check_top_level(data: dict[str, Any], side: Path) -> None:
    for key in _REQUIRED:
        if key not in data:
            raise ArtifactError(f"{side}: sidecar lacks the required key {key!r}")
    unknown = sorted(k for k in data if k not in SIDECAR_KEYS)
    if unknown:
        raise ArtifactError(f"{side}: invalid sidecar contents: unknown key(s) {unknown}")
    for key, value in data.items():
        try:
            _check_type(key, value, SIDECAR_KEYS[key])
        except TypeError as exc:
            raise ArtifactError(f"{side}: invalid sidecar contents: {exc}") from None


def load_artifact(
    path: str | os.PathLike, *, kind: str | None = None, verify: bool = True
) -> Artifact:
    """Load and verify the sidecar of an exported model file.

    Everything is checked here, at load, so that a bad file fails with one message
    naming it instead of later, at the first frame: the JSON's size and nesting,
    every key and its type, the model configuration (exact types, sizes within
    :data:`reclnet.config.MAX_MODEL_SIZE`), the post-processing defaults (their ranges), the graph
    inputs / outputs of a step model against its configuration, the file's sha256.

    Parameters
    ----------
    path : path-like
        The model file (``step.onnx``, ``step.engine``, ...) or its ``.json`` sidecar.
    kind : str, optional
        Expected kind (``"step"`` or ``"features"``); another kind
        is an error.
    verify : bool
        Check the file's sha256 against the sidecar (default; keep it on).

    Returns
    -------
    Artifact

    Raises
    ------
    ArtifactError
        Missing file or sidecar, unreadable, oversized or too deeply nested sidecar,
        unknown keys or values of the wrong type or range, a sidecar describing
        another file, a hash mismatch (corrupt or replaced model), an unexpected
        kind, an invalid model configuration or a graph that does not match it.
        The message names the file and the problem.
    """
    path = Path(path)
    data: dict[str, Any] | None = None
    if path.suffix == ".json":
        side = path
        if not side.is_file():
            raise ArtifactError(f"{side}: sidecar not found")
        data = _read_sidecar(side)
        path = side.parent / _check_artifact_name(data.get("artifact"), side)
    else:
        side = sidecar_path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: model file not found")
    if not side.is_file():
        raise ArtifactError(f"{path}: sidecar {side.name} not found beside it")
    if data is None:
        data = _read_sidecar(side)
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ArtifactError(f"{side}: unknown sidecar format {fmt!r:.60} (expected {FORMAT!r})")
    _check_top_level(data, side)
    named = _check_artifact_name(data["artifact"], side)
    if named != path.name:
        raise ArtifactError(
            f"{side}: sidecar describes {named!r}, not {path.name!r} (a sidecar from another model?)"
        )
    art_kind = data["kind"]
    if art_kind not in KINDS:
        raise ArtifactError(f"{side}: unknown artifact kind {art_kind!r:.60}; known: {KINDS}")
    if kind is not None and art_kind != kind:
        raise ArtifactError(f"{path}: is a {art_kind!r} artifact, expected {kind!r}")
    art_format = data.get("artifact_format", "onnx")
    if art_format not in ARTIFACT_FORMATS:
        raise ArtifactError(
            f"{side}: unknown artifact_format {art_format!r:.60}; known: {ARTIFACT_FORMATS}"
        )
    expected = data["sha256"]
    if not _SHA256.fullmatch(expected):
        raise ArtifactError(
            f"{side}: invalid sidecar contents: sha256 must be 64 lowercase hex digits, "
            f"got {expected!r:.80}"
        )
    if verify:
        actual = file_sha256(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: sha256 mismatch: file hashes to {actual[:16]}..., sidecar {side.name} "
                f"says {expected[:16]}... (corrupt or replaced model file, or a foreign sidecar)"
            )
        size = path.stat().st_size
        if "size_bytes" in data and data["size_bytes"] != size:
            raise ArtifactError(
                f"{side}: invalid sidecar contents: size_bytes {data['size_bytes']}, but "
                f"{path.name} has {size} bytes"
            )
    try:
        config = (
            model_config_from_dict(data["model_config"])
            if data.get("model_config") is not None
            else None
        )
        postprocess = _postprocess_from_dict(data.get("postprocess", {}))
        inputs = _tensor_specs(data["inputs"], "inputs")
        outputs = _tensor_specs(data["outputs"], "outputs")
        if art_format == "tensorrt":
            trt = data.get("tensorrt")
            if trt is None:
                raise ValueError("a tensorrt artifact needs the tensorrt object")
            _check_int("tensorrt.max_tracks", trt.get("max_tracks"), 1, MAX_TRACKS)
        for key in ("size_bytes", "opset", "out_dim", "seed"):
            if isinstance(data.get(key), int) and data[key] < 0:
                raise ValueError(f"{key} must be >= 0, got {data[key]}")
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{side}: invalid sidecar contents: {exc}") from None
    if art_kind == "step":
        if config is None:
            raise ArtifactError(f"{side}: a {art_kind!r} artifact needs a model_config")
        problem = step_graph_problem(
            config, inputs, outputs, controls=_TRITON_CONTROLS if "triton" in data else ()
        )
        if problem:
            raise ArtifactError(f"{side}: graph does not match model_config: {problem}")
    return Artifact(
        path=path,
        sidecar=side,
        kind=art_kind,
        format=art_format,
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
