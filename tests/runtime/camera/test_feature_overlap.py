"""The image networks beside the flow: same features as one thread, the threads they run on."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.features import FeatureNetwork, frame_features
from reclnet.runtime.camera.flow import flow_image
from reclnet.runtime.camera.pipeline import FrameClock

cv2 = pytest.importorskip("cv2")

W, H = 96, 72


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    background = rng.integers(0, 200, (H, W, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        image = background.copy()
        image[10:60, 4 + 3 * i : 24 + 3 * i] = (220, 120, 30)
        out.append(image)
    return out


def _run(networks, executor, clock=None) -> list[dict[str, np.ndarray]]:
    sizes = {m: networks[m].dim for m in networks}
    boxes = [
        np.array([[4 + 3 * i, 10, 24 + 3 * i, 60], [40, 5, 90, 70]], np.float32)
        if i != 2
        else np.zeros((0, 4), np.float32)  # a frame without people
        for i in range(6)
    ]
    previous, out = None, []
    for image, b in zip(_frames(6), boxes, strict=True):
        feats, previous = frame_features(
            image,
            b,
            networks,
            sizes=sizes,
            previous=previous,
            flow=flow_image,
            scale=0.5,
            timer=clock if clock is not None else FrameClock(),
            executor=executor,
        )
        out.append(feats)
    return out


def test_overlapped_features_equal_one_thread(networks) -> None:
    alone = _run(networks, None)
    with ThreadPoolExecutor(1) as pool:
        clock = FrameClock()
        overlapped = _run(networks, pool, clock)
    assert clock.seconds["features"] > 0 and clock.seconds["flow"] > 0
    for a, b in zip(alone, overlapped, strict=True):
        assert list(a) == list(b) == ["rgb", "flow"]  # the modality order
        for m in a:
            # The same calls on the same inputs: the same numbers, not close ones.
            np.testing.assert_array_equal(a[m], b[m])
            assert b[m].dtype == np.float32 and b[m].flags.c_contiguous
    assert alone[2]["rgb"].shape == (0, networks["rgb"].dim)


class _Net:
    """A stand-in network recording the thread it ran on; ``gate`` is set when it starts."""

    def __init__(self, dim: int, fail: bool = False) -> None:
        self.dim, self.fail = dim, fail
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.finished = threading.Event()

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        self.gate.set()
        try:
            if self.fail:
                raise RuntimeError("network failed")
            return np.full((len(boxes), self.dim), float(image.mean()), np.float32)
        finally:
            self.finished.set()


def test_image_network_runs_while_the_flow_is_computed() -> None:
    rgb, flow_net = _Net(4), _Net(4)
    seen: list[bool] = []

    def flow(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        # Returns at once when the rgb network has started beside it; the timeout
        # only bounds a failing run (one where it does not).
        seen.append(rgb.gate.wait(timeout=30))
        return cur.copy()

    image = _frames(1)[0]
    boxes = np.array([[0, 0, 20, 20]], np.float32)
    with ThreadPoolExecutor(1, thread_name_prefix="overlap") as pool:
        feats, _ = frame_features(
            image,
            boxes,
            {"rgb": rgb, "flow": flow_net},
            sizes={"rgb": 4, "flow": 4},
            flow=flow,
            executor=pool,
        )
    assert seen == [True]
    assert rgb.threads[0].startswith("overlap") and flow_net.threads == [
        threading.current_thread().name
    ]
    assert list(feats) == ["rgb", "flow"]


def test_errors_are_raised_after_every_network_ended() -> None:
    image = _frames(1)[0]
    boxes = np.array([[0, 0, 20, 20]], np.float32)
    with ThreadPoolExecutor(1) as pool:
        failing = _Net(4, fail=True)
        with pytest.raises(RuntimeError, match="network failed"):
            frame_features(
                image,
                boxes,
                {"rgb": failing, "flow": _Net(4)},
                sizes={"rgb": 4, "flow": 4},
                flow=lambda a, b: b,
                executor=pool,
            )
        rgb = _Net(4)

        def broken_flow(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
            raise ValueError("flow failed")

        with pytest.raises(ValueError, match="flow failed"):
            frame_features(
                image,
                boxes,
                {"rgb": rgb, "flow": _Net(4)},
                sizes={"rgb": 4, "flow": 4},
                flow=broken_flow,
                executor=pool,
            )
        assert rgb.finished.is_set()  # waited for, not left running


def _preprocess_definition(net: FeatureNetwork, image: np.ndarray) -> np.ndarray:
    """The input straight from the sidecar's rules, one step at a time."""
    x = image[:, :, ::-1] if net.flip else image
    x = x.transpose(2, 0, 1).astype(np.float32)
    x = x * np.float32(net.scale) + np.float32(net.offset)
    if net.normalize:
        x = (x - net.mean) / net.std
    return np.ascontiguousarray(x[None])


@pytest.mark.parametrize(
    ("flip", "scale", "offset", "normalize"),
    [(True, 1.0, 0.0, False), (False, 1.0, 0.0, False), (True, 2.0 / 255.0, -1.0, True)],
)
def test_preprocess_matches_definition(model_dir: Path, flip, scale, offset, normalize) -> None:
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with FeatureNetwork(model_dir / "features_rgb.onnx", threads=1) as net:
        net.flip, net.scale, net.offset, net.normalize = flip, scale, offset, normalize
        net.mean = np.array([0.4, 0.5, 0.6], np.float32).reshape(3, 1, 1)
        net.std = np.array([0.2, 0.25, 0.3], np.float32).reshape(3, 1, 1)
        got = net.preprocess(image)
        want = _preprocess_definition(net, image)
    assert got.dtype == np.float32 and got.shape == (1, 3, H, W) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
