"""The camera tests' shared fixture: one tiny exported model with its feature networks.

Exporting (step model + two ResNet-18 feature networks) takes ~20 s on the
shared cores, so it is built once per session for every camera test module.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random two-modality model: step.onnx + features_{rgb,flow}.onnx."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reclnet.config import RecLNetConfig
    from reclnet.export.cli import main as export_main
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    config = RecLNetConfig(
        num_actions=3, modalities={"rgb": 32, "flow": 32}, projection_size=16, memory_size=8
    )
    ckpt = save_checkpoint(out / "model.pt", RecLNet(config).eval())
    assert export_main([str(ckpt), "--out", str(out), "--features"]) == 0
    return out
