"""ONNX export of the streaming step vs the PyTorch model; the projection folding; the op set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from reclnet.config import RecLNetConfig  # noqa: E402
from reclnet.export.graphs import fold_input_projection  # noqa: E402
from reclnet.export.onnx_export import export_step  # noqa: E402
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
    # Non-trivial feature standardization, so that every comparison also checks its folding.
    g = torch.Generator().manual_seed(seed + 100)
    model.set_feature_statistics(
        {
            m: torch.randn(64, d, generator=g) * (0.5 + 1.5 * torch.rand(d, generator=g))
            + (torch.rand(d, generator=g) - 0.5)
            for m, d in config.modalities.items()
        }
    )
    return model


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecLNet, Path]:
    """The small GRU model exported through the CLI (step + sidecar)."""
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
    assert art.model_id != ""
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "step.json", "step.onnx"]


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


#: What the exported step may contain: the written-out cells and heads, nothing fused or
#: data-dependent (Identity: the fc baseline passes its empty state through).
PLAIN_OPS = {"MatMul", "Add", "Sub", "Mul", "Div", "Sigmoid", "Tanh", "Relu", "Slice", "Concat"}
PLAIN_OPS |= {"Softmax", "Identity"}


@pytest.mark.parametrize(
    ("cell", "fusion", "fold"),
    [("gru", "fusion_layer", True), ("lstm", "gating", False), ("fc", "average", True)],
)
def test_step_graph_is_plain_ops(tmp_path: Path, cell: str, fusion: str, fold: bool) -> None:
    """model.step exports as MatMul/Sigmoid/Tanh/...; each modality input feeds one MatMul."""
    import onnx
    from onnx import numpy_helper

    cfg = RecLNetConfig(
        num_actions=4,
        modalities={"rgb": 20, "flow": 12},
        projection_size=16,
        memory_size=8,
        cell=cell,
        fusion=fusion,
    )
    path = export_step(_model(cfg, seed=9), tmp_path / "step.onnx", fold_projection=fold)
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert ops <= PLAIN_OPS, ops - PLAIN_OPS
    assert {"MatMul", "Softmax"} <= ops and "Gemm" not in ops
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    gates = {"gru": 3 * 8, "lstm": 4 * 8, "fc": cfg.fc_hidden_size}[cell]
    for name, d in cfg.modalities.items():
        (first,) = [n for n in graph.node if name in n.input]
        assert first.op_type == "MatMul" and first.input[0] == name
        # Pre-transposed weights [D_in, D_out]: folded, layer 0 reads the features directly.
        assert inits[first.input[1]].shape == (d, gates if fold else cfg.projection_size)


@pytest.mark.parametrize("cell", ["gru", "lstm", "fc"])
def test_folded_model_equals_model(cell: str) -> None:
    cfg = RecLNetConfig(
        num_actions=4,
        modalities={"rgb": 20, "flow": 12},
        projection_size=16,
        memory_size=8,
        cell=cell,
    )
    model = _model(cfg, seed=10)
    folded = fold_input_projection(model)
    assert isinstance(model.encoders["rgb"].projection, torch.nn.Linear)  # original untouched
    g = torch.Generator().manual_seed(11)
    feats = {s: torch.randn(3, 12, d, generator=g) for s, d in cfg.modalities.items()}
    with torch.no_grad():
        ref, ref_state = model(feats)
        got, got_state = folded(feats)
        step_p, step_s = folded.step({s: x[:, 0] for s, x in feats.items()})
    # float64 products, one float32 rounding of the folded weights: far below 1e-5.
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_state, ref_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(step_p, ref[:, 0], atol=1e-5, rtol=0)
    assert step_s.shape == (3, cfg.state_size)
    with pytest.raises(ValueError, match="already folded"):
        fold_input_projection(folded)


def test_folding_shrinks_the_paper_model() -> None:
    """Per modality, D*P + P + 3M*P projection and layer-0 weights become 3M*D."""
    model = RecLNet(RecLNetConfig())
    folded = fold_input_projection(model)
    assert sum(p.numel() for p in model.parameters()) == 11_174_937
    d, p, g = 4096, 1024, 3 * 256
    assert sum(p.numel() for p in folded.parameters()) == 11_174_937 - 2 * (
        d * p + p + g * p - g * d
    )
    assert sum(p.numel() for p in folded.parameters()) == 7_502_873
