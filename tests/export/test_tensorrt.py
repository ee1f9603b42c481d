"""TensorRT: graph compatibility on the CPU, engine building and the runner against fakes; GPU parts.

No GPU here: the real build and run are marked ``gpu`` and skip with a reason.
On the CPU we check that exported graphs use only operators of the kept
TensorRT parser list with only N/K/H/W dynamic, that ``build_engine`` drives a
(fake) TensorRT 10 API exactly as intended, and the runner's ping-pong state
logic against a fake engine that computes the step with ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from reclnet.config import RecLNetConfig  # noqa: E402
from reclnet.export import tensorrt_engine as trt_loader  # noqa: E402
from reclnet.export.onnx_export import export_step  # noqa: E402
from reclnet.export.sidecar import write_sidecar  # noqa: E402
from reclnet.export.tensorrt_check import supported_ops, tensorrt_problems  # noqa: E402
from reclnet.runtime.artifacts import load_artifact  # noqa: E402
from reclnet.runtime.backends.tensorrt import runner as trt_runner  # noqa: E402
from reclnet.train.model import RecLNet  # noqa: E402

CFG = RecLNetConfig(
    num_actions=4, modalities={"rgb": 24, "flow": 16}, projection_size=16, memory_size=8
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = RecLNet(CFG).eval()
    out = tmp_path_factory.mktemp("trt")
    export_step(model, out / "step.onnx")
    lstm = RecLNet(dataclasses.replace(CFG, cell="lstm", fusion="gating")).eval()
    export_step(lstm, out / "lstm" / "step.onnx", fold_projection=False)
    # The same graph declared as another kind of artifact: build_engine must refuse it.
    other = out / "other.onnx"
    shutil.copyfile(out / "step.onnx", other)
    write_sidecar(other, kind="features", config=None)
    return out


# ---------------------------------------------------------------- graph checks
def test_supported_list_names_its_version() -> None:
    ops, version = supported_ops()
    assert version.startswith("10.")
    assert {"MatMul", "Sigmoid", "Tanh", "GRU", "RoiAlign", "ScatterND", "Gather"} <= ops
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops


def test_step_graphs_are_tensorrt_compatible(model_dir: Path) -> None:
    assert tensorrt_problems(model_dir / "step.onnx") == []
    assert tensorrt_problems(model_dir / "lstm" / "step.onnx") == []
    # Only the declared axes may be dynamic: with N not allowed, every I/O tensor is flagged.
    problems = tensorrt_problems(model_dir / "step.onnx", dynamic_axes=("K",))
    assert len(problems) == 5 and all("('N')" in p for p in problems)


def test_checker_flags_dynamic_quantization(model_dir: Path, tmp_path: Path) -> None:
    from reclnet.export.quantize import quantize_step

    q = quantize_step(model_dir / "step.onnx", tmp_path / "step.int8.onnx", variant="signed")
    problems = tensorrt_problems(q)
    assert any("MatMulInteger" in p for p in problems)
    assert any("DynamicQuantizeLinear" in p for p in problems)


# --------------------------------------------------------------- a fake TensorRT
class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []


def _fake_trt(rec: _Recorder, *, parse_ok: bool = True, build_ok: bool = True, session=None):
    """A stand-in for the ``tensorrt`` module recording how the TensorRT 10 API is driven."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.fake"

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level: str) -> None:
            rec.calls.append(("Logger", level))

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class BuilderFlag:
        FP16 = "FP16"
        INT8 = "INT8"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            rec.calls.append(("set_shape", (name, tuple(lo), tuple(opt), tuple(hi))))

    class Cache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return b"CACHE:" + self.blob

    class Config:
        def __init__(self) -> None:
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            rec.calls.append(("pool", (pool, size)))

        def set_flag(self, flag):
            rec.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            rec.calls.append(("add_profile", None))

        def create_timing_cache(self, blob):
            rec.calls.append(("create_timing_cache", bytes(blob)))
            return Cache(bytes(blob))

        def set_timing_cache(self, cache, ignore_mismatch):
            rec.calls.append(("set_timing_cache", ignore_mismatch))
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Network:
        pass

    class Parser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger) -> None:
            rec.calls.append(("OnnxParser", None))

        def parse_from_file(self, path):
            rec.calls.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, i):
            return f"parser error {i}"

    class Builder:
        def __init__(self, logger) -> None:
            rec.calls.append(("Builder", None))

        def create_network(self, flags):
            rec.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec.calls.append(("build", None))
            return bytearray(b"\x00FAKE-ENGINE\xff" * 10) if build_ok else None

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, blob):
            assert bytes(blob) == b"\x00FAKE-ENGINE\xff" * 10
            return _FakeEngine(session)

    trt.Logger, trt.MemoryPoolType, trt.BuilderFlag = Logger, MemoryPoolType, BuilderFlag
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt


def test_build_engine_forms_the_builder_config(model_dir: Path, tmp_path: Path) -> None:
    rec = _Recorder()
    trt = _fake_trt(rec)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    engine = trt_loader.build_engine(
        model_dir / "step.onnx",
        tmp_path / "step.fp16.engine",
        precision="fp16",
        min_tracks=1,
        opt_tracks=16,
        max_tracks=64,
        timing_cache=cache,
        workspace_mb=256,
        trt=trt,
    )
    calls = rec.calls
    assert ("create_network", 0) in calls  # explicit batch: the only TensorRT 10 mode
    assert ("parse_from_file", str(model_dir / "step.onnx")) in calls
    assert ("pool", ("WORKSPACE", 256 << 20)) in calls
    assert ("flag", "FP16") in calls and ("flag", "INT8") not in calls
    shapes = {c[1][0]: c[1][1:] for c in calls if c[0] == "set_shape"}
    s = CFG.state_size
    assert shapes == {
        "rgb": ((1, 24), (16, 24), (64, 24)),
        "flow": ((1, 16), (16, 16), (64, 16)),
        "state": ((1, s), (16, s), (64, s)),
    }
    assert [c[0] for c in calls].count("add_profile") == 1
    assert ("create_timing_cache", b"old") in calls and ("set_timing_cache", False) in calls
    assert cache.read_bytes() == b"CACHE:old"
    # the file is the serialized engine, byte for byte (trtexec / Polygraphy read it)
    assert engine.read_bytes() == b"\x00FAKE-ENGINE\xff" * 10
    art = load_artifact(engine)
    assert art.format == "tensorrt" and art.kind == "step" and art.config == CFG
    assert art.sidecar.name == "step.fp16.json"
    meta = art.metadata["tensorrt"]
    assert meta["precision"] == "fp16" and meta["max_tracks"] == 64
    assert meta["onnx_sha256"] == load_artifact(model_dir / "step.onnx").sha256
    assert art.metadata["tool_versions"]["tensorrt"] == "10.99.fake"
    # the ONNX model's own sidecar is untouched
    assert load_artifact(model_dir / "step.onnx").format == "onnx"


def test_build_engine_fp32_and_errors(model_dir: Path, tmp_path: Path) -> None:
    rec = _Recorder()
    trt_loader.build_engine(
        model_dir / "step.onnx", tmp_path / "a.engine", precision="fp32", trt=_fake_trt(rec)
    )
    assert not [c for c in rec.calls if c[0] == "flag"]
    assert not [c for c in rec.calls if c[0] == "create_timing_cache"]
    with pytest.raises(trt_loader.EngineBuildError, match="parser error 0; parser error 1"):
        trt_loader.build_engine(
            model_dir / "step.onnx",
            tmp_path / "b.engine",
            trt=_fake_trt(_Recorder(), parse_ok=False),
        )
    with pytest.raises(trt_loader.EngineBuildError, match="failed to build"):
        trt_loader.build_engine(
            model_dir / "step.onnx",
            tmp_path / "c.engine",
            trt=_fake_trt(_Recorder(), build_ok=False),
        )
    with pytest.raises(ValueError, match="explicitly quantized"):
        trt_loader.build_engine(
            model_dir / "step.onnx", precision="int8", trt=_fake_trt(_Recorder())
        )
    with pytest.raises(ValueError, match="min_tracks <= opt_tracks"):
        trt_loader.build_engine(
            model_dir / "step.onnx", min_tracks=8, opt_tracks=4, trt=_fake_trt(_Recorder())
        )
    with pytest.raises(ValueError, match="step models"):
        trt_loader.build_engine(model_dir / "other.onnx", trt=_fake_trt(_Recorder()))
    with pytest.raises(ValueError, match="precision"):
        trt_loader.build_engine(
            model_dir / "step.onnx", precision="fp8", trt=_fake_trt(_Recorder())
        )


def test_build_engine_cli_with_fake_tensorrt(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from reclnet.export.cli import build_engine_main

    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(rec))
    out = tmp_path / "cli.engine"
    code = build_engine_main(
        [
            str(model_dir / "step.onnx"),
            "--fp16",
            "--min-tracks",
            "2",
            "--opt-tracks",
            "8",
            "--max-tracks",
            "32",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.exists()
    assert ("flag", "FP16") in rec.calls
    assert json.loads((tmp_path / "cli.json").read_text())["tensorrt"]["max_tracks"] == 32
    assert build_engine_main([str(model_dir / "step.onnx"), "--min-tracks", "0"]) == 2
    assert "min_tracks" in capsys.readouterr().err


# ------------------------------------------------------------ runner on fakes
class _FakeMemory:
    """Host bytearrays standing for device allocations."""

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {}
        self.stream = 7
        self.htod_bytes = 0
        self.closed = False

    def alloc(self, nbytes: int) -> int:
        ptr = 0x1000 * (len(self.buffers) + 1)
        self.buffers[ptr] = bytearray(nbytes)
        return ptr

    def view(self, ptr: int, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        return np.frombuffer(self.buffers[ptr], np.float32, count=n).reshape(shape)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host, np.float32)
        self.buffers[ptr][: host.nbytes] = host.tobytes()
        self.htod_bytes += host.nbytes

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        host[...] = np.frombuffer(self.buffers[ptr], np.float32, count=host.size).reshape(
            host.shape
        )

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


MEMORY = _FakeMemory()


class _FakeContext:
    """Runs the step with ONNX Runtime on the 'device' buffers named by tensor addresses."""

    def __init__(self, session) -> None:
        self.session, self.shapes, self.addr = session, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def execute_async_v3(self, stream):
        assert stream == MEMORY.stream
        feeds = {k: MEMORY.view(self.addr[k], s).copy() for k, s in self.shapes.items()}
        probs, state = self.session.run(None, feeds)
        MEMORY.view(self.addr["probs"], probs.shape)[...] = probs
        MEMORY.view(self.addr["state_out"], state.shape)[...] = state
        return True


class _FakeEngine:
    def __init__(self, session) -> None:
        self.session = session

    def create_execution_context(self):
        return _FakeContext(self.session)


def test_runner_ping_pong_states_stay_on_the_device(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sess = ort.InferenceSession(str(model_dir / "step.onnx"), providers=["CPUExecutionProvider"])
    trt = _fake_trt(_Recorder(), session=sess)
    engine = trt_loader.build_engine(
        model_dir / "step.onnx",
        tmp_path / "step.fp32.engine",
        precision="fp32",
        opt_tracks=4,
        max_tracks=8,
        trt=trt,
    )
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_runner, "_memory", lambda kind, device: MEMORY)
    rng = np.random.default_rng(0)
    n, s = 5, CFG.state_size
    with trt_runner.TensorRTStepRunner(engine) as runner:
        assert runner.device_resident and runner.max_tracks == 8
        host_state = np.zeros((n, s), np.float32)
        handle: Any = host_state
        for t in range(12):
            feats = {
                k: rng.normal(size=(n, d)).astype(np.float32) for k, d in CFG.modalities.items()
            }
            before = MEMORY.htod_bytes
            probs, handle = runner.step(feats, handle)
            ref_p, host_state = sess.run(None, {**feats, "state": host_state})
            np.testing.assert_array_equal(probs, ref_p)
            np.testing.assert_array_equal(runner.fetch_state(handle), host_state)
            feature_bytes = sum(v.nbytes for v in feats.values())
            # after the first step only features cross the bus: states stay on the device
            assert MEMORY.htod_bytes - before == feature_bytes + (
                host_state.nbytes if t == 0 else 0
            )
        stale = handle
        runner.step(feats, handle)
        with pytest.raises(ValueError, match="stale"):
            runner.step(feats, stale)
        with pytest.raises(ValueError, match="outside the engine profile"):
            runner.step(
                {k: np.zeros((9, d), np.float32) for k, d in CFG.modalities.items()},
                np.zeros((9, s), np.float32),
            )
        with pytest.raises(ValueError, match=r"features\['rgb'\] must be"):
            runner.step(
                {k: np.zeros((2, d + 1), np.float32) for k, d in CFG.modalities.items()},
                np.zeros((2, s), np.float32),
            )
    assert MEMORY.closed
    with pytest.raises(RuntimeError, match="closed"):
        runner.step(feats, np.zeros((n, s), np.float32))


# ------------------------------------------------------------------- real GPU
def _gpu_or_skip() -> Any:
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (no GPU machine)")
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            pytest.skip("no CUDA device available")
    except ImportError:
        pytest.skip("cuda-python is not installed")
    return trt


@pytest.mark.gpu
@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
def test_real_engine_matches_onnxruntime(model_dir: Path, tmp_path: Path, memory: str) -> None:
    _gpu_or_skip()
    if memory == "pycuda":
        pytest.importorskip("pycuda", reason="pycuda is not installed")
    engine = trt_loader.build_engine(
        model_dir / "step.onnx",
        tmp_path / "step.fp32.engine",
        precision="fp32",
        opt_tracks=4,
        max_tracks=16,
    )
    sess = ort.InferenceSession(str(model_dir / "step.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    state = np.zeros((4, CFG.state_size), np.float32)
    with trt_runner.TensorRTStepRunner(engine, memory=memory) as runner:
        handle: Any = state
        for _ in range(20):
            feats = {
                k: rng.normal(size=(4, d)).astype(np.float32) for k, d in CFG.modalities.items()
            }
            probs, handle = runner.step(feats, handle)
            ref, state = sess.run(None, {**feats, "state": state})
            np.testing.assert_allclose(probs, ref, atol=1e-4)
        np.testing.assert_allclose(runner.fetch_state(handle), state, atol=1e-4)
