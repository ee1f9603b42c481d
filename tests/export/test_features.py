"""Feature networks (backbone + RoIAlign + head): ONNX Runtime vs PyTorch, weights, sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torchvision")

from reclnet.export.features import FeatureNet, export_features  # noqa: E402
from reclnet.runtime.artifacts import load_artifact  # noqa: E402
from reclnet.runtime.camera.flow import DEFAULT_DIS_PRESET  # noqa: E402


def _boxes(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    x1, y1 = rng.uniform(0, w * 0.6, k), rng.uniform(0, h * 0.6, k)
    bw, bh = rng.uniform(6, w * 0.4, k), rng.uniform(6, h * 0.4, k)
    return np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureNet, Path]:
    net = FeatureNet("resnet18", 48, seed=3)
    path = export_features(
        tmp_path_factory.mktemp("feat") / "features_flow.onnx", stream="flow", out_dim=48, net=net
    )
    return net, path


@pytest.mark.slow
def test_onnx_matches_pytorch_over_sizes_and_box_counts(exported: tuple[FeatureNet, Path]) -> None:
    net, path = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for h, w, k in [(96, 128, 3), (77, 141, 1), (160, 224, 9)]:
        image = rng.uniform(0, 255, (1, 3, h, w)).astype(np.float32)
        boxes = _boxes(rng, h, w, k)
        (got,) = sess.run(None, {"image": image, "boxes": boxes})
        with torch.no_grad():
            ref = net(torch.from_numpy(image), torch.from_numpy(boxes)).numpy()
        assert got.shape == (k, 48)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.slow
def test_sidecar_of_feature_network(exported: tuple[FeatureNet, Path]) -> None:
    _, path = exported
    art = load_artifact(path, kind="features")
    assert art.config is None
    assert art.input_names == ["image", "boxes"] and art.output_names == ["features"]
    assert art.input("image").shape == (1, 3, "H", "W")
    assert art.input("boxes").shape == ("K", 4)
    assert art.outputs[0].shape == ("K", 48)
    meta = art.metadata
    assert meta["weights"] == "random" and meta["weights_file"] is None
    assert meta["backbone"] == "resnet18"
    assert art.preprocessing["flow_image"]["scale"] == 16.0
    assert art.preprocessing["flow_image"]["dis_preset"] == DEFAULT_DIS_PRESET
    assert art.preprocessing["channel_order"] == "x, y, magnitude"


def _sidecar_with(path: Path, tmp_path: Path, edit) -> Path:
    """A copy of a feature network whose sidecar's preprocessing ``edit`` changed."""
    import json
    import shutil

    from reclnet.runtime.artifacts import sidecar_path

    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / path.name
    shutil.copy(path, out)
    meta = json.loads(sidecar_path(path).read_text())
    edit(meta["preprocessing"])
    sidecar_path(out).write_text(json.dumps(meta))
    return out


@pytest.mark.slow
def test_the_flow_networks_dis_preset_is_what_stream_and_extract_compute(
    exported: tuple[FeatureNet, Path], tmp_path: Path
) -> None:
    from reclnet.runtime.camera.features import FeatureNetwork, flow_for
    from reclnet.runtime.camera.flow import DIS_PRESETS, LEGACY_DIS_PRESET, flow_image

    _, path = exported
    rng = np.random.default_rng(5)
    prev = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cur = np.roll(prev, 2, axis=1)
    with FeatureNetwork(path) as net:
        assert net.flow_preset == DEFAULT_DIS_PRESET
        np.testing.assert_array_equal(
            flow_for(net)(prev, cur), flow_image(prev, cur, preset=DEFAULT_DIS_PRESET)
        )
    # A sidecar from before the preset was recorded: medium, what those were made with.
    legacy = _sidecar_with(path, tmp_path, lambda pre: pre["flow_image"].pop("dis_preset"))
    with FeatureNetwork(legacy) as net:
        assert net.flow_preset == LEGACY_DIS_PRESET == "medium"
        np.testing.assert_array_equal(
            flow_for(net)(prev, cur), flow_image(prev, cur, preset="medium")
        )
    assert set(DIS_PRESETS) == {"ultrafast", "fast", "medium"}
    bad = _sidecar_with(
        path, tmp_path / "bad", lambda pre: pre["flow_image"].update(dis_preset="x")
    )
    with pytest.raises(ValueError, match=r"names DIS preset 'x', not one of"):
        FeatureNetwork(bad)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(11)
    reference = torchvision.models.resnet18(weights=None)
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    net = FeatureNet("resnet18", 512, weights=weights, seed=0, head="box")
    assert net.weights_file == weights
    assert isinstance(net.head, torch.nn.Identity)  # D equals the backbone's 512
    torch.testing.assert_close(net.trunk[0].weight, reference.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(net.box_head[0][0].conv1.weight, reference.layer4[0].conv1.weight)
    frame = FeatureNet("resnet18", 512, weights=weights, seed=0, stage="layer4", grid=1)
    assert frame.head_kind == "frame" and frame.stride == 32
    torch.testing.assert_close(frame.trunk[7][0].conv1.weight, reference.layer4[0].conv1.weight)
    default = FeatureNet("resnet18", None, weights=weights, seed=0)  # layer2, 3 x 3 grid
    assert (default.stage, default.grid, default.stride, default.out_dim) == ("layer2", 3, 8, 1152)
    assert len(default.trunk) == 6  # conv1, bn1, relu, maxpool, layer1, layer2
    torch.testing.assert_close(default.trunk[5][0].conv1.weight, reference.layer2[0].conv1.weight)
    random_net = FeatureNet("resnet18", 512, seed=0)
    assert random_net.weights_file is None
    assert not torch.equal(random_net.trunk[0].weight, reference.conv1.weight)
    bad = tmp_path / "vgg_as_resnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(RuntimeError, match="state_dict"):
        FeatureNet("resnet18", 16, weights=bad)
    with pytest.raises(ValueError, match="unknown backbone"):
        FeatureNet("alexnet", 16)
    with pytest.raises(ValueError, match="unknown head"):
        FeatureNet("resnet18", 16, head="roi")
    with pytest.raises(ValueError, match="per-box head"):
        FeatureNet("vgg16", 16, head="frame")
    with pytest.raises(ValueError, match="unknown stage 'layer5'"):
        FeatureNet("resnet18", 16, stage="layer5")
    with pytest.raises(ValueError, match="grid must be an int in 1..7"):
        FeatureNet("resnet18", 16, grid=0)


@pytest.mark.parametrize(
    ("stage", "grid"), [("layer2", 3), ("layer3", 2), ("layer4", 1), ("layer2", 2)]
)
def test_frame_head_grid_is_the_cell_average_of_roi_align(stage: str, grid: int) -> None:
    """Twin: RoIAlign on the stage's map, then a plain mean over each of the grid's cells."""
    from torchvision.ops import roi_align

    net = FeatureNet("resnet18", None, seed=6, stage=stage, grid=grid)
    channels = {"layer2": 128, "layer3": 256, "layer4": 512}[stage]
    assert net.out_dim == channels * grid * grid
    rng = np.random.default_rng(8)
    image = torch.from_numpy(rng.uniform(0, 255, (1, 3, 96, 128)).astype(np.float32))
    boxes = torch.from_numpy(_boxes(rng, 96, 128, 3))
    with torch.no_grad():
        got = net(image, boxes)
        fmap = net.trunk((image - net.mean) / net.std)
        rois = torch.cat([torch.zeros(3, 1), boxes], dim=1)
        bins = roi_align(fmap, rois, net.pool_size, 1.0 / net.stride, 2, True)
    k, c, n, _ = bins.shape
    cell = n // grid
    want = bins.numpy().reshape(k, c, grid, cell, grid, cell).mean(axis=(3, 5)).reshape(k, -1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["frame", "box"])
def test_pytorch_net_pools_each_box_independently(head: str) -> None:
    net = FeatureNet("resnet18", 32, seed=1, head=head)
    rng = np.random.default_rng(2)
    image = torch.from_numpy(rng.uniform(0, 255, (1, 3, 64, 64)).astype(np.float32))
    boxes = torch.from_numpy(_boxes(rng, 64, 64, 4))
    with torch.no_grad():
        together = net(image, boxes)
        alone = torch.cat([net(image, boxes[i : i + 1]) for i in range(4)])
        # a box is a pooling region: the result is invariant to the others and changes with it
        moved = net(image, boxes[:1] + 20.0)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(moved, together[:1])


@pytest.mark.slow
def test_vgg16_fc7_features() -> None:
    net = FeatureNet("vgg16", None, seed=0)
    assert net.out_dim == 4096 and isinstance(net.head, torch.nn.Identity)
    image = torch.rand(1, 3, 64, 80) * 255
    boxes = torch.tensor([[2.0, 3.0, 50.0, 60.0], [10.0, 10.0, 30.0, 40.0]])
    with torch.no_grad():
        out = net(image, boxes)
    assert out.shape == (2, 4096) and (out >= 0).all()  # FC7 after its ReLU


@pytest.mark.slow
def test_feature_graph_is_tensorrt_compatible(exported: tuple[FeatureNet, Path]) -> None:
    from reclnet.export.tensorrt_check import tensorrt_problems

    # Only K (boxes), H and W (image size) are dynamic; every operator is in the parser's list.
    assert tensorrt_problems(exported[1]) == []


def test_the_two_heads_are_two_readings_of_one_network() -> None:
    """Same weights (same state_dict), the frame head pools after layer4, the box head before."""
    frame = FeatureNet("resnet18", 32, seed=4, stage="layer4", grid=1)
    box = FeatureNet("resnet18", 32, seed=4, head="box")
    a, b = frame.state_dict(), box.state_dict()
    assert len(a) == len(b)
    for (ka, va), vb in zip(a.items(), b.values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=ka)
    # The frame head's descriptor of a box is the average of layer4's feature map over
    # the box (RoIAlign then mean): for a box on the whole image it is the global pool.
    image = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        fmap = frame.trunk((image - frame.mean) / frame.std)
        whole = frame(image, torch.tensor([[0.0, 0.0, 96.0, 64.0]]))
        pooled = frame.head(fmap.mean(dim=(2, 3)))
    # RoIAlign samples bilinearly (not a plain mean of cells): close, not equal.
    assert torch.nn.functional.cosine_similarity(whole, pooled).item() > 0.98


#: The bound this project states for the INT8 feature networks against float32, per box:
#: cosine similarity >= 0.995 and relative error ||f_int8 - f_fp32|| / ||f_fp32|| <= 0.10.
#: (Measured on vtest.avi with the paper-sized ResNet-18 frame heads and synthetic
#: calibration: min cosine 0.9996, max relative error 0.031.)
MIN_COSINE, MAX_REL_ERR = 0.995, 0.10


def _held_out(stream: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from reclnet.export.features import calibration_images

    images = calibration_images(stream, count=6, size=(144, 192), seed=99)
    rng = np.random.default_rng(7)
    return images, [_boxes(rng, 144, 192, 3) for _ in images]


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_int8_features_within_the_stated_bound(tmp_path: Path, stream: str) -> None:
    from reclnet.export.features import feature_parity
    from reclnet.runtime.camera.features import FeatureNetwork, feature_network_path

    path = export_features(tmp_path / f"features_{stream}.onnx", stream=stream, out_dim=64)
    int8_path = feature_network_path(tmp_path, stream)  # "auto" takes the INT8 copy
    assert int8_path.name == f"features_{stream}.int8.onnx"
    art = load_artifact(int8_path, kind="features")
    assert art.metadata["precision"] == "int8" and art.metadata["box_head"] == "frame"
    assert art.metadata["quantization"]["float_sha256"] == load_artifact(path).sha256
    with FeatureNetwork(path) as ref, FeatureNetwork(int8_path) as q:
        assert (ref.precision, q.precision, ref.head, q.head) == ("fp32", "int8", "frame", "frame")
        images, boxes = _held_out(stream)
        parity = feature_parity(ref, q, images, boxes)
    assert parity["boxes"] == 18
    assert parity["min_cosine"] >= MIN_COSINE, parity
    assert parity["max_rel_err"] <= MAX_REL_ERR, parity


@pytest.mark.slow
@pytest.mark.data
def test_int8_features_within_the_bound_on_real_frames(tmp_path: Path) -> None:
    import cv2

    from reclnet.export.features import feature_parity
    from reclnet.paths import vtest_video
    from reclnet.runtime.camera.features import FeatureNetwork
    from reclnet.runtime.camera.source import FileSource

    video = vtest_video()
    if video is None:
        pytest.skip("vtest.avi not found (see the data README)")
    path = export_features(tmp_path / "features_rgb.onnx", stream="rgb", out_dim=256)
    images = []
    with FileSource(video) as source:
        for frame in source:
            if frame.index % 40 == 0:
                images.append(cv2.resize(frame.image, (384, 288), interpolation=cv2.INTER_AREA))
            if len(images) == 5:
                break
    rng = np.random.default_rng(3)
    boxes = [_boxes(rng, 288, 384, 4) for _ in images]
    with (
        FeatureNetwork(path) as ref,
        FeatureNetwork(path.with_suffix(".int8.onnx")) as q,
    ):
        parity = feature_parity(ref, q, images, boxes)
    assert parity["min_cosine"] >= MIN_COSINE and parity["max_rel_err"] <= MAX_REL_ERR, parity


def test_feature_parity_measures_what_it_says() -> None:
    from reclnet.export.features import feature_parity

    ref = lambda image, boxes: np.tile([[3.0, 4.0]], (len(boxes), 1))  # noqa: E731
    scaled = lambda image, boxes: 2 * ref(image, boxes)  # noqa: E731
    image, boxes = np.zeros((4, 4, 3), np.uint8), [np.zeros((2, 4), np.float32)]
    p = feature_parity(ref, scaled, [image], boxes)
    assert p["min_cosine"] == pytest.approx(1.0) and p["max_rel_err"] == pytest.approx(1.0)
    ortho = lambda image, boxes: np.tile([[-4.0, 3.0]], (len(boxes), 1))  # noqa: E731
    p = feature_parity(ref, ortho, [image], boxes)
    assert p["min_cosine"] == pytest.approx(0.0, abs=1e-12)
    assert p["max_rel_err"] == pytest.approx(np.sqrt(2))


def test_feature_network_path(tmp_path: Path) -> None:
    from reclnet.runtime.camera.features import feature_network_path

    assert feature_network_path(tmp_path, "rgb").name == "features_rgb.onnx"  # no INT8 copy
    assert feature_network_path(tmp_path, "rgb", "int8").name == "features_rgb.int8.onnx"
    (tmp_path / "features_rgb.int8.onnx").write_bytes(b"")
    assert feature_network_path(tmp_path, "rgb").name == "features_rgb.int8.onnx"
    assert feature_network_path(tmp_path, "rgb", "fp32").name == "features_rgb.onnx"
    with pytest.raises(ValueError, match="unknown precision"):
        feature_network_path(tmp_path, "rgb", "fp16")


def test_flow_preset_options_are_checked_before_any_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flow_preset is for the flow stream, not 'rgb'"):
        export_features(tmp_path / "features_rgb.onnx", stream="rgb", flow_preset="fast")
    with pytest.raises(ValueError, match=r"unknown DIS preset 'slow'; use one of"):
        export_features(tmp_path / "features_flow.onnx", stream="flow", flow_preset="slow")
    assert not list(tmp_path.iterdir())
