"""Person-box feature networks (appearance and flow): torchvision backbone + RoIAlign + head to D.

Fast-RCNN style, as in the paper (section 4): one image, K person boxes, one
D-dimensional descriptor per box. Two box heads (``head=``):

- ``"frame"`` (default for ``resnet18``): ResNet-18 ``conv1`` up to
  ``stage`` (``layer2`` stride 8, 128 channels; ``layer3`` stride 16, 256;
  ``layer4`` stride 32, 512) runs once per frame -> ``torchvision.ops.roi_align``
  on that feature map -> average pool to a ``grid`` x ``grid`` layout of the
  box, concatenated (``channels * grid**2``) -> linear head to D. Everything
  convolutional is paid once per frame; a person costs one RoIAlign and the
  linear head, so the cost hardly grows with K. The default, ``layer2`` with
  a 3 x 3 grid (1152-d), is what random weights are good for: measured on the
  rendered action videos with a per-frame linear probe (flow, balanced
  accuracy over 6 classes), ``layer4`` / grid 1 reaches 0.36, ``layer3`` /
  grid 2 0.60, ``layer2`` / grid 3 0.72 (docs/training.md); the grid keeps
  *where* in the box the motion is (arms, legs), which a global average loses.
  With trained weights (``weights=``) ``layer4`` / grid 1 is the Fast R-CNN reading.
- ``"box"``: ResNet-18 ``conv1 .. layer3`` (stride 16) -> RoIAlign 14 x 14 ->
  ``layer4`` per box -> global average pool -> linear head to D (the C4 head
  of Faster R-CNN ResNets). Finer pooling (stride 16, layer4 sees only the
  box), at about 0.46 GFLOP per box and modality. With ``stage="layer4"``
  the frame head shares every weight with it (same ``state_dict`` keys): two
  readings of one network, whose descriptors differ (the frame head's layer4
  sees the context around the box). Whatever the head, the step model must
  be trained on features of the head it runs with.
- ``vgg16`` (paper-faithful; ``"box"`` only): VGG16 conv5_3 (stride 16) ->
  RoIAlign 7 x 7 -> FC6 -> FC7 (4096), followed by the head to D (identity
  when D = 4096).

:func:`quantize_features` writes a static INT8 (QDQ, per-channel weights)
copy calibrated on frames; :func:`feature_parity` measures a copy against the
float network (cosine similarity and relative error per box).

The image is float32 ``[1, 3, H, W]`` RGB in [0, 255]; ImageNet mean/std
normalization happens inside the graph (constants also in the sidecar).
``boxes`` are float32 ``[K, 4]`` x1, y1, x2, y2 in image pixels. K, H and W are
dynamic. Backbone weights load from a local torchvision ``state_dict`` file;
nothing is ever downloaded. Without a file the weights are random and the
sidecar says so (``"weights": "random"``); the head is random unless it is
the identity.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reclnet.export.onnx_export import DEFAULT_OPSET, onnx_export
from reclnet.export.sidecar import write_sidecar

__all__ = [
    "BACKBONES",
    "DEFAULT_FRAME_GRID",
    "DEFAULT_FRAME_STAGE",
    "FRAME_STAGES",
    "HEADS",
    "QUANTIZED_OPS",
    "calibration_images",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureNet",
    "export_features",
    "feature_parity",
    "quantize_features",
]

BACKBONES = ("resnet18", "vgg16")
#: Box heads: pool from the last stage once per frame, or run layer4 per box.
HEADS = ("frame", "box")
#: Last ResNet-18 stage the frame head runs: stage -> (stride, channels).
FRAME_STAGES = {"layer2": (8, 128), "layer3": (16, 256), "layer4": (32, 512)}
#: Frame head defaults (see the module docstring for why).
DEFAULT_FRAME_STAGE = "layer2"
DEFAULT_FRAME_GRID = 3
#: Operator types :func:`quantize_features` runs in INT8.
QUANTIZED_OPS = ("Conv", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class FeatureNet(nn.Module):
    """Backbone trunk + RoIAlign on boxes + box head + projection to ``out_dim``.

    Parameters
    ----------
    backbone : str
        ``"resnet18"`` or ``"vgg16"``.
    out_dim : int or None
        Descriptor size D; None keeps the pooled size (frame head: channels of
        ``stage`` x ``grid**2``, 1152 by default; box head 512; vgg16 4096).
    weights : path-like, optional
        Local torchvision ``state_dict`` of the backbone (``.pth``); random otherwise.
    seed : int
        Seed of the random initialisation (backbone without weights, head).
    head : str, optional
        ``"frame"`` or ``"box"`` (see the module docstring); by default
        ``"frame"`` for ``resnet18`` and ``"box"`` for ``vgg16`` (its only one).
    stage : str
        Frame head: the last ResNet-18 stage run (``FRAME_STAGES``).
    grid : int
        Frame head: the box is average-pooled to ``grid x grid`` cells (1..7).

    Notes
    -----
    ``forward(image [1, 3, H, W], boxes [K, 4]) -> [K, D]``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        out_dim: int | None = None,
        *,
        weights: str | os.PathLike | None = None,
        seed: int = 0,
        head: str | None = None,
        stage: str = DEFAULT_FRAME_STAGE,
        grid: int = DEFAULT_FRAME_GRID,
    ) -> None:
        super().__init__()
        import torchvision

        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
        if head is None:
            head = "frame" if backbone == "resnet18" else "box"
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if backbone == "vgg16" and head != "box":
            raise ValueError("vgg16 has only the per-box head (FC6/FC7 run per box): head='box'")
        if stage not in FRAME_STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {tuple(FRAME_STAGES)}")
        if not isinstance(grid, int) or not 1 <= grid <= 7:
            raise ValueError(f"grid must be an int in 1..7, got {grid!r}")
        # stage / grid describe the frame head only; the box heads have their fixed layout.
        self.stage, self.grid = (stage, grid) if head == "frame" else (None, None)
        self.backbone = backbone
        self.head_kind = head
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            net = getattr(torchvision.models, backbone)(weights=None)
            self.weights_file = None
            if weights is not None:
                state = torch.load(Path(weights), map_location="cpu", weights_only=True)
                if isinstance(state, dict) and "state_dict" in state:
                    state = state["state_dict"]
                net.load_state_dict(state)
                self.weights_file = Path(weights)
            if backbone == "resnet18":
                stem = [
                    net.conv1,
                    net.bn1,
                    net.relu,
                    net.maxpool,
                    net.layer1,
                    net.layer2,
                    net.layer3,
                ]
            if backbone == "resnet18" and head == "frame":
                stages = [*stem, net.layer4]
                self.trunk = nn.Sequential(*stages[: stages.index(getattr(net, stage)) + 1])
                self.stride, channels = FRAME_STAGES[stage]
                if grid == 1:
                    self.pool_size = 7
                    pool: nn.Module = nn.AdaptiveAvgPool2d(1)  # ONNX GlobalAveragePool
                else:
                    # RoIAlign to grid * cell bins, then an exact average over each cell.
                    cell = math.ceil(7 / grid)
                    self.pool_size = grid * cell
                    pool = nn.AvgPool2d(cell, stride=cell)
                self.box_head = nn.Sequential(pool, nn.Flatten())
                feat_dim = channels * grid * grid
            elif backbone == "resnet18":
                self.trunk = nn.Sequential(*stem)
                self.stride = 16
                self.pool_size = 14
                self.box_head = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
                feat_dim = 512
            else:
                self.trunk = net.features[:-1]  # conv5_3 + ReLU, stride 16 (last max-pool dropped)
                self.stride = 16
                self.pool_size = 7
                self.box_head = nn.Sequential(nn.Flatten(), *list(net.classifier.children())[:-1])
                feat_dim = 4096
            self.out_dim = feat_dim if out_dim is None else int(out_dim)
            self.head = (
                nn.Identity() if self.out_dim == feat_dim else nn.Linear(feat_dim, self.out_dim)
            )
        finally:
            torch.random.set_rng_state(generator_state)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval()

    def forward(self, image: Tensor, boxes: Tensor) -> Tensor:
        """Descriptors of ``boxes`` in ``image``.

        Parameters
        ----------
        image : Tensor
            float32 ``[1, 3, H, W]``, RGB in [0, 255].
        boxes : Tensor
            float32 ``[K, 4]``, x1, y1, x2, y2 in pixels.

        Returns
        -------
        Tensor
            float32 ``[K, D]``.
        """
        from torchvision.ops import roi_align

        fmap = self.trunk((image - self.mean) / self.std)
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        pooled = roi_align(
            fmap,
            rois,
            output_size=self.pool_size,
            spatial_scale=1.0 / self.stride,
            sampling_ratio=2,
            aligned=True,
        )
        return self.head(self.box_head(pooled))


def export_features(
    path: str | os.PathLike,
    *,
    stream: str,
    out_dim: int | None = None,
    backbone: str = "resnet18",
    weights: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    net: FeatureNet | None = None,
    head: str | None = None,
    stage: str = DEFAULT_FRAME_STAGE,
    grid: int = DEFAULT_FRAME_GRID,
    int8: bool = True,
    calibration: list[np.ndarray] | None = None,
    flow_preset: str | None = None,
) -> Path:
    """Export a feature network to ONNX (``image [1,3,H,W], boxes [K,4] -> features [K,D]``).

    Parameters
    ----------
    path : path-like
        Destination, conventionally ``DIR/features_<stream>.onnx``.
    stream : str
        ``"rgb"`` (appearance; input an RGB frame) or ``"flow"`` (input
        :func:`reclnet.runtime.flow_image`), or another stream name of the model.
    out_dim : int, optional
        D, the step model's input size for this stream.
    backbone, weights, seed, head, stage, grid
        See :class:`FeatureNet` (``head``: ``"frame"``, the default for
        ``resnet18``, or ``"box"``; ``stage`` and ``grid``: the frame head's).
    int8 : bool
        Also write the static INT8 copy ``<name>.int8.onnx`` beside it
        (:func:`quantize_features`), which ``reclnet stream`` runs by default.
    calibration : list of np.ndarray, optional
        uint8 ``[H, W, 3]`` calibration images for the INT8 copy (synthetic
        ones by default, see :func:`calibration_images`).
    net : FeatureNet, optional
        An already built network (the other arguments then only describe it).
    flow_preset : str, optional
        ``stream="flow"`` only: the OpenCV DIS preset of the flow images this network
        reads (one of :data:`reclnet.runtime.camera.flow.DIS_PRESETS`; default
        :data:`~reclnet.runtime.camera.flow.DEFAULT_DIS_PRESET`), recorded in the
        sidecar: ``reclnet extract`` and ``reclnet stream`` compute the flow with it.

    Returns
    -------
    Path
        The float32 ONNX file (sidecar ``kind="features"`` beside it).
    """
    from reclnet.runtime.artifacts import file_sha256
    from reclnet.runtime.camera.flow import DEFAULT_DIS_PRESET, DIS_PRESETS, FLOW_OFFSET, FLOW_SCALE

    if flow_preset is not None and stream != "flow":
        raise ValueError(f"flow_preset is for the flow stream, not {stream!r}")
    flow_preset = DEFAULT_DIS_PRESET if flow_preset is None else flow_preset
    if flow_preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {flow_preset!r}; use one of {list(DIS_PRESETS)}")

    net = net or FeatureNet(
        backbone, out_dim, weights=weights, seed=seed, head=head, stage=stage, grid=grid
    )
    image = torch.zeros(1, 3, 64, 96)
    boxes = torch.tensor([[4.0, 4.0, 40.0, 60.0], [10.0, 8.0, 90.0, 50.0]])
    path = onnx_export(
        net,
        (image, boxes),
        path,
        input_names=["image", "boxes"],
        output_names=["features"],
        dynamic={"image": {2: "H", 3: "W"}, "boxes": {0: "K"}},
        opset=opset,
    )
    preprocessing: dict[str, Any] = {
        "stream": stream,
        "image_layout": "NCHW, batch 1",
        "channel_order": "x, y, magnitude" if stream == "flow" else "RGB",
        "value_range": [0.0, 255.0],
        "normalization": "in graph: (image - mean) / std",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "boxes": "x1, y1, x2, y2 in image pixels",
        "roi_align": {
            "output_size": net.pool_size,
            "spatial_scale": 1.0 / net.stride,
            "sampling_ratio": 2,
            "aligned": True,
        },
    }
    if stream == "flow":
        preprocessing["flow_image"] = {
            "method": "OpenCV DIS, reclnet.runtime.flow_image",
            "dis_preset": flow_preset,
            "scale": FLOW_SCALE,
            "offset": FLOW_OFFSET,
        }
    write_sidecar(
        path,
        kind="features",
        config=None,
        preprocessing=preprocessing,
        extra={
            "backbone": net.backbone,
            "box_head": net.head_kind,
            "frame_stage": net.stage,
            "frame_grid": net.grid,
            "weights": "random" if net.weights_file is None else "pretrained",
            "weights_file": None
            if net.weights_file is None
            else {"path": str(net.weights_file.resolve()), "sha256": file_sha256(net.weights_file)},
            "head": "identity" if isinstance(net.head, nn.Identity) else "linear (random init)",
            "out_dim": net.out_dim,
            "precision": "fp32",
            "seed": seed,
        },
    )
    if int8:
        quantize_features(path, path.with_suffix(".int8.onnx"), images=calibration)
    return path


def calibration_images(
    stream: str, *, count: int = 8, size: tuple[int, int] = (288, 384), seed: int = 0
) -> list[np.ndarray]:
    """Deterministic synthetic calibration images for :func:`quantize_features`.

    Real frames are better (pass them to :func:`quantize_features`); these are
    what an export without data uses. They mix what bounds activations from
    both sides: uniform noise (the largest early-layer responses), smooth
    random fields with edges (natural-image-like statistics) and, for the flow
    stream, flow images of smooth random motion (mostly near the zero-motion
    level 128, as real flow is).

    Parameters
    ----------
    stream : str
        ``"flow"`` gives flow images; anything else RGB images.
    count : int
        Number of images.
    size : tuple[int, int]
        ``(H, W)``.
    seed : int
        Seed of the generator.

    Returns
    -------
    list of np.ndarray
        uint8 ``[H, W, 3]`` images (RGB, or flow images ``x, y, magnitude``).
    """
    import cv2

    from reclnet.runtime.camera.flow import encode_flow

    rng = np.random.default_rng(seed)
    h, w = size
    out: list[np.ndarray] = []
    for i in range(count):
        if stream == "flow":
            coarse = rng.normal(0.0, 2.0 + 2.0 * (i % 3), (max(2, h // 48), max(2, w // 48), 2))
            flow = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
            out.append(encode_flow(flow))
        elif i % 4 == 0:
            out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        else:
            coarse = rng.uniform(0, 255, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
            image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
            for _ in range(6):  # a few sharp-edged rectangles (people, doors, ...)
                x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
                bw, bh = int(rng.integers(8, w // 3)), int(rng.integers(8, h // 2))
                image[y : y + bh, x : x + bw] = rng.uniform(0, 255, 3)
            image += rng.normal(0, 6, image.shape).astype(np.float32)
            out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def _to_input(image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> float32 ``[1, 3, H, W]`` in [0, 255] (the graph's input)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3] images, got {image.dtype} {list(image.shape)}")
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32)


def _calibration_boxes(h: int, w: int) -> np.ndarray:
    """A fixed spread of person-shaped boxes (RoIAlign is not quantized; any boxes do)."""
    return np.array(
        [[0.05 * w, 0.1 * h, 0.2 * w, 0.6 * h], [0.4 * w, 0.2 * h, 0.55 * w, 0.9 * h]], np.float32
    )


def quantize_features(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    images: list[np.ndarray] | None = None,
) -> Path:
    """Write a static INT8 (QDQ) copy of an exported feature network, with its sidecar.

    Convolutions (and the residual adds and pools between them) run in INT8:
    weights signed per output channel, activations unsigned per tensor with
    ranges calibrated (min / max) on ``images``; RoIAlign and the linear head
    stay float32 (they are a negligible share of the time and RoIAlign has no
    INT8 kernel). Static beats dynamic quantization here: ONNX Runtime's
    dynamic path quantizes convolutions through ``ConvInteger``, which has no
    fast kernel, while ``QLinearConv`` runs MLAS's INT8 GEMM (VNNI / AMX where
    the CPU has them).

    Parameters
    ----------
    src : path-like
        An exported float32 ``features_<stream>.onnx`` (sidecar verified).
    dst : path-like
        Destination, conventionally ``features_<stream>.int8.onnx``.
    images : list of np.ndarray, optional
        uint8 ``[H, W, 3]`` calibration images in the network's channel order
        (RGB frames, or flow images for the flow stream); by default
        :func:`calibration_images` of the sidecar's stream.

    Returns
    -------
    Path
        The quantized model (sidecar ``kind="features"`` with a ``quantization`` block).
    """
    import logging
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from reclnet.export.sidecar import write_derived_sidecar
    from reclnet.runtime.artifacts import load_artifact

    src, dst = Path(src), Path(dst)
    source = load_artifact(src, kind="features")
    stream = str(source.preprocessing.get("stream", "rgb"))
    synthetic = images is None
    if images is None:
        images = calibration_images(stream)
    if not images:
        raise ValueError("quantize_features: no calibration images")
    feeds = []
    for image in images:
        x = _to_input(image)
        feeds.append({"image": x, "boxes": _calibration_boxes(x.shape[2], x.shape[3])})

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    # The quantizer logs advisories on the root logger; they are not actionable here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pre = Path(tmp) / "pre.onnx"
            # Shape inference + folding first (what the quantizer expects as input).
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTIZED_OPS),
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        root.setLevel(level)
    write_derived_sidecar(
        dst,
        source,
        {
            "backbone": source.metadata.get("backbone"),
            "box_head": source.metadata.get("box_head", "box"),
            "out_dim": source.metadata.get("out_dim"),
            "weights": source.metadata.get("weights"),
            "precision": "int8",
            "quantization": {
                "method": "onnxruntime.quantization.quantize_static (QDQ)",
                "weight_type": "QInt8, per channel",
                "activation_type": "QUInt8, per tensor, MinMax calibration",
                "ops": list(QUANTIZED_OPS),
                "calibration": "synthetic" if synthetic else "user images",
                "calibration_images": len(feeds),
                "float_model": src.name,
                "float_sha256": source.sha256,
            },
        },
    )
    return dst


def feature_parity(
    reference: Any,
    candidate: Any,
    images: list[np.ndarray],
    boxes: list[np.ndarray],
) -> dict[str, float]:
    """How close a quantized feature network's descriptors are to the float network's.

    Parameters
    ----------
    reference, candidate : callable
        ``(image uint8 [H, W, 3], boxes float32 [K, 4]) -> float32 [K, D]``
        (e.g. two :class:`reclnet.runtime.camera.features.FeatureNetwork`).
    images : list of np.ndarray
        uint8 ``[H, W, 3]`` images.
    boxes : list of np.ndarray
        float32 ``[K, 4]`` per image.

    Returns
    -------
    dict
        ``min_cosine`` and ``mean_cosine`` (per box, between the two
        descriptors), ``max_rel_err`` and ``mean_rel_err`` (per box,
        ``||c - r|| / ||r||``), ``boxes`` (how many were compared).
    """
    cos: list[np.ndarray] = []
    rel: list[np.ndarray] = []
    for image, b in zip(images, boxes, strict=True):
        r = np.asarray(reference(image, b), np.float64)
        c = np.asarray(candidate(image, b), np.float64)
        if r.shape != c.shape:
            raise ValueError(f"feature_parity: shapes differ, {r.shape} vs {c.shape}")
        nr, nc = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
        denominator = np.maximum(nr * nc, 1e-30)
        cos.append((r * c).sum(axis=1) / denominator)
        rel.append(np.linalg.norm(c - r, axis=1) / np.maximum(nr, 1e-30))
    cosines, errors = np.concatenate(cos), np.concatenate(rel)
    if not len(cosines):
        raise ValueError("feature_parity: no boxes to compare")
    return {
        "min_cosine": float(cosines.min()),
        "mean_cosine": float(cosines.mean()),
        "max_rel_err": float(errors.max()),
        "mean_rel_err": float(errors.mean()),
        "boxes": len(cosines),
    }
