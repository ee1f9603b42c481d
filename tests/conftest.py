"""Fixtures shared by the test files: the tiny model, its exported step.onnx, a model with feature networks.

The helpers (configuration, inputs, tracks) live in ``tests/helpers.py``; with
``--import-mode=importlib`` the tests folder is not on ``sys.path``, so this file
loads it by path and registers it as ``reclnet_test_helpers`` (pytest imports a
folder's conftest before the test files under it), and test files write
``from reclnet_test_helpers import CONFIG, make_tracks``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HELPERS_PATH = Path(__file__).resolve().with_name("helpers.py")


def _load_helpers() -> ModuleType:
    name = "reclnet_test_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HELPERS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


helpers = _load_helpers()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The tiny model (``helpers.tiny_model()``) and its step.onnx, exported once per session.

    The sidecar stores ``helpers.EXPORT_POSTPROCESS`` (window 7, threshold 0.3).
    """
    pytest.importorskip("torch")
    from reclnet.export.onnx_export import export_step

    model = helpers.tiny_model()
    path = tmp_path_factory.mktemp("tiny_step") / "step.onnx"
    export_step(model, path, postprocess=helpers.EXPORT_POSTPROCESS)
    return model, path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random two-modality model: step.onnx + features_{rgb,flow}.onnx.

    Exporting the two ResNet-18 feature networks takes ~20 s on the shared cores, so
    the camera and serve tests share this one export (they only read it).
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reclnet.config import RecLNetConfig
    from reclnet.export.cli import main as export_main
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model_with_features")
    config = RecLNetConfig(
        num_actions=3, modalities={"rgb": 32, "flow": 32}, projection_size=16, memory_size=8
    )
    ckpt = save_checkpoint(out / "model.pt", RecLNet(config).eval())
    assert export_main([str(ckpt), "--out", str(out), "--features"]) == 0
    return out


@pytest.fixture(scope="module")
def networks(model_dir: Path):
    """``model_dir``'s two feature networks, one ONNX Runtime thread each, closed after the module."""
    from reclnet.runtime.camera.features import FeatureNetwork

    with (
        FeatureNetwork(model_dir / "features_rgb.onnx", threads=1) as rgb,
        FeatureNetwork(model_dir / "features_flow.onnx", threads=1) as flow,
    ):
        yield {"rgb": rgb, "flow": flow}
