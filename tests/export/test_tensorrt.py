"""TensorRT: graph checks, the build plan, and the builder / runner / memory logic on strict doubles.

No GPU here: the real build and run are marked ``gpu`` and skip with a reason
(``reclnet gpu-check`` is the full proof on a GPU machine, docs/gpu.md).

The doubles are *strict*: the ``tensorrt`` double exposes exactly the names
recorded per major version in :mod:`reclnet.runtime.backends.tensorrt.api`
(with their documentation sources; ``gpu-check`` verifies the record against
the installed wheel), so calling ``BuilderFlag.FP16`` on TensorRT 11 raises
``AttributeError`` as the real package does; the cuda-python double accepts only
names that the installed ``cuda.bindings.runtime`` really has. They record
the order of calls, which is what the ordering defects are about.
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


# ------------------------------------------------------------ strict doubles
from reclnet.export.onnx_fp16 import convert_to_fp16  # noqa: E402
from reclnet.runtime.backends.base import BackendError  # noqa: E402
from reclnet.runtime.backends.tensorrt import api as trt_api  # noqa: E402
from reclnet.runtime.backends.tensorrt import cuda_python_memory as cpm  # noqa: E402
from reclnet.runtime.backends.tensorrt.loader import EngineLoadError, deserialize_engine  # noqa: E402
from reclnet.runtime.backends.tensorrt.memory import ALIGNMENT, CudaError  # noqa: E402

ENGINE_BYTES = b"\x00FAKE-ENGINE\xff" * 10


class Strict:
    """An object of TensorRT class ``owner``: only recorded names exist; unimplemented ones fail."""

    def __init__(self, log: list, major: int, owner: str, **impl: Any) -> None:
        allowed = trt_api.SURFACE[major][owner]
        unknown = set(impl) - allowed
        assert not unknown, f"double implements unrecorded {owner}.{sorted(unknown)}"
        object.__setattr__(self, "_d", (log, owner, allowed, impl))

    def __getattr__(self, name: str) -> Any:
        log, owner, allowed, impl = object.__getattribute__(self, "_d")
        if name not in allowed:
            raise AttributeError(f"tensorrt.{owner} has no attribute {name!r}")
        if name not in impl:
            raise AssertionError(f"unexpected use of {owner}.{name}")
        value = impl[name]
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            log.append((f"{owner}.{name}", args))
            return value(*args, **kwargs)

        return call


class Enum:
    """An enum member standing for e.g. ``DataType.FLOAT``."""

    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Enum) and (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def __repr__(self) -> str:
        return self.name


def strict_trt(
    log: list,
    major: int,
    *,
    parse_ok: bool = True,
    build_ok: bool = True,
    cache_ok: bool = True,
    engine: Any = None,
    version: str | None = None,
) -> types.ModuleType:
    """A ``tensorrt`` module with exactly the recorded surface of ``major``."""
    surface = trt_api.SURFACE[major]

    def enum(owner: str) -> Strict:
        return Strict(
            log, major, owner, **{n: Enum(n, i) for i, n in enumerate(sorted(surface[owner]))}
        )

    flags = enum("BuilderFlag")
    net_flags = enum("NetworkDefinitionCreationFlag")
    cache = {"blob": b""}

    def config() -> Strict:
        def create_timing_cache(blob: bytes) -> Strict:
            cache["blob"] = bytes(blob)
            return Strict(log, major, "ITimingCache", serialize=lambda: b"CACHE:" + cache["blob"])

        return Strict(
            log,
            major,
            "IBuilderConfig",
            set_memory_pool_limit=lambda pool, size: None,
            set_flag=lambda flag: None,
            add_optimization_profile=lambda profile: 0,
            create_timing_cache=create_timing_cache,
            set_timing_cache=lambda c, ignore_mismatch: cache_ok,
            get_timing_cache=lambda: create_timing_cache(cache["blob"]),
        )

    class Parser:  # OnnxParser(network, logger)
        def __new__(cls, network: Any, logger: Any) -> Strict:
            log.append(("OnnxParser", ()))
            return Strict(
                log,
                major,
                "OnnxParser",
                parse_from_file=lambda path: parse_ok,
                num_errors=0 if parse_ok else 2,
                get_error=lambda i: f"parser error {i}",
            )

    def builder(logger: Any) -> Strict:
        log.append(("Builder", ()))
        return Strict(
            log,
            major,
            "Builder",
            create_network=lambda flags: object(),
            create_builder_config=config,
            create_optimization_profile=lambda: Strict(
                log, major, "IOptimizationProfile", set_shape=lambda *a: None
            ),
            build_serialized_network=lambda net, cfg: bytearray(ENGINE_BYTES) if build_ok else None,
        )

    def runtime(logger: Any) -> Strict:
        def deserialize(blob: bytes) -> Any:
            assert bytes(blob) == ENGINE_BYTES
            return engine

        return Strict(log, major, "Runtime", deserialize_cuda_engine=deserialize)

    logger = Strict(
        log,
        major,
        "Logger",
        WARNING=Enum("WARNING", 2),
        ERROR=Enum("ERROR", 1),
        INFO=Enum("INFO", 3),
    )
    impl = {
        "__version__": version or f"{major}.99.0",
        "Logger": lambda level: log.append(("Logger", (level,))),
        "Builder": builder,
        "OnnxParser": Parser,
        "Runtime": runtime,
        "MemoryPoolType": enum("MemoryPoolType"),
        "BuilderFlag": flags,
        "NetworkDefinitionCreationFlag": net_flags,
        "TensorIOMode": enum("TensorIOMode"),
        "DataType": enum("DataType"),
    }
    mod = types.ModuleType("tensorrt")
    assert set(impl) == surface["tensorrt"]
    for name, value in impl.items():
        setattr(mod, name, value)
    mod.Logger = type(
        "Logger",
        (),
        {"__new__": lambda cls, level: log.append(("Logger", ())), "WARNING": logger.WARNING},
    )
    return mod


def calls(log: list, name: str) -> list[tuple]:
    return [args for n, args in log if n == name]


# ---------------------------------------------------------------- version / plan
def test_tensorrt_major_version_detection() -> None:
    assert trt_api.tensorrt_major(types.SimpleNamespace(__version__="10.13.0.35")) == 10
    assert trt_api.tensorrt_major(types.SimpleNamespace(__version__="11.0.1")) == 11
    with pytest.raises(ValueError, match="not supported"):
        trt_api.tensorrt_major(types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(ValueError, match="cannot tell"):
        trt_api.tensorrt_major(types.SimpleNamespace())


def test_recorded_surface_drops_the_weak_typing_flags_in_11() -> None:
    assert {"FP16", "INT8"} <= trt_api.SURFACE[10]["BuilderFlag"]
    assert not {"FP16", "INT8"} & trt_api.SURFACE[11]["BuilderFlag"]

    def module(major: int) -> types.SimpleNamespace:
        surface = trt_api.SURFACE[major]
        classes = {
            owner: types.SimpleNamespace(**dict.fromkeys(names, 0))
            for owner, names in surface.items()
            if owner != "tensorrt"
        }
        return types.SimpleNamespace(__version__=f"{major}.0.0", **classes)

    assert trt_api.api_problems(module(11)) == []
    assert trt_api.api_problems(module(10)) == []
    stale = module(11)
    stale.BuilderFlag.FP16 = 1  # an 11 that still had FP16
    del stale.IExecutionContext.execute_async_v3
    problems = trt_api.api_problems(stale)
    assert any("BuilderFlag.FP16 is recorded as removed" in p for p in problems)
    assert any("IExecutionContext.execute_async_v3 is missing" in p for p in problems)


@pytest.mark.parametrize(
    ("major", "precision", "graph", "plan"),
    [
        (10, "fp32", "fp32", ((), ())),
        (10, "fp16", "fp32", ((), ("FP16",))),
        (10, "fp16", "fp16", (("STRONGLY_TYPED",), ())),
        (10, "int8", "qdq", (("STRONGLY_TYPED",), ())),
        (11, "fp32", "fp32", ((), ())),
        (11, "fp16", "fp16", ((), ())),
        (11, "int8", "qdq", ((), ())),
    ],
)
def test_build_plan(major: int, precision: str, graph: str, plan: tuple) -> None:
    assert trt_loader.build_plan(major, precision, graph) == plan


@pytest.mark.parametrize(
    ("major", "precision", "graph", "match"),
    [
        (11, "fp16", "fp32", "FP16 graph"),
        (10, "int8", "fp32", "explicitly quantized"),
        (11, "fp32", "qdq", "Q/DQ graph builds an int8"),
        (10, "fp32", "fp16", "FP16 graph builds an fp16"),
        (9, "fp32", "fp32", "not supported"),
    ],
)
def test_build_plan_refuses(major: int, precision: str, graph: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trt_loader.build_plan(major, precision, graph)


# ---------------------------------------------------------------- engine builder
def _build(model_dir: Path, tmp_path: Path, major: int, precision: str = "fp32", **kw: Any):
    log: list = []
    trt = strict_trt(
        log, major, **{k: kw.pop(k) for k in ("cache_ok", "parse_ok", "build_ok") if k in kw}
    )
    path = trt_loader.build_engine(
        kw.pop("onnx", model_dir / "step.onnx"),
        tmp_path / f"step.{precision}.engine",
        precision=precision,
        opt_tracks=4,
        max_tracks=kw.pop("max_tracks", 8),
        trt=trt,
        **kw,
    )
    return path, log


def test_fp16_on_tensorrt_11_builds_a_strongly_typed_fp16_graph(
    model_dir: Path, tmp_path: Path
) -> None:
    engine, log = _build(model_dir, tmp_path, 11, "fp16")
    assert calls(log, "Builder.create_network") == [(0,)]
    assert calls(log, "IBuilderConfig.set_flag") == []  # BuilderFlag.FP16 does not exist in 11
    (parsed,) = calls(log, "OnnxParser.parse_from_file")
    from reclnet.export.onnx_fp16 import graph_precision

    assert graph_precision(parsed[0]) == "fp16"
    meta = load_artifact(engine).metadata["tensorrt"]
    assert meta["strongly_typed"] and meta["precision"] == "fp16" and meta["version"] == "11.99.0"
    assert "gpu" in meta  # null here: no CUDA device


def test_tensorrt_10_keeps_the_fp16_flag_for_an_fp32_graph(model_dir: Path, tmp_path: Path) -> None:
    _, log = _build(model_dir, tmp_path, 10, "fp16")
    (flag,) = calls(log, "IBuilderConfig.set_flag")
    assert repr(flag[0]) == "FP16"
    assert calls(log, "OnnxParser.parse_from_file") == [(str(model_dir / "step.onnx"),)]
    # An FP16 graph on 10 is built strongly typed, like on 11.
    fp16 = convert_to_fp16(model_dir / "step.onnx", tmp_path / "h" / "step.onnx")
    write_sidecar(fp16, kind="step", config=CFG)
    _, log = _build(model_dir, tmp_path / "h", 10, "fp16", onnx=fp16)
    net = strict_trt([], 10).NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert calls(log, "Builder.create_network") == [(1 << int(net),)]
    assert calls(log, "IBuilderConfig.set_flag") == []


def test_build_engine_profile_cache_and_errors(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    engine, log = _build(model_dir, tmp_path, 10, timing_cache=cache, max_tracks=64)
    s = CFG.state_size
    assert {a[0]: a[1:] for a in calls(log, "IOptimizationProfile.set_shape")} == {
        "rgb": ((1, 24), (4, 24), (64, 24)),
        "flow": ((1, 16), (4, 16), (64, 16)),
        "state": ((1, s), (4, s), (64, s)),
    }
    assert cache.read_bytes() == b"CACHE:old"
    assert engine.read_bytes() == ENGINE_BYTES
    art = load_artifact(engine)
    assert art.format == "tensorrt" and art.sidecar.name == "step.fp32.json"
    assert art.metadata["tensorrt"]["max_tracks"] == 64
    assert load_artifact(model_dir / "step.onnx").format == "onnx"
    with pytest.raises(trt_loader.EngineBuildError, match="rejected the timing cache"):
        _build(model_dir, tmp_path, 10, timing_cache=cache, cache_ok=False)
    with pytest.raises(trt_loader.EngineBuildError, match="parser error 0; parser error 1"):
        _build(model_dir, tmp_path, 11, parse_ok=False)
    with pytest.raises(trt_loader.EngineBuildError, match="failed to build"):
        _build(model_dir, tmp_path, 11, build_ok=False)
    with pytest.raises(ValueError, match="explicitly quantized"):
        _build(model_dir, tmp_path, 11, "int8")
    with pytest.raises(ValueError, match="step models"):
        trt_loader.build_engine(model_dir / "other.onnx", trt=strict_trt([], 11))


def test_build_engine_cli(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from reclnet.export.cli import build_engine_main

    log: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", strict_trt(log, 11))
    out = tmp_path / "cli.engine"
    argv = [str(model_dir / "step.onnx"), "--fp16", "--max-tracks", "32", "--out", str(out)]
    assert build_engine_main(argv) == 0 and out.exists()
    assert json.loads((tmp_path / "cli.json").read_text())["tensorrt"]["max_tracks"] == 32
    assert build_engine_main([str(model_dir / "step.onnx"), "--min-tracks", "0"]) == 2
    assert "min_tracks" in capsys.readouterr().err


def test_fp16_graph_matches_fp32_on_the_cpu(model_dir: Path, tmp_path: Path) -> None:
    """The converted graph keeps FP32 I/O and computes the same step within FP16 rounding."""
    fp16 = convert_to_fp16(model_dir / "step.onnx", tmp_path / "step16.onnx")
    a = ort.InferenceSession(str(model_dir / "step.onnx"), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert [i.type for i in b.get_inputs()] == ["tensor(float)"] * 3
    rng = np.random.default_rng(3)
    feeds = {k: rng.normal(size=(6, d)).astype(np.float32) for k, d in CFG.modalities.items()}
    feeds["state"] = rng.uniform(-1, 1, (6, CFG.state_size)).astype(np.float32)
    for x, y in zip(a.run(None, feeds), b.run(None, feeds), strict=True):
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, x, atol=2e-2)  # FP16 has ~3 decimal digits


# ---------------------------------------------------------------- the runner
class Memory:
    """Strict memory double: aligned fake pointers, pinned arrays, a call log shared with TensorRT."""

    def __init__(self, log: list, fail_alloc_at: int | None = None) -> None:
        self.log, self.fail_alloc_at = log, fail_alloc_at
        self.buffers: dict[int, bytearray] = {}
        self.pinned_arrays: list[np.ndarray] = []
        self.closed = False
        log.append(("memory.select_device", ()))

    stream = 7

    def identity(self) -> dict[str, object]:
        return {"name": "Fake GPU", "compute_capability": "9.0"}

    def alloc(self, nbytes: int) -> int:
        if self.fail_alloc_at is not None and len(self.buffers) == self.fail_alloc_at:
            raise CudaError("cudaMalloc failed: cudaErrorMemoryAllocation")
        ptr = ALIGNMENT * 16 * (len(self.buffers) + 1)
        self.buffers[ptr] = bytearray(nbytes)
        self.log.append(("memory.alloc", (nbytes,)))
        return ptr

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        a = np.zeros(shape, dtype)
        self.pinned_arrays.append(a)
        return a

    def _check_pinned(self, host: np.ndarray) -> None:
        assert any(np.shares_memory(host, p) for p in self.pinned_arrays), "pageable async copy"

    def _view(self, ptr: int, host: np.ndarray) -> memoryview:
        buf = self.buffers[ptr]
        assert host.nbytes <= len(buf), "device buffer overrun"
        return memoryview(buf)[: host.nbytes]

    def htod(self, ptr: int, host: np.ndarray) -> None:
        self._check_pinned(host)
        self._view(ptr, host)[:] = host.tobytes()
        self.log.append(("memory.htod", (ptr, host.nbytes)))

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self._check_pinned(host)
        host[...] = np.frombuffer(self._view(ptr, host), np.float32).reshape(host.shape)
        self.log.append(("memory.dtoh", (ptr,)))

    def synchronize(self) -> None:
        self.log.append(("memory.synchronize", ()))

    def close(self) -> None:
        self.closed = True
        self.log.append(("memory.close", ()))


def strict_engine(
    log: list,
    major: int,
    memory: list,
    session: Any,
    *,
    context_ok: bool = True,
    shape_ok: bool = True,
    dtype: str = "FLOAT",
    profile_min: int = 1,
    max_tracks: int = 8,
) -> Strict:
    """An ICudaEngine double whose context runs the step with ONNX Runtime on the memory double."""
    trt = strict_trt([], major)
    ins = {**CFG.modalities, "state": CFG.state_size}
    outs = {"probs": CFG.num_classes, "state_out": CFG.state_size}
    names = [*ins, *outs]
    shapes: dict[str, tuple] = {}
    addr: dict[str, int] = {}

    def execute(stream: int) -> bool:
        mem = memory[0]
        feeds = {
            k: np.frombuffer(mem.buffers[addr[k]], np.float32, count=int(np.prod(s)))
            .reshape(s)
            .copy()
            for k, s in shapes.items()
        }
        probs, state = session.run(None, feeds)
        for name, value in (("probs", probs), ("state_out", state)):
            mem.buffers[addr[name]][: value.nbytes] = value.tobytes()
        return True

    def set_shape(name: str, shape: tuple) -> bool:
        shapes[name] = tuple(shape)
        return shape_ok

    def set_addr(name: str, ptr: int) -> bool:
        addr[name] = ptr
        return ptr % ALIGNMENT == 0

    def context() -> Any:
        if not context_ok:
            return None
        return Strict(
            log,
            major,
            "IExecutionContext",
            set_input_shape=set_shape,
            set_tensor_address=set_addr,
            execute_async_v3=execute,
        )

    return Strict(
        log,
        major,
        "ICudaEngine",
        num_io_tensors=len(names),
        num_optimization_profiles=1,
        get_tensor_name=lambda i: names[i],
        get_tensor_mode=lambda n: trt.TensorIOMode.INPUT if n in ins else trt.TensorIOMode.OUTPUT,
        get_tensor_dtype=lambda n: getattr(trt.DataType, dtype),
        get_tensor_shape=lambda n: (-1, {**ins, **outs}[n]),
        get_tensor_profile_shape=lambda n, p: [
            (profile_min, ins[n]),
            (4, ins[n]),
            (max_tracks, ins[n]),
        ],
        create_execution_context=context,
    )


@pytest.fixture
def engine_file(model_dir: Path, tmp_path: Path) -> Path:
    return _build(model_dir, tmp_path, 11)[0]


def _runner(
    engine_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    model_dir: Path,
    major: int = 11,
    fail_alloc_at: int | None = None,
    **engine_kw: Any,
):
    log: list = []
    sess = ort.InferenceSession(str(model_dir / "step.onnx"), providers=["CPUExecutionProvider"])
    mem: list = []
    engine = strict_engine(log, major, mem, sess, **engine_kw)
    trt = strict_trt(log, major, engine=engine)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)

    def memory(kind: str, device: int) -> Memory:
        mem.append(Memory(log, fail_alloc_at))
        return mem[0]

    monkeypatch.setattr(trt_runner, "_memory", memory)
    return trt_runner.TensorRTStepRunner(engine_file), log, mem, sess


def test_device_is_selected_before_the_engine_is_deserialized(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    runner, log, _, _ = _runner(engine_file, monkeypatch, model_dir)
    names = [n for n, _ in log]
    assert names.index("memory.select_device") < names.index("Runtime.deserialize_cuda_engine")
    assert (
        names.index("Runtime.deserialize_cuda_engine")
        < names.index("ICudaEngine.create_execution_context")
        < names.index("memory.alloc")
    )
    runner.close()


def test_nothing_touches_the_device_before_every_input_is_checked(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    runner, log, (mem,), _ = _runner(engine_file, monkeypatch, model_dir)
    s = CFG.state_size
    good = {k: np.zeros((2, d), np.float32) for k, d in CFG.modalities.items()}
    mark = len(log)
    with pytest.raises(ValueError, match="outside the engine profile"):
        runner.step(
            {k: np.zeros((9, d), np.float32) for k, d in CFG.modalities.items()},
            np.ones((9, s), np.float32),
        )  # 9 > max_tracks=8 rows: never copied
    with pytest.raises(ValueError, match=r"features\['rgb'\]"):
        runner.step({**good, "rgb": np.zeros((2, 25), np.float32)}, np.ones((2, s), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        runner.step(
            {**good, "flow": np.full((2, 16), np.nan, np.float32)}, np.ones((2, s), np.float32)
        )
    assert log[mark:] == []  # no device call, no context call
    # A state that went in stays: the device state buffer still holds zeros.
    assert not any(any(b) for b in mem.buffers.values())
    runner.close()


def test_failed_set_input_shape_leaves_the_device_untouched(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    runner, log, _, _ = _runner(engine_file, monkeypatch, model_dir, shape_ok=False)
    mark = len(log)
    feats = {k: np.zeros((2, d), np.float32) for k, d in CFG.modalities.items()}
    with pytest.raises(BackendError, match="set_input_shape"):
        runner.step(feats, np.zeros((2, CFG.state_size), np.float32))
    assert not [n for n, _ in log[mark:] if n.startswith("memory.")]
    runner.close()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"context_ok": False}, "execution context"),
        ({"dtype": "HALF"}, "needs FLOAT"),
        ({"profile_min": 2}, r"profile N in \[2, 8\]"),
        ({"max_tracks": 16}, r"profile N in \[1, 16\]"),
        ({"fail_alloc_at": 3}, "cudaErrorMemoryAllocation"),
    ],
)
def test_a_failed_open_frees_everything(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path, kw: dict, match: str
) -> None:
    mem: list = []
    monkeypatch.setattr(Memory, "close", lambda self: mem.append(self))
    with pytest.raises((ValueError, RuntimeError), match=match):
        _runner(engine_file, monkeypatch, model_dir, **kw)
    assert len(mem) == 1  # the memory object (and every buffer it made) was closed once


def test_engine_of_another_tensorrt_version_is_refused(engine_file: Path) -> None:
    with pytest.raises(
        EngineLoadError, match="built with TensorRT 11.99.0, this is TensorRT 11.1.0"
    ):
        deserialize_engine(engine_file, trt=strict_trt([], 11, version="11.1.0"))


def test_runner_ping_pong_states_stay_on_the_device(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    runner, log, (mem,), sess = _runner(engine_file, monkeypatch, model_dir)
    rng = np.random.default_rng(0)
    n, s = 5, CFG.state_size
    host_state = np.zeros((n, s), np.float32)
    handle: Any = host_state
    with runner:
        assert runner.device_resident and runner.max_tracks == 8
        for t in range(6):
            feats = {
                k: rng.normal(size=(n, d)).astype(np.float32) for k, d in CFG.modalities.items()
            }
            mark = len(log)
            probs, handle = runner.step(feats, handle)
            ref_p, host_state = sess.run(None, {**feats, "state": host_state})
            np.testing.assert_array_equal(probs, ref_p)
            np.testing.assert_array_equal(runner.fetch_state(handle), host_state)
            htod = sum(a[1] for name, a in log[mark:] if name == "memory.htod")
            # after the first step only features cross the bus: states stay on the device
            assert htod == sum(v.nbytes for v in feats.values()) + (
                host_state.nbytes if t == 0 else 0
            )
        stale = handle
        runner.step(feats, handle)
        with pytest.raises(ValueError, match="stale"):
            runner.step(feats, stale)
    assert mem.closed
    with pytest.raises(RuntimeError, match="closed"):
        runner.step(feats, np.zeros((n, s), np.float32))


# ---------------------------------------------------------------- cuda-python memory
class StrictCudart:
    """``cuda.bindings.runtime`` double: only names the installed module really has."""

    def __init__(self, *, fail_malloc_at: int | None = None, misaligned: bool = False) -> None:
        from cuda.bindings import runtime as real

        self._real = real
        self.log: list[str] = []
        self.fail_malloc_at, self.misaligned = fail_malloc_at, misaligned
        self.cudaError_t = real.cudaError_t
        self.cudaMemcpyKind = real.cudaMemcpyKind
        self.mallocs = 0
        self._host: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        if not hasattr(object.__getattribute__(self, "_real"), name):
            raise AttributeError(f"cuda.bindings.runtime has no {name!r}")
        raise AssertionError(f"unexpected call of cuda.bindings.runtime.{name}")

    ok = property(lambda self: self.cudaError_t.cudaSuccess)

    def cudaSetDevice(self, device: int):  # noqa: N802 - the documented names
        self.log.append(f"cudaSetDevice({device})")
        return (self.ok,)

    def cudaStreamCreate(self):  # noqa: N802
        self.log.append("cudaStreamCreate")
        return (self.ok, 99)

    def cudaMalloc(self, size: int):  # noqa: N802
        self.mallocs += 1
        if self.fail_malloc_at == self.mallocs:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        self.log.append("cudaMalloc")
        return (self.ok, ALIGNMENT * self.mallocs + (8 if self.misaligned else 0))

    def cudaMallocHost(self, size: int):  # noqa: N802
        import ctypes

        buf = (ctypes.c_byte * size)()
        self._host.append(buf)
        self.log.append("cudaMallocHost")
        return (self.ok, ctypes.addressof(buf))

    def cudaFree(self, ptr: int):  # noqa: N802
        self.log.append(f"cudaFree({ptr})")
        return (self.ok,)

    def cudaFreeHost(self, ptr: int):  # noqa: N802
        self.log.append("cudaFreeHost")
        return (self.ok,)

    def cudaStreamSynchronize(self, stream: int):  # noqa: N802
        self.log.append("cudaStreamSynchronize")
        return (self.ok,)

    def cudaStreamDestroy(self, stream: int):  # noqa: N802
        self.log.append("cudaStreamDestroy")
        return (self.ok,)


def test_double_names_exist_in_the_installed_cuda_bindings() -> None:
    pytest.importorskip("cuda.bindings.runtime")
    from cuda.bindings import runtime as real

    used = [n for n in vars(StrictCudart) if n.startswith("cuda")]
    assert used and all(hasattr(real, n) for n in used)


def test_cuda_python_memory_frees_after_synchronizing(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cuda.bindings.runtime")
    rt = StrictCudart(fail_malloc_at=3)
    monkeypatch.setattr(cpm, "_runtime", lambda: rt)
    mem = cpm.DeviceMemory(2)
    assert rt.log[:2] == ["cudaSetDevice(2)", "cudaStreamCreate"]
    a, b = mem.alloc(10), mem.alloc(10)
    host = mem.pinned((4, 3), np.float32)
    assert host.shape == (4, 3) and host.dtype == np.float32
    with pytest.raises(CudaError, match="cudaErrorMemoryAllocation"):
        mem.alloc(10)  # a partial failure: the earlier buffers stay tracked
    mem.close()
    tail = rt.log[rt.log.index("cudaStreamSynchronize") :]
    assert tail[0] == "cudaStreamSynchronize"  # before any free
    assert {f"cudaFree({a})", f"cudaFree({b})", "cudaFreeHost"} <= set(tail)
    assert tail[-1] == "cudaStreamDestroy"
    n = len(rt.log)
    mem.close()  # idempotent
    assert len(rt.log) == n


def test_cuda_python_memory_refuses_misaligned_pointers(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cuda.bindings.runtime")
    rt = StrictCudart(misaligned=True)
    monkeypatch.setattr(cpm, "_runtime", lambda: rt)
    with cpm.DeviceMemory(0) as mem:
        with pytest.raises(CudaError, match="256-byte aligned"):
            mem.alloc(100)
    assert f"cudaFree({ALIGNMENT + 8})" in rt.log  # the refused pointer is still freed


# ---------------------------------------------------------------- pycuda memory
def _strict_pycuda(monkeypatch: pytest.MonkeyPatch, log: list, *, other_on_top: bool = False):
    """``pycuda.driver`` with the documented names only (no make_context, no autoinit)."""
    driver = types.ModuleType("pycuda.driver")
    stack: list[Any] = []

    class Context:
        def push(self) -> None:
            log.append("push")
            stack.append(self)

        @staticmethod
        def pop() -> None:
            log.append("pop")
            stack.pop()

        @staticmethod
        def get_current() -> Any:
            return stack[-1] if stack else None

        def detach(self) -> None:
            log.append("detach")

    class Device:
        def __init__(self, n: int) -> None:
            log.append(f"Device({n})")

        def retain_primary_context(self) -> Context:
            log.append("retain_primary_context")
            return Context()

    class Stream:
        handle = 5

        def synchronize(self) -> None:
            log.append("synchronize")

    class Allocation:
        def __init__(self, n: int) -> None:
            self.ptr = ALIGNMENT * (len(log) + 1)

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            log.append("free")

    driver.init = lambda: log.append("init")
    driver.Device, driver.Context, driver.Stream = Device, Context, Stream
    driver.mem_alloc = Allocation
    driver.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    pkg = types.ModuleType("pycuda")
    pkg.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return stack, Context


def test_pycuda_memory_uses_the_primary_context_and_pops_only_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reclnet.runtime.backends.tensorrt import pycuda_memory

    log: list = []
    stack, context = _strict_pycuda(monkeypatch, log)
    mem = pycuda_memory.DeviceMemory(1)
    assert log[:4] == ["init", "Device(1)", "retain_primary_context", "push"]
    mem.alloc(64)
    mem.close()
    assert log[-4:] == ["synchronize", "free", "pop", "detach"] and stack == []
    # Someone pushed another context on top: close() must not pop it.
    log.clear()
    mem = pycuda_memory.DeviceMemory(0)
    other = context()
    stack.append(other)
    with pytest.raises(CudaError, match="not this runner's"):
        mem.close()
    assert "pop" not in log and stack[-1] is other


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
