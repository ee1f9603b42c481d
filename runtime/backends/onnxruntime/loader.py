"""Options of the ONNX Runtime backend: provider lists and their options (no onnxruntime import).

Providers are named ``"cpu"``, ``"cuda"`` and ``"tensorrt"``; :func:`provider_list`
turns names plus options into the ``providers=`` argument of
``onnxruntime.InferenceSession`` (a list of ``(provider, options)`` pairs). The
TensorRT execution provider is always followed by CUDA and CPU so that nodes it
does not take still run on the device, then on the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reclnet.config import PostprocessConfig

__all__ = ["PROVIDER_NAMES", "device_of", "load", "provider_list", "trt_profile_options"]

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def provider_list(
    providers: Sequence[str] = ("cpu",),
    *,
    device_id: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    trt_cache_dir: str | os.PathLike | None = None,
    fp16: bool = False,
    int8: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """The ``providers=`` list of an InferenceSession.

    Parameters
    ----------
    providers : sequence of str
        Short names in priority order: ``"cpu"``, ``"cuda"``, ``"tensorrt"``.
    device_id : int
        CUDA device of the cuda and tensorrt providers.
    options : dict, optional
        Extra options per short name, merged over the defaults.
    trt_cache_dir : path-like, optional
        TensorRT engine cache directory (engine caching is on when given).
    fp16, int8 : bool
        TensorRT precision flags (INT8 expects a Q/DQ-quantized model).

    Returns
    -------
    list of (str, dict)
        Provider names and their option dicts, with the fallbacks appended.
    """
    if isinstance(providers, str):
        providers = [providers]
    names = list(providers)
    unknown = [p for p in names if p not in PROVIDER_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown provider(s) {unknown}; use {sorted(PROVIDER_NAMES)}")
    if "tensorrt" in names and "cuda" not in names:
        names.insert(names.index("tensorrt") + 1, "cuda")
    if "cpu" not in names:
        names.append("cpu")
    extra = {k: dict(v) for k, v in (options or {}).items()}
    bad = set(extra) - set(PROVIDER_NAMES)
    if bad:
        raise ValueError(f"options given for unknown provider(s) {sorted(bad)}")
    out = []
    for name in names:
        opts: dict[str, Any] = {}
        if name == "cuda":
            # Exhaustive cuDNN search pays off for a model run millions of times.
            opts = {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"}
        elif name == "tensorrt":
            opts = {"device_id": device_id, "trt_fp16_enable": fp16, "trt_int8_enable": int8}
            if trt_cache_dir is not None:
                opts["trt_engine_cache_enable"] = True
                opts["trt_engine_cache_path"] = str(Path(trt_cache_dir))
        opts.update(extra.get(name, {}))
        out.append((PROVIDER_NAMES[name], opts))
    return out


def trt_profile_options(
    widths: Mapping[str, int], min_tracks: int, opt_tracks: int, max_tracks: int
) -> dict[str, str]:
    """TensorRT EP optimization-profile options over N for inputs ``[N, width]``.

    ONNX Runtime's TensorRT EP documents ``trt_profile_min_shapes``,
    ``trt_profile_opt_shapes`` and ``trt_profile_max_shapes`` as strings
    ``"name:d0xd1,name2:d0xd1"`` (all three together). With them the EP builds one
    engine for the whole range instead of rebuilding it each time a larger N
    (more live tracks) arrives.

    Parameters
    ----------
    widths : dict[str, int]
        Input name -> its fixed second dimension.
    min_tracks, opt_tracks, max_tracks : int
        ``1 <= min <= opt <= max``.

    Returns
    -------
    dict[str, str]
    """
    if not 1 <= min_tracks <= opt_tracks <= max_tracks:
        raise ValueError(
            f"need 1 <= min <= opt <= max tracks, got {min_tracks}, {opt_tracks}, {max_tracks}"
        )
    for name in widths:
        if not name or any(c in name for c in ":,x"):
            raise ValueError(f"input name {name!r} cannot be written in a TensorRT EP profile")

    def spec(n: int) -> str:
        return ",".join(f"{name}:{n}x{int(w)}" for name, w in widths.items())

    return {
        "trt_profile_min_shapes": spec(min_tracks),
        "trt_profile_opt_shapes": spec(opt_tracks),
        "trt_profile_max_shapes": spec(max_tracks),
    }


def device_of(providers: Sequence[tuple[str, dict[str, Any]]]) -> tuple[str, int]:
    """Where the first provider keeps tensors: ``("cpu", 0)`` or ``("cuda", device_id)``."""
    name, opts = providers[0]
    if name == PROVIDER_NAMES["cpu"]:
        return "cpu", 0
    return "cuda", int(opts.get("device_id", 0))


def load(
    model: str | os.PathLike,
    *,
    providers: Sequence[str] = ("cpu",),
    device_id: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    trt_cache_dir: str | os.PathLike | None = None,
    fp16: bool = False,
    int8: bool = False,
    io_binding: bool | None = None,
    threads: int | None = None,
    spinning: bool = False,
    postprocess: PostprocessConfig | None = None,
    trt_profile_tracks: tuple[int, int, int] = (1, 32, 256),
    allow_fallback: bool = False,
) -> Any:
    """Load an exported step model (``step.onnx`` or ``step.int8.onnx`` + sidecar) into ORT.

    Parameters
    ----------
    model : path-like
        The ONNX file; its sidecar is read and its sha256 verified.
    providers, device_id, options, trt_cache_dir, fp16, int8
        See :func:`provider_list`.
    io_binding : bool, optional
        Keep states on the provider's device between steps (IO binding). Default:
        on for cuda / tensorrt, off for cpu (where it also works, for testing).
    threads : int, optional
        Intra-op threads of the session.
    spinning : bool
        Let idle intra-op threads spin between steps (off by default: they would
        compete with the scorer's post-processing for the same cores).
    postprocess : PostprocessConfig, optional
        Overrides the sidecar's post-processing defaults.
    trt_profile_tracks : (int, int, int)
        Min / opt / max N of the TensorRT EP's optimization profile.
    allow_fallback : bool
        When a requested CUDA / TensorRT provider is not in the session
        (``session.get_providers()``), warn and record it instead of failing.

    Returns
    -------
    OrtRunner
    """
    plist = provider_list(
        providers,
        device_id=device_id,
        options=options,
        trt_cache_dir=trt_cache_dir,
        fp16=fp16,
        int8=int8,
    )
    from .runner import OrtRunner

    return OrtRunner(
        model,
        providers=plist,
        io_binding=io_binding,
        threads=threads,
        spinning=spinning,
        postprocess=postprocess,
        trt_profile_tracks=trt_profile_tracks,
        allow_fallback=allow_fallback,
    )
