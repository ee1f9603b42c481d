"""Step backends: registry, provider options, ONNX Runtime vs the PyTorch reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from reclnet_test_helpers import CONFIG, random_inputs, tiny_model  # see tests/conftest.py

from reclnet.runtime.backends import BackendError, StepRunner, available_backends, load_backend
from reclnet.runtime.backends.onnxruntime.loader import device_of, provider_list

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


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


# ------------------------------------------------------------- tensorrt
def test_tensorrt_backend_without_engine_or_package_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="tensorrt backend"):
        load_backend("tensorrt", engine=tmp_path / "step.engine")


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


# ------------------------------------------------------------- the contract
def test_available_backends_imports_no_backend_package() -> None:
    """Looking the packages up must not import them (nor the CUDA bindings)."""
    import json
    import subprocess
    import sys

    heavy = ("torch", "tensorrt", "onnxruntime", "cuda", "pycuda")
    script = (
        "import json, sys\n"
        "from reclnet.runtime.backends import available_backends\n"
        "names = available_backends()\n"
        f"heavy = {heavy!r}\n"
        "print(json.dumps({'names': names, 'loaded': sorted(m for m in sys.modules "
        "if m.split('.')[0] in heavy)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert {"torch", "onnxruntime"} <= set(out["names"])  # installed in this environment


class Softmax(StepRunner):
    """An exact numpy recurrent step (the test double of the contract tests).

    ``corrupt`` names what its next outputs get wrong; ``calls`` counts ``_step``.
    """

    name = "softmax"

    def __init__(self, config=CONFIG, max_tracks=None) -> None:
        rng = np.random.default_rng(0)
        self.config, self.max_tracks = config, max_tracks
        d = sum(config.modalities.values())
        self.w = rng.standard_normal((d + config.state_size, config.state_size)).astype(np.float32)
        self.h = rng.standard_normal((config.state_size, config.num_classes)).astype(np.float32)
        self.corrupt: str | None = None
        self.calls = 0
        self.closes = 0

    def _step(self, features, state):
        self.calls += 1
        if self.corrupt == "raise":
            raise RuntimeError("device lost")
        x = np.concatenate([*features.values(), state], axis=1)
        new = np.tanh(x @ self.w).astype(np.float32)
        logits = new @ self.h
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        bad = self.corrupt
        if bad == "probs nan":
            probs[-1, 0] = np.nan
        elif bad == "probs float64":
            probs = probs.astype(np.float64)
        elif bad == "probs columns":
            probs = probs[:, :-1]
        elif bad == "probs rows":
            probs = probs[:-1]
        elif bad == "logits":
            probs = logits.astype(np.float32)
        elif bad == "state inf":
            new[0, 0] = np.inf
        elif bad == "state shape":
            new = new[:, :-1]
        elif bad == "probs list":
            probs = probs.tolist()
        return probs, new

    def _close(self) -> None:
        self.closes += 1


def _bad_inputs():
    feats, state = random_inputs(3, seed=0)
    nan = state.copy()
    nan[2, 1] = np.nan
    inf = feats["flow"].copy()
    inf[1, 0] = np.inf
    return {
        "missing modality": (({"rgb": feats["rgb"]}, state), ValueError, r"missing \['flow'\]"),
        "unknown modality": (({**feats, "depth": feats["rgb"]}, state), ValueError, "unknown"),
        "not a dict": ((list(feats.values()), state), TypeError, "dict modality"),
        "feature list": (({**feats, "rgb": feats["rgb"].tolist()}, state), TypeError, "numpy"),
        "feature float64": (
            ({**feats, "rgb": feats["rgb"].astype(np.float64)}, state),
            TypeError,
            r"features\['rgb'\] must be float32",
        ),
        "feature rows": (({**feats, "rgb": feats["rgb"][:2]}, state), ValueError, r"\[N=3, 12\]"),
        "feature size": (
            ({**feats, "flow": np.zeros((3, 9), np.float32)}, state),
            ValueError,
            "feature size 9, the model expects 10",
        ),
        "feature inf": (({**feats, "flow": inf}, state), ValueError, r"NaN or infinite .*row 1"),
        "state float64": ((feats, state.astype(np.float64)), TypeError, "state must be float32"),
        "state size": ((feats, state[:, :5]), ValueError, r"state must be \[N, S=32\]"),
        "state nan": ((feats, nan), ValueError, r"state has NaN or infinite values \(row 2\)"),
        "state list": ((feats, state.tolist()), TypeError, "state must be a float32 numpy"),
        "no tracks": (
            ({k: v[:0] for k, v in feats.items()}, state[:0]),
            ValueError,
            r"N=0 tracks outside",
        ),
    }


@pytest.mark.parametrize("bad", list(_bad_inputs()))
def test_step_refuses_bad_input_before_the_backend_runs(bad: str) -> None:
    (features, state), exc, match = _bad_inputs()[bad]
    runner = Softmax()
    with pytest.raises(exc, match=match):
        runner.step(features, state)
    assert runner.calls == 0


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        ("probs nan", r"non-finite probabilities \(row 2\)"),
        ("probs float64", r"probs float64\[3, 5\], expected float32\[3, 5\]"),
        ("probs columns", r"probs float32\[3, 4\], expected float32\[3, 5\]"),
        ("probs rows", r"probs float32\[2, 5\]"),
        ("probs list", "expected float32"),
        ("logits", "sums to"),
        ("state inf", r"non-finite states \(row 0\)"),
        ("state shape", r"state float32\[3, 31\], expected float32\[3, 32\]"),
        ("raise", "softmax backend: step failed: device lost"),
    ],
)
def test_step_refuses_bad_backend_output(corrupt: str, match: str) -> None:
    feats, state = random_inputs(3, seed=1)
    runner = Softmax()
    runner.corrupt = corrupt
    with pytest.raises(BackendError, match=match):
        runner.step(feats, state)
    runner.corrupt = None
    probs, new = runner.step(feats, state)  # and it goes on
    assert probs.shape == (3, CONFIG.num_classes) and new.shape == state.shape


def test_step_checks_n_against_max_tracks_and_returns_the_backend_outputs() -> None:
    runner = Softmax(max_tracks=4)
    feats, state = random_inputs(4, seed=2)
    probs, new = runner.step(feats, state)
    # The base class hands the backend's outputs through unchanged.
    want_p, want_s = runner._step(dict(feats), state)
    np.testing.assert_array_equal(probs, want_p)
    np.testing.assert_array_equal(new, want_s)
    big, big_state = random_inputs(5, seed=3)
    with pytest.raises(ValueError, match=r"N=5 tracks outside the backend's max_tracks \[1, 4\]"):
        runner.step(big, big_state)


def test_closed_runner_refuses_and_closes_once() -> None:
    feats, state = random_inputs(2, seed=4)
    with Softmax() as runner:
        runner.step(feats, state)
        assert not runner.closed
    assert runner.closed and runner.closes == 1
    runner.close()
    assert runner.closes == 1
    with pytest.raises(BackendError, match="softmax backend: the runner is closed"):
        runner.step(feats, state)
    assert runner.calls == 1


def test_a_backend_must_implement_step() -> None:
    class Nothing(StepRunner):
        pass

    with pytest.raises(TypeError, match="_step"):
        Nothing()


def _real_backend(kind: str, exported):
    model, path = exported
    if kind == "torch":
        return load_backend("torch", model=model)
    return load_backend("onnxruntime", model=path, io_binding=kind == "onnxruntime-iobinding")


@pytest.mark.parametrize("kind", ["torch", "onnxruntime", "onnxruntime-iobinding"])
@pytest.mark.parametrize("bad", list(_bad_inputs()))
def test_every_backend_refuses_bad_input_the_same_way(exported, kind: str, bad: str) -> None:
    (features, state), exc, match = _bad_inputs()[bad]
    with _real_backend(kind, exported) as runner:
        with pytest.raises(exc, match=match):
            runner.step(features, state)


def test_device_state_handles_are_checked(exported) -> None:
    _, path = exported
    feats, state = random_inputs(3, seed=5)
    with load_backend("onnxruntime", model=path, io_binding=True) as runner:
        _, handle = runner.step(feats, state)
        with pytest.raises(ValueError, match=r"features\['rgb'\] must be \[N=3, 12\]"):
            runner.step({k: v[:2] for k, v in feats.items()}, handle)
        with pytest.raises(TypeError, match="state must be a float32 numpy array"):
            runner.step(feats, object())
        assert runner.fetch_state(handle).shape == (3, CONFIG.state_size)
    with pytest.raises(BackendError, match="closed"):
        runner.fetch_state(handle)


def test_tensorrt_runner_is_a_step_runner_without_an_adapter() -> None:
    """The native runner keeps the contract itself; importing it needs no tensorrt."""
    import importlib.util

    from reclnet.runtime.backends import BACKENDS
    from reclnet.runtime.backends.tensorrt.runner import TensorRTStepRunner

    assert issubclass(TensorRTStepRunner, StepRunner) and TensorRTStepRunner.device_resident
    assert BACKENDS["tensorrt"] == "reclnet.runtime.backends.tensorrt.loader"
    assert importlib.util.find_spec("reclnet.runtime.backends.trt_adapter") is None


# ------------------------------------------------- provider checks (issue 16)
def test_provider_fallback_names_what_the_session_dropped() -> None:
    from reclnet.runtime.backends.onnxruntime.runner import provider_fallback

    asked = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_fallback(asked, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "TensorrtExecutionProvider"
    ]
    assert provider_fallback(asked, asked) == []
    assert provider_fallback(["CPUExecutionProvider"], ["CPUExecutionProvider"]) == []


def _pretend_cuda_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ORT *list* CUDA, as a GPU build does when libcudart / libnvinfer cannot load."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime really has CUDA")
    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*real(), "CUDAExecutionProvider"])
    session = ort.InferenceSession

    def falls_back(path, sess_options=None, providers=(), provider_options=()):
        # A GPU build whose CUDA provider fails to load keeps only the CPU provider
        # (and drops its options): what get_providers() then reports.
        keep = [
            (p, o)
            for p, o in zip(providers, provider_options, strict=True)
            if p == "CPUExecutionProvider"
        ]
        return session(
            path,
            sess_options=sess_options,
            providers=[p for p, _ in keep],
            provider_options=[o for _, o in keep],
        )

    monkeypatch.setattr(ort, "InferenceSession", falls_back)


def test_silent_cpu_fallback_is_an_error(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session really runs on the CPU (ORT falls back): get_providers() says so, we fail."""
    _, path = exported
    _pretend_cuda_is_available(monkeypatch)
    with pytest.raises(BackendError, match=r"\['CUDAExecutionProvider'\] requested but"):
        load_backend("onnxruntime", model=path, providers=["cuda"])


def test_allowed_fallback_warns_and_records(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = exported
    _pretend_cuda_is_available(monkeypatch)
    with pytest.warns(RuntimeWarning, match="requested but the session runs on"):
        runner = load_backend("onnxruntime", model=path, providers=["cuda"], allow_fallback=True)
    with runner:
        assert runner.active_providers == ["CPUExecutionProvider"]
        assert runner.device == "cpu" and not runner.device_resident
        feats, state = random_inputs(3, 0)
        probs, _ = runner.step(feats, state)
        assert probs.shape == (3, CONFIG.num_classes)


def test_tensorrt_ep_gets_one_profile_over_n() -> None:
    from reclnet.runtime.backends.onnxruntime.loader import trt_profile_options

    opts = trt_profile_options({"rgb": 24, "state": 48}, 1, 32, 1024)
    assert opts == {
        "trt_profile_min_shapes": "rgb:1x24,state:1x48",
        "trt_profile_opt_shapes": "rgb:32x24,state:32x48",
        "trt_profile_max_shapes": "rgb:1024x24,state:1024x48",
    }
    with pytest.raises(ValueError, match="min <= opt <= max"):
        trt_profile_options({"rgb": 24}, 4, 2, 8)
    with pytest.raises(ValueError, match="cannot be written"):
        trt_profile_options({"a:b": 24}, 1, 2, 8)


# ------------------------------------------------------------- gpu-check
def test_churn_schedule_reaches_every_size_and_mixes_steady_frames() -> None:
    from reclnet.runtime.backends.gpu_check import TARGETS, churn_schedule

    sched = churn_schedule(40)
    sizes = {len(ids) for ids in sched}
    assert set(TARGETS) <= sizes
    same = sum(a == b for a, b in zip(sched, sched[1:], strict=False))
    assert 0 < same < len(sched) - 1  # both device-resident and host-state frames
    assert all(len(set(ids)) == len(ids) for ids in sched)


def test_gpu_check_dry_run_checks_the_cpu_twins(tmp_path: Path, capsys) -> None:
    import json

    from reclnet.runtime.backends.gpu_check import failed, main

    assert main(["--dry", "--size", "tiny", "--frames", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DRY RUN")
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    rows = {(r["name"], r["precision"]): r for r in report["results"]}
    assert all(r["status"] == "ok" for k, r in rows.items() if k[0].startswith("ort-cpu"))
    assert rows[("tensorrt/pycuda", "int8")]["status"] == "not run (dry)"
    # The same rows in a real run are failures: nothing is skipped silently there.
    assert failed({**report, "dry": False})
