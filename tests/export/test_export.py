"""ONNX export of the streaming step, pooled step and sequence model vs the PyTorch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from reclnet.config import RecLNetConfig  # noqa: E402
from reclnet.export.onnx_export import export_step, export_step_pool  # noqa: E402
from reclnet.runtime.artifacts import load_artifact  # noqa: E402
from reclnet.train.checkpoint import save_checkpoint  # noqa: E402
from reclnet.train.model import RecLNet  # noqa: E402

SMALL = RecLNetConfig(
    num_actions=5, modalities={"rgb": 40, "flow": 24}, projection_size=32, memory_size=16
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny eager steps: one thread avoids oversubscribing the 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(config: RecLNetConfig, seed: int = 0) -> RecLNet:
    torch.manual_seed(seed)
    model = RecLNet(config).eval()
    # Larger-than-init weights drive the gates away from 0.5 so that the
    # comparison exercises saturated and unsaturated regions alike.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecLNet, Path]:
    """The small GRU model exported through the CLI (step + sequence + sidecars)."""
    from reclnet.export.cli import main

    out = tmp_path_factory.mktemp("model")
    model = _model(SMALL)
    ckpt = save_checkpoint(out / "model.pt", model, epoch=3)
    assert main([str(ckpt), "--out", str(out)]) == 0
    return model, out


def _run_tracks(model: RecLNet, sess: ort.InferenceSession, frames: int, seed: int) -> float:
    """Stream random tracks (born and ending at random) through ORT and PyTorch; max abs diff."""
    rng = np.random.default_rng(seed)
    cfg = model.config
    ort_state: dict[int, np.ndarray] = {}
    pt_state: dict[int, torch.Tensor] = {}
    next_id, worst, steps_with_many = 0, 0.0, 0
    for _ in range(frames):
        for tid in [t for t in ort_state if rng.random() < 0.08]:  # tracks end
            del ort_state[tid], pt_state[tid]
        for _ in range(rng.poisson(0.6) + (0 if ort_state else 1)):  # tracks are born
            ort_state[next_id] = np.zeros(cfg.state_size, np.float32)
            pt_state[next_id] = torch.zeros(cfg.state_size)
            next_id += 1
        live = list(ort_state)
        steps_with_many += len(live) > 3
        feats = {
            s: rng.normal(size=(len(live), d)).astype(np.float32) for s, d in cfg.modalities.items()
        }
        state = np.stack([ort_state[t] for t in live])
        probs, state_out = sess.run(None, {**feats, "state": state})
        with torch.no_grad():
            pt_probs, pt_out = model.step(
                {k: torch.from_numpy(v) for k, v in feats.items()},
                torch.stack([pt_state[t] for t in live]),
            )
        worst = max(worst, float(np.abs(probs - pt_probs.numpy()).max()))
        if cfg.state_size:
            worst = max(worst, float(np.abs(state_out - pt_out.numpy()).max()))
        for i, t in enumerate(live):
            ort_state[t], pt_state[t] = state_out[i], pt_out[i]
    assert next_id > 10 and steps_with_many > 10  # the run really had many tracks
    return worst


def test_step_matches_pytorch_over_200_frames(exported: tuple[RecLNet, Path]) -> None:
    model, out = exported
    assert _run_tracks(model, _session(out / "step.onnx"), frames=200, seed=1) <= 1e-5


def test_step_sidecar_describes_graph(exported: tuple[RecLNet, Path]) -> None:
    model, out = exported
    art = load_artifact(out / "step.onnx", kind="step")
    cfg = model.config
    assert art.config == cfg
    assert art.input_names == ["rgb", "flow", "state"]
    assert art.output_names == ["probs", "state_out"]
    assert art.input("rgb").shape == ("N", 40) and art.input("state").shape == ("N", cfg.state_size)
    assert art.outputs[0].shape == ("N", cfg.num_classes)
    assert all(t.dtype == "float32" for t in art.inputs + art.outputs)
    assert art.metadata["opset"] >= 17
    assert art.metadata["source_checkpoint"]["sha256"]
    assert "torch" in art.metadata["tool_versions"]
    assert art.postprocess.window == 25
    sess = _session(out / "step.onnx")
    assert [i.name for i in sess.get_inputs()] == art.input_names
    assert [o.name for o in sess.get_outputs()] == art.output_names
    seq = load_artifact(out / "sequence.onnx", kind="sequence")
    assert seq.model_id == art.model_id != ""


@pytest.mark.parametrize(
    ("cell", "fusion", "modalities", "fold"),
    [
        ("lstm", "average", {"rgb": 20, "flow": 12}, True),
        ("fc", "gating", {"rgb": 20, "flow": 12}, True),
        ("gru", "fusion_layer", {"rgb": 20}, False),
    ],
)
def test_step_variants_match_pytorch(
    tmp_path: Path, cell: str, fusion: str, modalities: dict[str, int], fold: bool
) -> None:
    cfg = RecLNetConfig(
        num_actions=4,
        modalities=modalities,
        projection_size=16,
        memory_size=8,
        cell=cell,
        fusion=fusion,
    )
    model = _model(cfg, seed=2)
    path = export_step(model, tmp_path / "step.onnx", fold_projection=fold)
    assert _run_tracks(model, _session(path), frames=40, seed=3) <= 1e-5


def test_sequence_matches_step_loop(exported: tuple[RecLNet, Path]) -> None:
    model, out = exported
    seq = _session(out / "sequence.onnx")
    step = _session(out / "step.onnx")
    rng = np.random.default_rng(4)
    cfg = model.config
    for n, t in [(3, 17), (1, 1), (5, 40)]:
        feats = {
            s: rng.normal(size=(n, t, d)).astype(np.float32) for s, d in cfg.modalities.items()
        }
        (probs,) = seq.run(None, feats)
        assert probs.shape == (n, t, cfg.num_classes)
        state = np.zeros((n, cfg.state_size), np.float32)
        for i in range(t):
            p, state = step.run(None, {**{k: v[:, i] for k, v in feats.items()}, "state": state})
            np.testing.assert_allclose(probs[:, i], p, atol=1e-5, rtol=0)
        with torch.no_grad():
            ref, _ = model({k: torch.from_numpy(v) for k, v in feats.items()})
        np.testing.assert_allclose(probs, ref.numpy(), atol=1e-5, rtol=0)


def test_pool_step_updates_only_its_slots(tmp_path: Path) -> None:
    model = _model(SMALL, seed=5)
    path = export_step_pool(model, tmp_path / "step_pool.onnx", capacity=12)
    art = load_artifact(path, kind="step_pool")
    assert art.input("pool").shape == (12, SMALL.state_size)
    sess = _session(path)
    rng = np.random.default_rng(6)
    pool = rng.normal(size=(12, SMALL.state_size)).astype(np.float32)
    slots = np.array([7, 2, 11], np.int64)
    feats = {s: rng.normal(size=(3, d)).astype(np.float32) for s, d in SMALL.modalities.items()}
    probs, pool_out = sess.run(None, {**feats, "pool": pool, "slots": slots})
    with torch.no_grad():
        ref_p, ref_s = model.step(
            {k: torch.from_numpy(v) for k, v in feats.items()}, torch.from_numpy(pool[slots])
        )
    np.testing.assert_allclose(probs, ref_p.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(pool_out[slots], ref_s.numpy(), atol=1e-5, rtol=0)
    others = np.setdiff1d(np.arange(12), slots)
    np.testing.assert_array_equal(pool_out[others], pool[others])


@pytest.mark.parametrize(
    ("cell", "fusion"), [("gru", "fusion_layer"), ("lstm", "gating"), ("gru", "average")]
)
def test_gru_operator_step_variant_matches_pytorch(tmp_path: Path, cell: str, fusion: str) -> None:
    """The benchmark's ONNX GRU/LSTM-operator step (built with onnx.helper) is the same step."""
    import onnx

    from reclnet.export.onnx_builder import build_step_rnn_model

    cfg = RecLNetConfig(
        num_actions=4,
        modalities={"rgb": 20, "flow": 12},
        projection_size=16,
        memory_size=8,
        cell=cell,
        fusion=fusion,
    )
    model = _model(cfg, seed=7)
    path = tmp_path / "step_rnn.onnx"
    onnx.save(build_step_rnn_model(model), str(path))
    assert _run_tracks(model, _session(path), frames=40, seed=8) <= 1e-5
