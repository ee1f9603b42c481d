"""The OpenVINO backend against ONNX Runtime fp32 on the same step.onnx (the tiny model)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reclnet_test_helpers import CONFIG, random_inputs  # see tests/conftest.py

from reclnet.runtime.backends import BackendError, StepRunner, available_backends, load_backend

pytest.importorskip("openvino", reason="the openvino extra is not installed")
pytest.importorskip("onnxruntime")

from reclnet.runtime.backends.openvino.loader import openvino_precision  # noqa: E402
from reclnet.runtime.backends.openvino.runner import OpenVinoRunner, graph_mismatch  # noqa: E402

#: Frames each chain runs, carrying the state from one step to the next.
FRAMES = 6
#: bf16 keeps 8 significant bits (~2.4 decimal digits). Measured on the tiny model over
#: N in (1, 3, 17), 5 chains of 8 frames, with OpenVINO 2026.4 in bf16 (AMX): max |probs
#: difference| 5.8e-4, max |state difference| 4.1e-3 (states up to ~0.8). The bounds
#: are ~35x and ~12x those.
BF16_PROBS = 0.02
BF16_STATE = 0.05


def _chains(runner: StepRunner, ref: StepRunner, n: int, seed: int):
    """Both runners over FRAMES frames from the same start, each carrying its own state;
    yields (probs, state, ref probs, ref state) per frame."""
    _, state = random_inputs(n, seed=seed)
    ref_state = state
    for t in range(FRAMES):
        feats, _ = random_inputs(n, seed=1000 * seed + t)
        probs, state = runner.step(feats, state)
        ref_probs, ref_state = ref.step(feats, ref_state)
        yield probs, state, ref_probs, ref_state


@pytest.fixture(scope="module")
def reference(exported):
    _, path = exported
    with load_backend("onnxruntime", model=path) as ref:
        yield ref


@pytest.mark.parametrize("n", [1, 3, 17])
def test_f32_matches_onnxruntime_over_frames(exported, reference, n: int) -> None:
    _, path = exported
    with load_backend("openvino", model=path, precision="f32") as runner:
        assert isinstance(runner, OpenVinoRunner) and runner.name == "openvino"
        assert runner.precision == "fp32"  # asked f32: no CPU lowers it
        assert openvino_precision(runner.inference_precision_hint) == "fp32"
        for probs, state, ref_probs, ref_state in _chains(runner, reference, n, seed=n):
            assert probs.dtype == np.float32 and probs.shape == (n, CONFIG.num_classes)
            np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-4)
            np.testing.assert_allclose(state, ref_state, rtol=0, atol=1e-4)


@pytest.mark.parametrize("precision", ["default", "bf16"])
@pytest.mark.parametrize("n", [1, 3, 17])
def test_default_and_bf16_stay_within_bf16_rounding(
    exported, reference, precision: str, n: int
) -> None:
    _, path = exported
    with load_backend("openvino", model=path, precision=precision) as runner:
        # What ran is read back: bf16 where the CPU has it, fp32 otherwise.
        assert runner.requested_precision == precision
        assert runner.precision in ("fp32", "bf16")
        assert runner.precision == openvino_precision(runner.inference_precision_hint)
        for probs, state, ref_probs, ref_state in _chains(runner, reference, n, seed=10 + n):
            assert np.abs(probs - ref_probs).max() < BF16_PROBS
            assert np.abs(state - ref_state).max() < BF16_STATE
            # The top class agrees wherever the reference's top two are further apart
            # than the two runners' probabilities can be.
            top2 = np.sort(ref_probs, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 2 * BF16_PROBS
            np.testing.assert_array_equal(
                probs.argmax(axis=1)[clear], ref_probs.argmax(axis=1)[clear]
            )


def test_threads_option_and_one_compile_for_every_n(exported, reference) -> None:
    _, path = exported
    with load_backend("openvino", model=path, precision="f32", threads=1) as runner:
        compiled = runner._compiled.compiled
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        # Unpinned: several processes' models would otherwise share the first cores.
        assert compiled.get_property("ENABLE_CPU_PINNING") is False
        for n in (5, 1, 17, 2):  # N changes every frame on the one compiled model
            feats, state = random_inputs(n, seed=40 + n)
            probs, new = runner.step(feats, state)
            ref_probs, ref_new = reference.step(feats, state)
            np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-4)
            np.testing.assert_allclose(new, ref_new, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"precision": "fp64"}, "unknown precision 'fp64'"),
        ({"precision": "fp32"}, r"use one of \['default', 'f32', 'bf16'\]"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"threads": 1.5}, "threads must be a positive integer"),
    ],
)
def test_bad_options_are_named(exported, options: dict, match: str) -> None:
    _, path = exported
    with pytest.raises(ValueError, match=match):
        load_backend("openvino", model=path, **options)


def _bad_inputs():
    feats, state = random_inputs(3, seed=0)
    nan = state.copy()
    nan[2, 1] = np.nan
    return {
        "missing modality": ({"rgb": feats["rgb"]}, state),
        "unknown modality": ({**feats, "depth": feats["rgb"]}, state),
        "feature rows": ({**feats, "rgb": feats["rgb"][:2]}, state),
        "feature size": ({**feats, "flow": np.zeros((3, 9), np.float32)}, state),
        "feature float64": ({**feats, "rgb": feats["rgb"].astype(np.float64)}, state),
        "state size": (feats, state[:, :5]),
        "state nan": (feats, nan),
        "state list": (feats, state.tolist()),
        "no tracks": ({k: v[:0] for k, v in feats.items()}, state[:0]),
    }


@pytest.mark.parametrize("bad", list(_bad_inputs()))
def test_bad_input_raises_what_onnxruntime_raises(exported, reference, bad: str) -> None:
    _, path = exported
    features, state = _bad_inputs()[bad]
    with pytest.raises((TypeError, ValueError)) as want:
        reference.step(features, state)
    with load_backend("openvino", model=path) as runner:
        with pytest.raises(type(want.value)) as got:
            runner.step(features, state)
    # The base class writes the message; only a backend's own name may differ.
    assert str(got.value) == str(want.value).replace("onnxruntime", "openvino")


def test_closing_twice_is_fine_and_a_closed_runner_refuses(exported) -> None:
    _, path = exported
    feats, state = random_inputs(2, seed=3)
    with load_backend("openvino", model=path) as runner:
        runner.step(feats, state)
    assert runner.closed
    runner.close()
    with pytest.raises(BackendError, match="openvino backend: the runner is closed"):
        runner.step(feats, state)


def test_corrupt_or_mismatched_model_is_refused(exported, tmp_path: Path) -> None:
    _, path = exported
    bad = tmp_path / "step.onnx"
    shutil.copy(path, bad)
    shutil.copy(path.with_suffix(".json"), tmp_path / "step.json")
    with bad.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BackendError, match="openvino backend: .*sha256"):
        load_backend("openvino", model=bad)
    # A sidecar naming other inputs than the graph has: refused before any frame.
    from reclnet.runtime.artifacts import load_artifact
    from reclnet.runtime.backends.openvino.loader import read_model

    artifact = load_artifact(path, kind="step")
    graph = read_model(path)
    assert graph_mismatch(graph, artifact) == ""
    renamed = tuple(
        dataclasses.replace(t, name="depth") if t.name == "rgb" else t for t in artifact.inputs
    )
    assert "sidecar declares" in graph_mismatch(
        graph, dataclasses.replace(artifact, inputs=renamed)
    )
    wide = tuple(
        dataclasses.replace(t, shape=(t.shape[0], 99)) if t.name == "state" else t
        for t in artifact.inputs
    )
    assert "'state' has shape" in graph_mismatch(graph, dataclasses.replace(artifact, inputs=wide))


def test_missing_openvino_is_a_backend_error(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = exported
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BackendError, match="backend 'openvino' is not available"):
        load_backend("openvino", model=path)


def test_listed_but_not_imported_by_the_runtime() -> None:
    """``openvino`` is listed when installed, and importing the runtime, the registry and
    the backend's loader does not import it."""
    assert "openvino" in available_backends()
    script = (
        "import json, sys\n"
        "import reclnet.runtime\n"
        "from reclnet.runtime.backends import available_backends\n"
        "import reclnet.runtime.backends.openvino.loader\n"
        "names = available_backends()\n"
        "print(json.dumps({'names': names, 'loaded': sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('openvino', 'nncf'))}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and "openvino" in out["names"]
