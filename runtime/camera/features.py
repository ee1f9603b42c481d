"""Running an exported feature network (``features_<stream>.onnx``) on a frame's person boxes.

The network (export part) takes ``image [1, 3, H, W]`` float32 and ``boxes
[K, 4]`` float32 ``x1 y1 x2 y2`` in that image's pixels and returns ``[K, D]``;
how pixels go in is read from its sidecar (``preprocessing``: channel order,
value range, whether normalization is inside the graph), and so is which box
head it has (``box_head``: ``"frame"``, the backbone once per frame and every
box pooled from its last feature map, or ``"box"``, layer4 run per box) and
its precision (``"int8"`` for a :func:`reclnet.export.features.quantize_features`
copy, ``features_<modality>.int8.onnx``). It runs on ONNX Runtime (the session
made by the ONNX Runtime backend module) or on OpenVINO's CPU plugin (compiled by
the OpenVINO backend's loader, the one module importing openvino): the same file,
its QDQ INT8 copy included, on either. :func:`feature_backend` picks OpenVINO by
default where it is installed (measured faster on the same INT8 file, see
:data:`FEATURE_BACKENDS`).

:func:`frame_features` is the one definition of a frame's per-track features
(resize, flow image, every modality's network over the tracks' boxes): the
camera pipeline (``reclnet stream``) and the dataset extraction (``reclnet
extract``) both call it, so a track's features at training time are its
features at run time.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, wait
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.runtime.artifacts import PRECISIONS, load_artifact, model_file

__all__ = [
    "FEATURE_BACKENDS",
    "FEATURE_PRECISIONS",
    "PRECISIONS",
    "FeatureNetwork",
    "feature_backend",
    "feature_network_path",
    "flow_for",
    "frame_features",
    "open_feature_network",
]


#: ``--feature-precision`` values: the step's (``auto``, ``fp32``, ``int8``) and ``bf16``:
#: the fp32 network on OpenVINO's CPU plugin in bf16 (CPUs with AMX / AVX-512 BF16; the
#: ``openvino`` extra). Measured on the 2-core Xeon with AMX, one thread, 384 x 288, 4
#: boxes: ORT fp32 40.9 ms, ORT INT8 16.1 ms (cosine to fp32 0.99992, max relative error
#: 1.5%), OpenVINO bf16 12.6 ms (0.99999, 0.5%).
FEATURE_PRECISIONS = (*PRECISIONS, "bf16")
#: ``--feature-backend`` values. ``auto`` is OpenVINO where the ``openvino`` extra imports,
#: else ONNX Runtime: on the same static INT8 (QDQ) file OpenVINO's CPU plugin runs
#: oneDNN's INT8 convolutions. Measured on the 2-core Xeon with AMX (one thread, 384 x 288,
#: 4 boxes, the default frame head): ONNX Runtime 19.9 ms, OpenVINO 7.7 ms, the same
#: cosine to fp32 (0.99992). Not measured on an AVX2-only CPU (AMD): ``onnxruntime``
#: there is one flag away, and ``reclnet stream`` prints which backend ran.
FEATURE_BACKENDS = ("auto", "onnxruntime", "openvino")


def feature_backend(backend: str = "auto", precision: str = "auto") -> str:
    """The backend that runs the feature networks: ``"onnxruntime"`` or ``"openvino"``.

    Parameters
    ----------
    backend : str
        A :data:`FEATURE_BACKENDS` value; ``auto`` is OpenVINO when ``openvino``
        imports, else ONNX Runtime.
    precision : str
        A :data:`FEATURE_PRECISIONS` value; ``bf16`` runs on OpenVINO only.

    Raises
    ------
    ValueError
        Unknown backend or precision, or ``bf16`` on ONNX Runtime.
    """
    if backend not in FEATURE_BACKENDS:
        raise ValueError(f"unknown feature backend {backend!r}; choose one of {FEATURE_BACKENDS}")
    if precision not in FEATURE_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {FEATURE_PRECISIONS}")
    if precision == "bf16":
        if backend == "onnxruntime":
            raise ValueError("bf16 feature networks run on OpenVINO, not ONNX Runtime")
        return "openvino"
    if backend == "auto":
        from reclnet.runtime.backends.openvino.loader import openvino_importable

        return "openvino" if openvino_importable() else "onnxruntime"
    return backend


def feature_network_path(
    model_dir: str | os.PathLike, modality: str, precision: str = "auto"
) -> Path:
    """The feature network file of ``modality`` in ``model_dir`` for ``precision``.

    ``features_<modality>.onnx`` or its INT8 copy, see :func:`reclnet.runtime.artifacts.model_file`;
    ``bf16`` runs the fp32 file (OpenVINO lowers it).
    """
    if precision not in FEATURE_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {FEATURE_PRECISIONS}")
    return model_file(
        model_dir, f"features_{modality}", "fp32" if precision == "bf16" else precision
    )


def open_feature_network(
    model_dir: str | os.PathLike,
    modality: str,
    precision: str = "auto",
    *,
    backend: str = "auto",
    threads: int | None = None,
) -> FeatureNetwork:
    """The feature network of ``modality`` for ``precision`` (a :data:`FEATURE_PRECISIONS`
    value) on ``backend`` (a :data:`FEATURE_BACKENDS` value, see :func:`feature_backend`):
    what ``reclnet stream``, ``reclnet extract`` and the serve workers run.

    Raises
    ------
    reclnet.runtime.artifacts.ArtifactError
        Missing, corrupt or foreign artifact.
    ValueError
        Unknown precision or backend, ``bf16`` on ONNX Runtime.
    ImportError
        OpenVINO asked for (``backend="openvino"`` or ``bf16``) without the ``openvino`` extra.
    """
    path = feature_network_path(model_dir, modality, precision)
    return FeatureNetwork(
        path,
        threads=threads,
        backend=feature_backend(backend, precision),
        bf16=precision == "bf16",
    )


class FeatureNetwork:
    """One stream's exported feature extractor.

    Parameters
    ----------
    path : path-like
        ``features_<stream>.onnx``; its sidecar is verified (sha256).
    threads : int, optional
        ONNX Runtime intra-op threads.
    providers : list of str
        ONNX Runtime execution providers.
    backend : str
        ``"onnxruntime"``, or ``"openvino"``: OpenVINO's CPU plugin (either file: the
        INT8 copy's quantized operators run in INT8, the rest in f32).
    bf16 : bool
        OpenVINO only, the float32 file only: the bf16 precision hint (``precision``
        then says what ran, read back: bf16 where the CPU has it, fp32 elsewhere).

    Raises
    ------
    reclnet.runtime.artifacts.ArtifactError
        Missing, corrupt or foreign artifact.
    ImportError
        ``backend="openvino"`` without the ``openvino`` extra.
    ValueError
        Unknown backend, ``bf16`` on ONNX Runtime or on an INT8 copy.
    reclnet.runtime.backends.BackendError
        OpenVINO cannot compile the file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        backend: str = "onnxruntime",
        bf16: bool = False,
    ) -> None:
        if backend not in ("onnxruntime", "openvino"):
            raise ValueError(f"unknown feature backend {backend!r}; use onnxruntime or openvino")
        if bf16 and backend != "openvino":
            raise ValueError("bf16 feature networks run on OpenVINO, not ONNX Runtime")
        self.artifact = load_artifact(path, kind="features")
        self.path = Path(path)
        pre: dict[str, Any] = self.artifact.preprocessing
        # RGB networks get the BGR frame flipped; flow images ("x, y, magnitude") go as they are.
        self.flip = str(pre.get("channel_order", "RGB")).upper() == "RGB"
        lo, hi = (float(v) for v in pre.get("value_range", (0.0, 255.0)))
        self.scale = (hi - lo) / 255.0
        self.offset = lo
        # The export puts the mean / std normalization inside the graph; apply it here otherwise.
        self.normalize = "in graph" not in str(pre.get("normalization", "in graph"))
        self.mean = np.asarray(pre.get("mean", (0.0, 0.0, 0.0)), np.float32).reshape(3, 1, 1)
        self.std = np.asarray(pre.get("std", (1.0, 1.0, 1.0)), np.float32).reshape(3, 1, 1)
        self.backend = backend
        self.session: Any = None
        self._openvino: Any = None
        if backend == "openvino":
            # openvino is imported by the OpenVINO backend's loader only.
            from reclnet.runtime.backends.openvino.loader import compile_model

            file_precision = self.artifact.metadata.get("precision", "fp32")
            if bf16 and file_precision != "fp32":
                raise ValueError(
                    f"{self.path.name}: OpenVINO bf16 runs the float32 network, not this "
                    f"{file_precision} copy"
                )
            # f32 for whatever is not quantized: on the INT8 copy it was also the faster
            # hint (7.7 vs 9.7 ms with bf16, same input as FEATURE_BACKENDS' figures).
            # No thread pinning: OpenVINO pins each process's threads to the same first
            # cores, so `reclnet extract --workers 2` ran at 62 frames/s pinned and 99
            # unpinned (ONNX Runtime 98); within one process it made no difference.
            try:
                self._openvino = compile_model(
                    self.artifact.path,
                    hint="bf16" if bf16 else "f32",
                    threads=threads,
                    pinning=False,
                )
            except (ImportError, ValueError):
                raise
            except Exception as exc:  # OpenVINO raises its own exception types
                from reclnet.runtime.backends.base import BackendError

                raise BackendError(
                    f"{self.path.name}: OpenVINO cannot compile it ({exc}); "
                    f"--feature-backend onnxruntime runs it on ONNX Runtime"
                ) from exc
            names = sorted(n for port in self._openvino.compiled.inputs for n in port.names)
        else:
            # onnxruntime is imported by the ORT backend module only; loaded here, on first use.
            from reclnet.runtime.backends.onnxruntime.runner import make_session

            self.session = make_session(
                self.artifact.path, providers=[(p, {}) for p in providers], threads=threads
            )
            names = [i.name for i in self.session.get_inputs()]
        if set(names) != {"image", "boxes"}:
            raise ValueError(
                f"{self.path.name}: a feature network needs inputs image and boxes, has {names}"
            )
        #: The DIS preset of this network's flow images (a flow network; None otherwise).
        self.flow_preset: str | None = None
        if str(pre.get("stream", "")) == "flow":
            from reclnet.runtime.camera.flow import DIS_PRESETS, LEGACY_DIS_PRESET

            flow_pre = pre.get("flow_image", {})
            # Sidecars written before the preset was recorded were made with medium.
            preset = (
                flow_pre.get("dis_preset", LEGACY_DIS_PRESET)
                if isinstance(flow_pre, dict)
                else None
            )
            if preset not in DIS_PRESETS:
                raise ValueError(
                    f"{self.path.name}: its sidecar names DIS preset {preset!r}, not one of "
                    f"{list(DIS_PRESETS)}"
                )
            self.flow_preset = str(preset)
        meta = self.artifact.metadata
        # Sidecars written before the frame head existed have the per-box head.
        self.head = str(meta.get("box_head", "box"))
        self.precision = str(meta.get("precision", "fp32"))
        if self._openvino is not None:
            if self.precision == "fp32":
                # What OpenVINO runs, read back (bf16 where the CPU has it, fp32 elsewhere).
                self.precision = self._openvino.inference_precision or "unknown"
            self.output_name = self.artifact.outputs[0].name
            out_shape = self.artifact.outputs[0].shape
        else:
            self.output_name = self.session.get_outputs()[0].name
            out_shape = self.session.get_outputs()[0].shape
        self.dim = int(out_shape[-1]) if isinstance(out_shape[-1], int) else None

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]`` (BGR frame, or a flow image) -> float32 ``[1, 3, H, W]``."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"expected a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}"
            )
        chw = image.transpose(2, 0, 1)
        # One strided copy with the uint8 -> float32 cast (exact) straight into the
        # contiguous input, instead of a cast copy plus a contiguous copy (~10x faster).
        x = np.empty((1, *chw.shape), np.float32)
        x[0] = chw[::-1] if self.flip else chw
        if self.scale != 1.0 or self.offset != 0.0:
            x *= np.float32(self.scale)
            x += np.float32(self.offset)
        if self.normalize:
            x -= self.mean
            x /= self.std
        return x

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Features of the boxes in one image.

        Parameters
        ----------
        image : np.ndarray
            uint8 ``[H, W, 3]``.
        boxes : np.ndarray
            float32 ``[K, 4]`` ``x1 y1 x2 y2`` in the image's pixels.

        Returns
        -------
        np.ndarray
            float32 ``[K, D]``.
        """
        boxes = np.ascontiguousarray(boxes, np.float32).reshape(-1, 4)
        feed = {"image": self.preprocess(image), "boxes": boxes}
        if self._openvino is not None:
            # infer returns copies of the outputs (the request's buffers are reused).
            out = self._openvino.request.infer(feed)[self.output_name]
            return np.ascontiguousarray(out, np.float32)
        return np.asarray(self.session.run([self.output_name], feed)[0], np.float32)

    def close(self) -> None:
        self.session = None
        self._openvino = None

    def __enter__(self) -> FeatureNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flow_for(network: FeatureNetwork) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The flow function a flow network reads: :func:`~reclnet.runtime.camera.flow.flow_image`
    with the DIS preset its sidecar names (``reclnet stream``, ``reclnet extract`` and the
    serve workers all take it from here, so training and streaming compute the same flow).

    Parameters
    ----------
    network : FeatureNetwork
        The ``"flow"`` modality's network.

    Returns
    -------
    callable
        ``(previous uint8 [h, w, 3], current uint8 [h, w, 3]) -> uint8 [h, w, 3]``.
    """
    from reclnet.runtime.camera.flow import flow_image

    if network.flow_preset is None:
        raise ValueError(f"{network.path.name} is not a flow network (its stream is not 'flow')")
    return functools.partial(flow_image, preset=network.flow_preset)


def _no_timer(stage: str) -> nullcontext:
    return nullcontext()


def frame_features(
    image: np.ndarray,
    boxes: np.ndarray,
    networks: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]],
    *,
    sizes: Mapping[str, int],
    previous: np.ndarray | None = None,
    flow: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    scale: float = 1.0,
    timer: Callable[[str], Any] = _no_timer,
    executor: Executor | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every modality's features of one frame's person boxes.

    The frame (and the boxes) are resized by ``scale`` (``cv2.INTER_AREA``);
    the ``"flow"`` modality's network gets the flow image from ``previous``
    (the previous frame as this function resized it; the frame itself for the
    first frame, i.e. zero motion), every other modality the resized frame.
    A frame without boxes runs no network and computes no flow image.

    Parameters
    ----------
    image : np.ndarray
        uint8 ``[H, W, 3]`` BGR frame.
    boxes : np.ndarray
        float32 ``[K, 4]`` ``x1 y1 x2 y2`` in the frame's pixels (bounded by the frame).
    networks : mapping of str to callable
        Modality -> ``(image uint8 [h, w, 3], boxes float32 [K, 4]) -> float32 [K, D]``
        (a :class:`FeatureNetwork`), in the model's modality order.
    sizes : mapping of str to int
        Modality -> D, the shape of a frame without boxes (``[0, D]``).
    previous : np.ndarray, optional
        The resized previous frame (the second value this function returned for it).
    flow : callable, optional
        ``(previous, current) -> uint8 [h, w, 3]`` flow image; needed for a ``"flow"`` modality.
    scale : float
        Resize factor before flow and features.
    timer : callable
        ``timer(stage)`` is a context manager timing ``"flow"`` and ``"features"``
        (a :class:`~reclnet.runtime.camera.pipeline.StageTimer`); none by default.
        ``"features"`` is the networks' time, summed over modalities also when
        they run concurrently (what ``timer.add(stage, seconds)`` adds, when the
        timer has it: a :class:`~reclnet.runtime.camera.pipeline.FrameClock`).
    executor : concurrent.futures.Executor, optional
        Where the networks that do not need the flow image (every modality but
        ``"flow"``) run while this thread computes the flow image and then runs
        the flow network: the same calls on the same inputs as without it (so
        the same features), overlapped (ONNX Runtime and OpenCV release the GIL).
        The caller owns it; without it everything runs in this thread.

    Returns
    -------
    features : dict[str, np.ndarray]
        Modality -> float32 ``[K, D]`` (C-contiguous), rows in box order.
    resized : np.ndarray
        uint8 ``[h, w, 3]``: the resized frame, ``previous`` of the next frame.
    """
    h, w = image.shape[:2]
    small = image
    if scale != 1.0:
        import cv2

        small = cv2.resize(
            image,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
    boxes_small = np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32(scale)
    if "flow" in networks and flow is None:
        raise ValueError("a flow modality needs flow=")
    if not len(boxes_small):
        # No network runs, so no flow image is needed: the flow is a function of two
        # frames only, and the next frame's comes from the ``small`` returned here.
        return {m: np.zeros((0, int(sizes[m])), np.float32) for m in networks}, small

    def run(modality: str, picture: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        out = np.ascontiguousarray(networks[modality](picture, boxes_small), np.float32)
        return out, time.perf_counter() - t0

    add = getattr(timer, "add", None)
    pending: dict[str, Future] = {}
    if executor is not None and "flow" in networks:
        # The image networks do not need the flow: they run while it is computed.
        pending = {m: executor.submit(run, m, small) for m in networks if m != "flow"}
    feats: dict[str, np.ndarray] = {}
    seconds = 0.0
    try:
        flow_img = None
        if "flow" in networks:
            with timer("flow"):
                flow_img = flow(previous if previous is not None else small, small)
        # Without ``timer.add``, the features stage is timed as the wall clock of the rest.
        with timer("features") if add is None else nullcontext():
            for modality in networks:
                if modality not in pending:
                    picture = flow_img if modality == "flow" else small
                    feats[modality], dt = run(modality, picture)
                    seconds += dt
            for modality, future in pending.items():
                feats[modality], dt = future.result()
                seconds += dt
    except BaseException:
        # No network outlives the call, also when the flow or another network failed.
        wait(pending.values())
        raise
    if add is not None:
        add("features", seconds)
    return {m: feats[m] for m in networks}, small
