"""Feature networks on OpenVINO: the default backend where installed (INT8 and fp32 files), and
bf16 (``--feature-precision bf16``), against ONNX Runtime on the same files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.features import (
    FeatureNetwork,
    feature_backend,
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


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An rgb frame-head network (64-d) with its static INT8 (QDQ) copy."""
    pytest.importorskip("torch")
    from reclnet.export.features import export_features

    out = tmp_path_factory.mktemp("int8_features")
    export_features(out / "features_rgb.onnx", stream="rgb", out_dim=64)
    return out


@pytest.mark.slow
def test_int8_copy_on_openvino_matches_onnxruntime(int8_dir: Path, openvino_installed) -> None:
    """The same QDQ file on both backends: OpenVINO's INT8 kernels against MLAS's.

    Each must be within an INT8 bound of the float network (cosine >= 0.99, relative
    error <= 10%; tests/export/test_features.py holds ONNX Runtime's copy to 0.995 on its
    own inputs). Not against each other: on this Xeon (VNNI / AMX) they agree to a cosine
    above 0.9999, but the two libraries' INT8 kernels round differently on a CPU without
    VNNI (16-bit intermediate sums on AVX2), so only the bound to fp32 holds on both kinds.
    """
    path = feature_network_path(int8_dir, "rgb", "int8")
    with (
        open_feature_network(int8_dir, "rgb", "int8", backend="openvino", threads=1) as ov,
        FeatureNetwork(path, threads=1) as ort,
        FeatureNetwork(feature_network_path(int8_dir, "rgb", "fp32"), threads=1) as fp32,
    ):
        assert (ov.backend, ov.precision, ov.path) == ("openvino", "int8", path)
        assert ov._openvino.compiled.get_property("ENABLE_CPU_PINNING") is False
        assert (ort.backend, ort.precision) == ("onnxruntime", "int8")
        for seed in range(3):
            image, boxes = _frame(seed)
            got, want, ref = ov(image, boxes), ort(image, boxes), fp32(image, boxes)
            assert got.dtype == np.float32 and got.shape == want.shape == (3, 64)
            for out in (got, want):
                assert _cosine(out, ref).min() >= 0.99
                assert np.abs(out - ref).max() <= 0.10 * np.abs(ref).max()


def test_auto_backend_is_openvino_where_it_imports(monkeypatch) -> None:
    expected = "onnxruntime"
    try:
        import openvino  # noqa: F401

        expected = "openvino"
    except ImportError:
        pass
    assert feature_backend() == expected
    assert feature_backend("onnxruntime") == "onnxruntime"
    assert feature_backend("auto", "bf16") == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)  # not importable
    assert feature_backend() == "onnxruntime"
    with pytest.raises(ValueError, match="bf16 feature networks run on OpenVINO"):
        feature_backend("onnxruntime", "bf16")
    with pytest.raises(ValueError, match="unknown feature backend 'tvm'"):
        feature_backend("tvm")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        feature_backend("auto", "fp8")


def test_openvino_bf16_runs_only_the_float_file(int8_dir: Path, openvino_installed) -> None:
    int8 = feature_network_path(int8_dir, "rgb", "int8")
    with pytest.raises(ValueError, match="OpenVINO bf16 runs the float32 network"):
        FeatureNetwork(int8, backend="openvino", bf16=True)
    with pytest.raises(ValueError, match="bf16 feature networks run on OpenVINO"):
        FeatureNetwork(int8, bf16=True)
    with pytest.raises(ValueError, match="unknown feature backend 'tvm'"):
        FeatureNetwork(int8, backend="tvm")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        feature_network_path(int8_dir, "rgb", "fp8")


def test_stream_says_which_backend_ran(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    from reclnet.runtime.camera.cli import main as stream_main

    args = stream_args(tmp_path, model_dir)
    assert stream_main([*args, "--feature-backend", "onnxruntime"]) == 0
    assert re.search(r"features_rgb\S* \(onnxruntime (int8|fp32)\)", capsys.readouterr().out)
    monkeypatch.setitem(sys.modules, "openvino", None)  # auto without OpenVINO: ONNX Runtime
    assert stream_main(args) == 0
    assert re.search(r"features_flow\S* \(onnxruntime (int8|fp32)\)", capsys.readouterr().out)
    status = stream_main([*args, "--feature-backend", "openvino"])
    err = capsys.readouterr().err
    assert status != 0 and "--feature-backend openvino runs the feature networks on OpenVINO" in err
    status = stream_main([*args, "--feature-backend", "onnxruntime", "--feature-precision", "bf16"])
    assert status != 0
    assert "bf16 feature networks run on OpenVINO, not ONNX Runtime" in capsys.readouterr().err


def test_stream_with_openvino_features_matches_onnxruntime(
    model_dir: Path, tmp_path: Path, openvino_installed
) -> None:
    """The default stream (auto: OpenVINO here) gives the events of ONNX Runtime's features.

    On the float networks: both libraries compute them in fp32 (differences of rounding
    order only, on any CPU), where the INT8 copies' kernels differ between CPU kinds.
    """
    import json

    from reclnet.runtime.camera.cli import main as stream_main

    events = {}
    for backend in ("openvino", "onnxruntime"):
        out = tmp_path / backend
        out.mkdir()
        args = stream_args(out, model_dir)
        assert (
            stream_main([*args, "--feature-backend", backend, "--feature-precision", "fp32"]) == 0
        )
        lines = (out / "events.jsonl").read_text().splitlines()
        events[backend] = [json.loads(line) for line in lines]
    a, b = events["openvino"], events["onnxruntime"]
    assert len(a) == len(b) > 0
    keys = ("kind", "frame", "track_id", "label", "first_frame", "last_frame")
    for x, y in zip(a, b, strict=True):
        assert [x[k] for k in keys] == [y[k] for k in keys]
        assert abs(x["score"] - y["score"]) <= 1e-3


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


def test_a_compile_failure_is_one_backend_error(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch
):
    """OpenVINO refusing a file (its own exception types) is a BackendError naming the way out."""
    import reclnet.runtime.backends.openvino.loader as loader
    from reclnet.runtime.backends import BackendError
    from reclnet.runtime.camera.cli import main as stream_main

    def refuse(*args, **kwargs):
        raise RuntimeError("Exception from src/inference/src/core.cpp: unsupported operation")

    monkeypatch.setattr(loader, "compile_model", refuse)
    path = feature_network_path(model_dir, "rgb")
    with pytest.raises(BackendError, match=rf"{path.name}: OpenVINO cannot compile it"):
        FeatureNetwork(path, backend="openvino")
    status = stream_main([*stream_args(tmp_path, model_dir), "--feature-backend", "openvino"])
    err = capsys.readouterr().err
    assert status != 0 and "--feature-backend onnxruntime runs it on ONNX Runtime" in err
