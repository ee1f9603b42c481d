"""Step backends: registry, provider options, ONNX Runtime vs the PyTorch reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from reclnet.config import PostprocessConfig, RecLNetConfig
from reclnet.runtime.backends import BackendError, StepRunner, available_backends, load_backend
from reclnet.runtime.backends.onnxruntime.loader import device_of, provider_list

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

CONFIG = RecLNetConfig(
    num_actions=4,
    modalities={"rgb": 12, "flow": 10},
    projection_size=16,
    memory_size=8,
    num_layers=2,
)


def tiny_model(config: RecLNetConfig = CONFIG, seed: int = 0):
    from reclnet.train.model import RecLNet

    torch.manual_seed(seed)
    return RecLNet(config).eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """A tiny model and its step.onnx (exported once per session, shared by test files)."""
    from reclnet.export.onnx_export import export_step

    model = tiny_model()
    path = tmp_path_factory.getbasetemp() / "tiny_backends" / "step.onnx"
    if not path.exists():
        export_step(model, path, postprocess=PostprocessConfig(window=7, threshold=0.3))
    return model, path


def random_inputs(n: int, seed: int, config: RecLNetConfig = CONFIG):
    rng = np.random.default_rng(seed)
    feats = {k: rng.standard_normal((n, d), dtype=np.float32) for k, d in config.modalities.items()}
    state = rng.standard_normal((n, config.state_size), dtype=np.float32) * 0.5
    return feats, state


# ----------------------------------------------------------------- registry
def test_unknown_backend_is_named() -> None:
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        load_backend("nope")


def test_available_backends_lists_installed_ones() -> None:
    names = available_backends()
    assert "torch" in names and "onnxruntime" in names


def test_torch_backend_needs_exactly_one_source() -> None:
    with pytest.raises(BackendError, match="exactly one"):
        load_backend("torch")


# ---------------------------------------------------------- provider options
def test_provider_list_cpu_default() -> None:
    assert provider_list() == [("CPUExecutionProvider", {})]
    assert device_of(provider_list()) == ("cpu", 0)


def test_provider_list_tensorrt_falls_back_to_cuda_then_cpu(tmp_path: Path) -> None:
    plist = provider_list(
        ["tensorrt"],
        device_id=1,
        fp16=True,
        trt_cache_dir=tmp_path,
        options={"tensorrt": {"trt_max_workspace_size": 1 << 30}},
    )
    assert [name for name, _ in plist] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    trt = plist[0][1]
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is True
    assert trt["trt_int8_enable"] is False
    assert trt["trt_engine_cache_enable"] is True and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["trt_max_workspace_size"] == 1 << 30
    assert plist[1][1]["device_id"] == 1
    assert device_of(plist) == ("cuda", 1)


@pytest.mark.parametrize(
    ("providers", "options", "match"),
    [
        (["tpu"], None, "unknown provider"),
        ([], None, "unknown provider"),
        (["cpu"], {"npu": {}}, "unknown provider"),
    ],
)
def test_provider_list_rejects_unknown(providers, options, match) -> None:
    with pytest.raises(ValueError, match=match):
        provider_list(providers, options=options)


def test_missing_provider_is_a_clear_error(exported) -> None:
    _, path = exported
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="not in this onnxruntime build"):
        load_backend("onnxruntime", model=path, providers=["cuda"])


# ------------------------------------------------------------- equivalence
def test_runners_satisfy_the_protocol(exported) -> None:
    model, path = exported
    with load_backend("onnxruntime", model=path) as a, load_backend("torch", model=model) as b:
        assert isinstance(a, StepRunner) and isinstance(b, StepRunner)
        assert a.config == b.config == CONFIG
        # Post-processing defaults come from the sidecar.
        assert a.postprocess.window == 7 and a.postprocess.threshold == 0.3


@pytest.mark.parametrize("n", [1, 3, 17])
def test_onnxruntime_step_matches_torch(exported, n: int) -> None:
    model, path = exported
    feats, state = random_inputs(n, seed=n)
    with load_backend("onnxruntime", model=path) as a, load_backend("torch", model=model) as b:
        pa, sa = a.step(feats, state)
        pb, sb = b.step(feats, state)
    assert pa.dtype == np.float32 and pa.shape == (n, CONFIG.num_classes)
    np.testing.assert_allclose(pa, pb, atol=2e-6)
    np.testing.assert_allclose(sa, sb, atol=2e-6)


def test_io_binding_chain_equals_host_chain(exported) -> None:
    """The device-resident path (exercised on CPU) feeds state handles back unchanged."""
    _, path = exported
    feats, state = random_inputs(5, seed=3)
    with (
        load_backend("onnxruntime", model=path) as host,
        load_backend("onnxruntime", model=path, io_binding=True) as dev,
    ):
        assert dev.device_resident and not host.device_resident
        hs, ds = state, state
        for step in range(4):
            f = {k: v + step for k, v in feats.items()}
            hp, hs = host.step(f, hs)
            dp, ds = dev.step(f, ds)
            assert isinstance(ds, ort.OrtValue)
            np.testing.assert_array_equal(hp, dp)
        np.testing.assert_array_equal(dev.fetch_state(ds), hs)


def test_torch_backend_from_checkpoint(tmp_path: Path) -> None:
    from reclnet.train.checkpoint import save_checkpoint

    model = tiny_model(seed=4)
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    feats, state = random_inputs(3, seed=9)
    with load_backend("torch", checkpoint=ckpt) as runner:
        probs, new_state = runner.step(feats, state)
    want_p, want_s = model.step(
        {k: torch.from_numpy(v) for k, v in feats.items()}, torch.from_numpy(state)
    )
    np.testing.assert_array_equal(probs, want_p.detach().numpy())
    np.testing.assert_array_equal(new_state, want_s.detach().numpy())


def test_torch_backend_bad_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match="bad.pt"):
        load_backend("torch", checkpoint=bad)


def test_corrupt_onnx_is_refused(exported, tmp_path: Path) -> None:
    _, path = exported
    copy = tmp_path / "step.onnx"
    shutil.copy(path, copy)
    shutil.copy(path.with_suffix(".json"), copy.with_suffix(".json"))
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(BackendError, match="sha256 mismatch"):
        load_backend("onnxruntime", model=copy)


def test_closed_runner_refuses_to_step(exported) -> None:
    _, path = exported
    runner = load_backend("onnxruntime", model=path)
    runner.close()
    feats, state = random_inputs(2, seed=0)
    with pytest.raises(BackendError, match="closed"):
        runner.step(feats, state)


@pytest.mark.gpu
def test_cuda_execution_provider_keeps_states_on_device(exported) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider on this machine")
    model, path = exported
    feats, state = random_inputs(8, seed=1)
    with (
        load_backend("onnxruntime", model=path, providers=["cuda"]) as gpu,
        load_backend("torch", model=model) as ref,
    ):
        assert gpu.device_resident
        gp, gs = gpu.step(feats, state)
        rp, rs = ref.step(feats, state)
        assert isinstance(gs, ort.OrtValue) and gs.device_name().lower() == "cuda"
        gp2, gs2 = gpu.step(feats, gs)
        rp2, rs2 = ref.step(feats, rs)
    np.testing.assert_allclose(gp2, rp2, atol=1e-4)
    np.testing.assert_allclose(gpu.fetch_state(gs2), rs2, atol=1e-4)


# ------------------------------------------------------------- tensorrt adapter
class _Inner:
    """Stands in for TensorRTStepRunner: an ORT io-binding runner with an engine size limit."""

    def __init__(self, runner, max_tracks: int) -> None:
        self.runner, self.max_tracks = runner, max_tracks
        self.config, self.postprocess = runner.config, runner.postprocess
        self.closed = False

    def step(self, features, state):
        if isinstance(state, np.ndarray) and state.shape[1] != self.config.state_size:
            raise ValueError("state must be [N, S]")
        return self.runner.step(features, state)

    def fetch_state(self, state):
        return self.runner.fetch_state(state)

    def close(self) -> None:
        self.closed = True


def test_tensorrt_backend_without_engine_or_package_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="tensorrt backend"):
        load_backend("tensorrt", engine=tmp_path / "step.engine")


def test_tensorrt_adapter_checks_the_batch_and_wraps_errors(exported) -> None:
    from reclnet.runtime.backends.trt_adapter import TensorRTAdapter

    _, path = exported
    inner = _Inner(load_backend("onnxruntime", model=path, io_binding=True), max_tracks=3)
    with TensorRTAdapter(inner) as adapter:
        assert isinstance(adapter, StepRunner) and adapter.device_resident
        feats, state = random_inputs(3, seed=5)
        probs, handle = adapter.step(feats, state)
        want_p, want_s = inner.runner.step(feats, state)
        np.testing.assert_array_equal(probs, want_p)
        np.testing.assert_array_equal(adapter.fetch_state(handle), inner.runner.fetch_state(want_s))
        big, big_state = random_inputs(4, seed=6)
        with pytest.raises(BackendError, match="at most 3"):
            adapter.step(big, big_state)
        with pytest.raises(BackendError, match=r"state must be \[N, S\]"):
            adapter.step(feats, state[:, :3])
    assert inner.closed


@pytest.mark.gpu
def test_tensorrt_engine_matches_torch(exported, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from reclnet.export.tensorrt_engine import build_engine

    model, path = exported
    engine = build_engine(path, tmp_path / "step.engine", precision="fp32", max_tracks=16)
    feats, state = random_inputs(8, seed=1)
    with load_backend("tensorrt", engine=engine) as trt, load_backend("torch", model=model) as ref:
        tp, ts = trt.step(feats, state)
        rp, rs = ref.step(feats, state)
        tp2, ts2 = trt.step(feats, ts)
        rp2, rs2 = ref.step(feats, rs)
        np.testing.assert_allclose(tp2, rp2, atol=1e-3)
        np.testing.assert_allclose(trt.fetch_state(ts2), rs2, atol=1e-3)
