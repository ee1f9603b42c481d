"""The flow stream's input image: OpenCV DIS optical flow encoded as a 3-channel uint8 image.

Following the paper (section 4, after Gkioxari & Malik), a flow map is stored
as an image whose channels are the x displacement, the y displacement and the
flow magnitude, each scaled and clipped to [0, 255]: ``x, y -> 128 + 16 * d``
and ``magnitude -> 16 * |d|`` (pixels per frame). OpenCV is imported lazily so
that importing this module needs numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_DIS_PRESET",
    "DIS_PRESETS",
    "FLOW_OFFSET",
    "FLOW_SCALE",
    "LEGACY_DIS_PRESET",
    "encode_flow",
    "flow_image",
]

FLOW_SCALE = 16.0  # image levels per pixel of displacement
FLOW_OFFSET = 128.0  # image level of zero displacement for the x and y channels
#: OpenCV DIS presets, fastest first.
DIS_PRESETS = ("ultrafast", "fast", "medium")
#: The preset a flow network is exported with (recorded in its sidecar, which
#: ``reclnet stream`` / ``reclnet extract`` read, so that training and streaming use
#: the same flow). ``medium``: on the built-in demo (``make demo``) video-mAP@0.5 66.1
#: against 38.3 with ``fast`` (paired on the smaller pixel pipeline of
#: tests/test_demo_learns.py, render seeds 0 / 1 / 2: 0.47 / 0.45 / 0.60 against
#: 0.31 / 0.53 / 0.48). ``fast`` costs 5.4 ms a frame at 384 x 288 on one core against
#: 17.9 (``reclnet export --flow-preset fast`` where speed matters more; docs/camera.md).
DEFAULT_DIS_PRESET = "medium"
#: The preset of flow networks whose sidecar does not name one (exported before
#: 2026-12-01, when ``medium`` was the only flow).
LEGACY_DIS_PRESET = "medium"


def encode_flow(flow: np.ndarray) -> np.ndarray:
    """Encode a flow field as the paper's 3-channel flow image.

    Parameters
    ----------
    flow : np.ndarray
        float32 ``[H, W, 2]``, x and y displacement in pixels.

    Returns
    -------
    np.ndarray
        uint8 ``[H, W, 3]``: ``clip(128 + 16 dx)``, ``clip(128 + 16 dy)``,
        ``clip(16 sqrt(dx^2 + dy^2))``, rounded to the nearest level.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got shape {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"flow must be floating point, got {flow.dtype}")
    if not np.isfinite(flow).all():
        raise ValueError("flow contains NaN or infinite values")
    flow = flow.astype(np.float32, copy=False)
    # The same float32 operations as the definition, on contiguous planes: the
    # channels are interleaved only at the end, as uint8 (half the time of working
    # in a strided float32 [H, W, 3] buffer, and the same values).
    xy = np.multiply(flow, np.float32(FLOW_SCALE))
    xy += np.float32(FLOW_OFFSET)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    magnitude *= np.float32(FLOW_SCALE)
    for plane in (xy, magnitude):
        np.clip(plane, 0.0, 255.0, out=plane)
        np.rint(plane, out=plane)
    out = np.empty(flow.shape[:2] + (3,), np.uint8)
    out[..., :2] = xy
    out[..., 2] = magnitude
    return out


def _gray(image: np.ndarray, name: str) -> np.ndarray:
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
    raise ValueError(f"{name} must be [H, W] gray or [H, W, 3] BGR, got shape {image.shape}")


def flow_image(
    prev: np.ndarray, cur: np.ndarray, *, preset: str = DEFAULT_DIS_PRESET
) -> np.ndarray:
    """Optical flow from ``prev`` to ``cur`` (OpenCV DIS) as the paper's flow image.

    Parameters
    ----------
    prev, cur : np.ndarray
        uint8 frames of the same size, ``[H, W, 3]`` BGR (OpenCV order) or ``[H, W]`` gray.
    preset : str
        DIS preset, one of :data:`DIS_PRESETS` (default :data:`DEFAULT_DIS_PRESET`);
        a flow network's sidecar names the one it was exported with
        (``FeatureNetwork.flow_preset``).

    Returns
    -------
    np.ndarray
        uint8 ``[H, W, 3]``, see :func:`encode_flow`.
    """
    import cv2

    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(DIS_PRESETS)}")
    a, b = _gray(prev, "prev"), _gray(cur, "cur")
    if a.shape != b.shape:
        raise ValueError(f"prev and cur differ in size: {a.shape} vs {b.shape}")
    if min(a.shape) < 8:
        raise ValueError(f"frames must be at least 8 x 8 pixels, got {a.shape}")
    # DIS_PRESETS names OpenCV's DISOPTICAL_FLOW_PRESET_* constants.
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    flow = dis.calc(a, b, None)
    return encode_flow(flow)
