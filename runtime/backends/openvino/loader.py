"""Compiling a step model with OpenVINO's CPU runtime (the one module importing openvino).

:func:`compile_model` is the one OpenVINO compile of the project: the OpenVINO
backend (:class:`~reclnet.runtime.backends.openvino.runner.OpenVinoRunner`) and
the peers benchmark both go through it. It compiles on ``"CPU"`` with the
latency hint and an optional ``INFERENCE_PRECISION_HINT``, and reads back the
precision the compiled model really runs (OpenVINO's default on CPUs with AMX or
AVX-512 BF16 is bf16 for an fp32 model, f32 elsewhere). ``openvino`` is imported
inside the functions that need it, so that importing this module (the registry
does, to load the backend) costs nothing and says clearly, at :func:`load`, when
the ``openvino`` extra is missing.

Dynamic N, not one compile per N
--------------------------------
The number of live tracks N changes from frame to frame (tracks start and end),
so the backend compiles the model once with a dynamic first dimension. Measured
on the paper-sized step (2-core Xeon with AMX, OpenVINO 2026.4, default = bf16),
a model compiled for a static N is 5-15 % faster per step at that N (N=1: 1.21
vs 1.39 ms, N=32: 2.09 vs 2.47 ms, N=256: 11.5 vs 13.1 ms; f32: 1.08 vs 1.21 ms
at N=1, 24.8 vs 25.7 ms at N=256), but each new N costs a compile of ~110 ms (a
stall of several camera frames) and ~32 MiB for its copy of the weights. On a
replayed stream whose N drifts by +-1 every ~1.5 frames (23 distinct N in 300
frames), the 23 compiles (~2.6 s) outweigh what they save (~0.4 ms x 300 frames
= 0.12 s) by twenty times, and a bounded cache of static compiles would keep
paying them as N wanders out of it. Per-N static compiles win only once every N
has been seen hundreds of times, so the dynamic compile is the one implemented;
the peers benchmark still measures OpenVINO's static best case beside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reclnet.config import PostprocessConfig

__all__ = [
    "HINTS",
    "PRECISION_OPTIONS",
    "CompiledStep",
    "bf16_reason",
    "compile_model",
    "cpu_capabilities",
    "load",
    "openvino_importable",
    "openvino_precision",
    "port_specs",
    "read_model",
    "require_openvino",
]

#: The backend's ``precision`` option -> ``INFERENCE_PRECISION_HINT`` (None: OpenVINO's choice).
PRECISION_OPTIONS: dict[str, str | None] = {"default": None, "f32": "f32", "bf16": "bf16"}
#: Every ``INFERENCE_PRECISION_HINT`` value :func:`compile_model` accepts.
HINTS = ("f32", "bf16", "f16")
#: OpenVINO element type names -> numpy dtype names (those an artifact may declare).
_ELEMENT_TYPES = {
    "f32": "float32",
    "f16": "float16",
    "i32": "int32",
    "i64": "int64",
    "i8": "int8",
    "u8": "uint8",
    "boolean": "bool",
}


def require_openvino() -> Any:
    """The ``openvino`` module (the project's one import of it).

    Raises
    ------
    ImportError
        openvino is not installed (the ``openvino`` or ``bench`` extra); ``name`` is
        ``"openvino"``.
    """
    import openvino

    return openvino


def openvino_importable() -> bool:
    """Whether ``openvino`` imports here (imported, not only looked up: a broken install is
    False): what the feature networks' ``auto`` backend asks."""
    try:
        require_openvino()
    except ImportError:
        return False
    return True


def openvino_precision(value: Any) -> str | None:
    """An ``INFERENCE_PRECISION_HINT`` read back from OpenVINO as a precision name.

    Parameters
    ----------
    value : Any
        ``Type.bf16``, ``"bf16"``, ``"<Type: 'bfloat16'>"``, ``"f32"``, ...

    Returns
    -------
    str or None
        ``"bf16"``, ``"fp16"``, ``"fp32"`` or ``"int8"``
        (``reclnet.benchmarks.rows.PRECISIONS``); None if unknown.
    """
    names = [str(value)]
    for attr in ("get_type_name", "to_string"):
        method = getattr(value, attr, None)
        if callable(method):
            with contextlib.suppress(Exception):
                names.append(str(method()))
    text = " ".join(names).lower()
    # bf16 first: "bfloat16" contains "float16" and "bf16" contains "f16".
    for precision, spellings in (
        ("bf16", ("bf16", "bfloat16")),
        ("fp16", ("f16", "float16")),
        ("fp32", ("f32", "float32")),
        ("int8", ("i8", "u8", "int8")),
    ):
        if any(s in text for s in spellings):
            return precision
    return None


def cpu_capabilities() -> list[str]:
    """OpenVINO's CPU ``OPTIMIZATION_CAPABILITIES``, upper case (``"FP32"``, ``"BF16"``, ...)."""
    return [str(c).upper() for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def bf16_reason() -> str | None:
    """None when OpenVINO's CPU plugin reports the BF16 capability, else why not."""
    caps = cpu_capabilities()
    if "BF16" in caps:
        return None
    return f"OpenVINO reports no BF16 capability on this CPU (capabilities: {', '.join(caps)})"


#: (the openvino module, its Core): one Core per process (see :func:`core`).
_CORE: list[tuple[Any, Any]] = []


def core() -> Any:
    """The process's one ``openvino.Core``.

    OpenVINO advises one Core per application: each Core loads its own CPU plugin
    with its own thread pools. Measured here: with a new Core per compile (27
    compiles, then a pipelined camera run in the same process) CPython crashed in a
    camera thread; with one Core it did not (tests/runtime/backends/test_openvino.py
    runs before the camera tests in one pytest process). A new Core is made only
    if ``openvino`` itself was replaced (the tests' fake module).
    """
    ov = require_openvino()
    if not _CORE or _CORE[0][0] is not ov:
        _CORE[:] = [(ov, ov.Core())]
    return _CORE[0][1]


def read_model(path: str | os.PathLike) -> Any:
    """``Core.read_model`` of an ONNX (or IR) file: an ``openvino.Model``."""
    return core().read_model(str(path))


class CompiledStep:
    """A model compiled on OpenVINO's CPU plugin, with one infer request.

    Built by :func:`compile_model`.

    Attributes
    ----------
    compiled : openvino.CompiledModel
    request : openvino.InferRequest
    hint : str
        The raw ``INFERENCE_PRECISION_HINT`` read back from the compiled model.
    inference_precision : str or None
        That hint as a precision name (:func:`openvino_precision`): what really runs.
    """

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
        self.hint = str(value)
        self.inference_precision = openvino_precision(value)
        self.request = compiled.create_infer_request()

    def __call__(self, feeds: Mapping[str, Any]) -> Any:
        """``probs`` of one synchronous inference on ``feeds`` (name -> array)."""
        # Outputs by name: no port object of the compiled model outlives it.
        return self.request.infer(dict(feeds))["probs"]


def compile_model(
    model: Any,
    *,
    shapes: Mapping[str, Sequence[int]] | None = None,
    hint: str | None = None,
    threads: int | None = None,
    pinning: bool | None = None,
) -> CompiledStep:
    """Compile a model on ``"CPU"`` with ``PERFORMANCE_HINT=LATENCY``.

    Parameters
    ----------
    model : path-like or openvino.Model
        An ONNX file, or a model already read (cloned, never changed).
    shapes : dict[str, list of int], optional
        Input name -> shape to reshape to before compiling (``-1``: a dynamic
        dimension); the model's own shapes when None.
    hint : str, optional
        ``INFERENCE_PRECISION_HINT``: one of :data:`HINTS`; None keeps OpenVINO's
        default for this CPU.
    threads : int, optional
        ``INFERENCE_NUM_THREADS``; OpenVINO's default (the physical cores) when None.
    pinning : bool, optional
        ``ENABLE_CPU_PINNING``; OpenVINO's default (on, on Linux) when None. Pinning
        binds each compiled model's threads to cores chosen without regard to other
        models or processes: two single-thread models in one process, or one per
        process, land on the same core (see :class:`~reclnet.runtime.camera.features.
        FeatureNetwork`, which turns it off).

    Returns
    -------
    CompiledStep

    Raises
    ------
    ValueError
        Unknown hint, threads < 1.
    ImportError
        openvino is not installed.
    """
    if hint is not None and hint not in HINTS:
        raise ValueError(f"unknown INFERENCE_PRECISION_HINT {hint!r}; use one of {HINTS}")
    if threads is not None and (
        isinstance(threads, bool) or int(threads) != threads or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    model = read_model(model) if isinstance(model, str | Path) else model.clone()
    if shapes is not None:
        model.reshape({name: list(shape) for name, shape in shapes.items()})
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if pinning is not None:
        config["ENABLE_CPU_PINNING"] = bool(pinning)
    return CompiledStep(core().compile_model(model, "CPU", config))


def port_specs(ports: Sequence[Any]) -> list[tuple[frozenset[str], tuple[int | str, ...], str]]:
    """Names, shape and dtype of each of an OpenVINO model's input or output ports.

    Parameters
    ----------
    ports : sequence of openvino.Output
        ``model.inputs`` or ``model.outputs``.

    Returns
    -------
    list of (frozenset of str, tuple, str)
        The port's tensor names, its shape (an int per static dimension, ``"?"`` per
        dynamic one; ``()`` for a dynamic rank) and its numpy dtype name (OpenVINO's
        element type name when it has no numpy name here).
    """
    out = []
    for port in ports:
        shape = port.get_partial_shape()
        dims: tuple[int | str, ...] = ()
        if shape.rank.is_static:
            dims = tuple(d.get_length() if d.is_static else "?" for d in shape)
        element = port.get_element_type().get_type_name()
        out.append((frozenset(port.get_names()), dims, _ELEMENT_TYPES.get(element, element)))
    return out


def load(
    model: str | os.PathLike,
    *,
    precision: str = "default",
    threads: int | None = None,
    postprocess: PostprocessConfig | None = None,
) -> Any:
    """Load an exported ``step.onnx`` (+ sidecar) into OpenVINO's CPU runtime.

    Parameters
    ----------
    model : path-like
        The ONNX file; its sidecar is read and its sha256 verified.
    precision : str
        ``"default"`` (OpenVINO's choice: bf16 on CPUs with AMX / AVX-512 BF16, f32
        elsewhere), ``"f32"`` or ``"bf16"``. What really runs is read back into the
        runner's ``precision``.
    threads : int, optional
        Inference threads (``INFERENCE_NUM_THREADS``).
    postprocess : PostprocessConfig, optional
        Overrides the sidecar's post-processing defaults.

    Returns
    -------
    OpenVinoRunner

    Raises
    ------
    ValueError
        Unknown precision, bad threads.
    BackendError
        openvino is not installed, or the model cannot be loaded or compiled.
    """
    if precision not in PRECISION_OPTIONS:
        raise ValueError(
            f"openvino backend: unknown precision {precision!r}; use one of "
            f"{list(PRECISION_OPTIONS)}"
        )
    if threads is not None and (
        isinstance(threads, bool) or int(threads) != threads or threads < 1
    ):
        raise ValueError(f"openvino backend: threads must be a positive integer, got {threads!r}")
    try:
        require_openvino()
    except ImportError as exc:
        from reclnet.runtime.backends.base import BackendError

        raise BackendError(
            f"backend 'openvino' is not available: {exc} (install the openvino extra)"
        ) from exc
    from .runner import OpenVinoRunner

    return OpenVinoRunner(model, precision=precision, threads=threads, postprocess=postprocess)
