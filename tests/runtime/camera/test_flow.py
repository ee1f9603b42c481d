"""reclnet.runtime.flow_image: OpenCV DIS flow encoded as the paper's 3-channel flow image."""

from __future__ import annotations

import numpy as np
import pytest

from reclnet.runtime.camera.flow import FLOW_OFFSET, FLOW_SCALE, encode_flow

cv2 = pytest.importorskip("cv2")


def _encode_slow(flow: np.ndarray) -> np.ndarray:
    """Pixel by pixel, straight from the definition."""
    h, w, _ = flow.shape
    out = np.zeros((h, w, 3), np.uint8)
    for i in range(h):
        for j in range(w):
            dx, dy = float(flow[i, j, 0]), float(flow[i, j, 1])
            vals = [
                FLOW_OFFSET + FLOW_SCALE * dx,
                FLOW_OFFSET + FLOW_SCALE * dy,
                FLOW_SCALE * (dx * dx + dy * dy) ** 0.5,
            ]
            out[i, j] = [int(np.rint(min(max(v, 0.0), 255.0))) for v in vals]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_matches_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    flow = (rng.normal(size=(9, 11, 2)) * rng.choice([0.5, 4.0, 20.0])).astype(np.float32)
    flow[0, 0] = [100.0, -100.0]  # clipped on both sides
    flow[0, 1] = [0.0, 0.0]
    got = encode_flow(flow)
    assert got.dtype == np.uint8 and got.shape == (9, 11, 3)
    np.testing.assert_array_equal(got, _encode_slow(flow))
    assert list(got[0, 0]) == [255, 0, 255] and list(got[0, 1]) == [128, 128, 0]


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, w // 8), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (5, 5), 1.0)


@pytest.mark.parametrize(("dx", "dy"), [(3, -2), (0, 0), (-4, 5)])
def test_flow_image_recovers_a_translation(dx: int, dy: int) -> None:
    from reclnet.runtime import flow_image

    base = _texture(160, 200, seed=abs(dx * 7 + dy))
    prev = base
    cur = np.roll(base, shift=(dy, dx), axis=(0, 1))  # content moves by (dx, dy)
    img = flow_image(np.dstack([prev] * 3), np.dstack([cur] * 3))
    assert img.dtype == np.uint8 and img.shape == (160, 200, 3)
    inner = img[20:-20, 20:-20].astype(np.float64)  # away from the wrapped border
    est_dx = (np.median(inner[..., 0]) - FLOW_OFFSET) / FLOW_SCALE
    est_dy = (np.median(inner[..., 1]) - FLOW_OFFSET) / FLOW_SCALE
    assert abs(est_dx - dx) < 0.25 and abs(est_dy - dy) < 0.25
    expected_mag = FLOW_SCALE * np.hypot(dx, dy)
    assert abs(np.median(inner[..., 2]) - expected_mag) <= 0.25 * FLOW_SCALE + 1
    # gray input gives the same flow as 3 equal BGR channels
    np.testing.assert_array_equal(flow_image(prev, cur), img)


def test_bad_input_is_refused() -> None:
    from reclnet.runtime.camera.flow import flow_image

    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        flow_image(a, np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        flow_image(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="gray or"):
        flow_image(np.zeros((32, 32, 4), np.uint8), a)
    with pytest.raises(ValueError, match="unknown DIS preset"):
        flow_image(a, a, preset="slowest")
    with pytest.raises(ValueError, match="NaN"):
        encode_flow(np.full((2, 2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        encode_flow(np.zeros((2, 2, 3), np.float32))
