"""Per-box feature networks (appearance and flow): torchvision backbone + RoIAlign + head to D.

Fast-RCNN style, as in the paper (section 4): one image, K person boxes, one
D-dimensional descriptor per box.

- ``resnet18`` (default, for CPUs): ResNet-18 ``conv1 .. layer3`` (stride 16) ->
  ``torchvision.ops.roi_align`` 14 x 14 -> ``layer4`` -> global average pool
  (512) -> linear head to D (the C4 head of Faster R-CNN ResNets).
- ``vgg16`` (paper-faithful): VGG16 conv5_3 (stride 16) -> RoIAlign 7 x 7 ->
  FC6 -> FC7 (4096), followed by the head to D (identity when D = 4096).

The image is float32 ``[1, 3, H, W]`` RGB in [0, 255]; ImageNet mean/std
normalization happens inside the graph (constants also in the sidecar).
``boxes`` are float32 ``[K, 4]`` x1, y1, x2, y2 in image pixels. K, H and W are
dynamic. Backbone weights load from a local torchvision ``state_dict`` file;
nothing is ever downloaded. Without a file the weights are random and the
sidecar says so (``"weights": "random"``); the head is random unless it is
the identity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reclnet.export.onnx_export import DEFAULT_OPSET, onnx_export
from reclnet.export.sidecar import write_sidecar

__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "FeatureNet", "export_features"]

BACKBONES = ("resnet18", "vgg16")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
_STRIDE = 16


class FeatureNet(nn.Module):
    """Backbone trunk + RoIAlign on boxes + box head + projection to ``out_dim``.

    Parameters
    ----------
    backbone : str
        ``"resnet18"`` or ``"vgg16"``.
    out_dim : int or None
        Descriptor size D; None keeps the backbone's (512 / 4096).
    weights : path-like, optional
        Local torchvision ``state_dict`` of the backbone (``.pth``); random otherwise.
    seed : int
        Seed of the random initialisation (backbone without weights, head).

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
    ) -> None:
        super().__init__()
        import torchvision

        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
        self.backbone = backbone
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
                self.trunk = nn.Sequential(
                    net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3
                )
                self.pool_size = 14
                self.box_head = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
                feat_dim = 512
            else:
                self.trunk = net.features[:-1]  # conv5_3 + ReLU, stride 16 (last max-pool dropped)
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
            spatial_scale=1.0 / _STRIDE,
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
    backbone, weights, seed
        See :class:`FeatureNet`.
    net : FeatureNet, optional
        An already built network (the other arguments then only describe it).

    Returns
    -------
    Path
        The ONNX file (sidecar ``kind="features"`` beside it).
    """
    from reclnet.runtime.artifacts import file_sha256
    from reclnet.runtime.camera.flow import FLOW_OFFSET, FLOW_SCALE

    net = net or FeatureNet(backbone, out_dim, weights=weights, seed=seed)
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
            "spatial_scale": 1.0 / _STRIDE,
            "sampling_ratio": 2,
            "aligned": True,
        },
    }
    if stream == "flow":
        preprocessing["flow_image"] = {
            "method": "OpenCV DIS, reclnet.runtime.flow_image",
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
            "weights": "random" if net.weights_file is None else "pretrained",
            "weights_file": None
            if net.weights_file is None
            else {"path": str(net.weights_file.resolve()), "sha256": file_sha256(net.weights_file)},
            "head": "identity" if isinstance(net.head, nn.Identity) else "linear (random init)",
            "out_dim": net.out_dim,
            "seed": seed,
        },
    )
    return path
