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
    assert art.preprocessing["channel_order"] == "x, y, magnitude"


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(11)
    reference = torchvision.models.resnet18(weights=None)
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    net = FeatureNet("resnet18", 512, weights=weights, seed=0)
    assert net.weights_file == weights
    assert isinstance(net.head, torch.nn.Identity)  # D equals the backbone's 512
    torch.testing.assert_close(net.trunk[0].weight, reference.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(net.box_head[0][0].conv1.weight, reference.layer4[0].conv1.weight)
    random_net = FeatureNet("resnet18", 512, seed=0)
    assert random_net.weights_file is None
    assert not torch.equal(random_net.trunk[0].weight, reference.conv1.weight)
    bad = tmp_path / "vgg_as_resnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(RuntimeError, match="state_dict"):
        FeatureNet("resnet18", 16, weights=bad)
    with pytest.raises(ValueError, match="unknown backbone"):
        FeatureNet("alexnet", 16)


def test_pytorch_net_pools_each_box_independently() -> None:
    net = FeatureNet("resnet18", 32, seed=1)
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
