"""bf16 feature networks on OpenVINO (``--feature-precision bf16``) against ONNX Runtime fp32."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.features import (
    FeatureNetwork,
    feature_network_path,
    open_feature_network,
)

#: bf16 keeps 8 significant bits. Measured on the default frame head (layer2, 3 x 3 grid,
#: random weights, 384 x 288, 4 boxes) with OpenVINO 2026.4 in bf16 (AMX): cosine to fp32
#: 0.99999, max |difference| 0.5% of the largest feature; ONNX Runtime's static INT8 copy
#: 0.99992 and 1.5% on the same input. The bounds are far below those margins' complements.
MIN_COSINE = 0.999
MAX_RELATIVE = 0.05


def stream_args(tmp_path: Path, model_dir: Path) -> list[str]:
    """test_cli's 40-frame clip with one walker, events only (``_stream_args`` there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_camera_cli_tests", Path(__file__).with_name("test_cli.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module._stream_args(tmp_path, model_dir)
    return args[: args.index("--snapshot")] + ["--quiet"]


def _frame(seed: int, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image with edges (natural-image-like), and 3 person-sized boxes."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 12, w // 12, 3)).astype(np.float32)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    image[20:100, 30:60] = rng.uniform(0, 255, 3)
    boxes = np.array([[30, 20, 60, 100], [70, 10, 110, 110], [5, 40, 45, 118]], np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), boxes


@pytest.fixture(scope="module")
def openvino_installed() -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_bf16_features_match_fp32(model_dir: Path, openvino_installed, modality: str) -> None:
    with (
        open_feature_network(model_dir, modality, "bf16", threads=1) as bf16,
        FeatureNetwork(feature_network_path(model_dir, modality, "fp32"), threads=1) as fp32,
    ):
        assert bf16.backend == "openvino" and fp32.backend == "onnxruntime"
        # What ran is read back: bf16 where the CPU has it, fp32 elsewhere.
        assert bf16.precision in ("bf16", "fp32")
        assert bf16.path == fp32.path and bf16.dim == fp32.dim
        assert bf16.flow_preset == fp32.flow_preset
        for seed in range(3):
            image, boxes = _frame(seed)
            got, want = bf16(image, boxes), fp32(image, boxes)
            assert got.dtype == np.float32 and got.shape == want.shape == (3, fp32.dim)
            cosine = (
                np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
            )
            assert cosine.min() >= MIN_COSINE, cosine
            assert np.abs(got - want).max() <= MAX_RELATIVE * np.abs(want).max()


def test_openvino_runs_only_the_float_file(model_dir: Path, openvino_installed) -> None:
    int8 = feature_network_path(model_dir, "rgb", "int8")
    with pytest.raises(ValueError, match="OpenVINO bf16 runs the float32 network"):
        FeatureNetwork(int8, backend="openvino")
    with pytest.raises(ValueError, match="unknown feature backend 'tvm'"):
        FeatureNetwork(int8, backend="tvm")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        feature_network_path(model_dir, "rgb", "fp8")


def test_stream_with_bf16_features_says_what_ran(
    model_dir: Path, tmp_path: Path, capsys, openvino_installed
) -> None:
    from reclnet.runtime.camera.cli import main as stream_main

    status = stream_main([*stream_args(tmp_path, model_dir), "--feature-precision", "bf16"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "features_rgb.onnx (openvino " in out and "features_flow.onnx (openvino " in out


def test_bf16_without_openvino_is_one_clear_line(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from reclnet.runtime.camera.cli import main as stream_main

    monkeypatch.setitem(sys.modules, "openvino", None)
    status = stream_main([*stream_args(tmp_path, model_dir), "--feature-precision", "bf16"])
    err = capsys.readouterr().err
    assert status != 0
    assert "--feature-precision bf16 runs the feature networks on OpenVINO" in err
    assert "pip install 'reclnet[openvino]'" in err
