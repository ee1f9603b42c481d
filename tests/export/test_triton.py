"""Triton model repository: config.pbtxt parses into Triton's ModelConfig and matches the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed"
)

from google.protobuf import text_format  # noqa: E402

from reclnet.config import RecLNetConfig  # noqa: E402
from reclnet.export.onnx_export import export_step  # noqa: E402
from reclnet.export.triton import write_triton_repository  # noqa: E402
from reclnet.runtime.artifacts import load_artifact  # noqa: E402
from reclnet.train.model import RecLNet  # noqa: E402

CFG = RecLNetConfig(
    num_actions=3, modalities={"rgb": 12, "flow": 10}, projection_size=8, memory_size=4
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("triton")
    step = export_step(RecLNet(CFG).eval(), out / "model" / "step.onnx")
    write_triton_repository(step, out / "repo", max_batch_size=64)
    return step, out / "repo"


def test_config_parses_into_triton_model_config(repo: tuple[Path, Path]) -> None:
    import onnx

    _, root = repo
    config = model_config_pb2.ModelConfig()
    text_format.Parse((root / "reclnet_step" / "config.pbtxt").read_text(), config)
    assert config.name == "reclnet_step" and config.backend == "onnxruntime"
    assert config.max_batch_size == 64
    graph = onnx.load(str(root / "reclnet_step" / "1" / "model.onnx")).graph
    g_inputs = {i.name: i for i in graph.input}
    g_outputs = {o.name for o in graph.output}

    def dims(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    for tensor in config.input:
        assert tensor.name in g_inputs
        assert dims(g_inputs[tensor.name]) == ["N", *tensor.dims]  # batch dim first
        assert tensor.data_type == model_config_pb2.TYPE_FP32
    assert [o.name for o in config.output] == ["probs"] and "probs" in g_outputs
    seq = config.sequence_batching
    (state,) = seq.state
    assert state.input_name in g_inputs and state.output_name in g_outputs
    assert list(state.dims) == [CFG.state_size] and state.initial_state[0].zero_data
    controls = {c.name: c.control[0].kind for c in seq.control_input}
    cs = model_config_pb2.ModelSequenceBatching.Control
    assert controls == {"START": cs.CONTROL_SEQUENCE_START, "END": cs.CONTROL_SEQUENCE_END}
    assert set(controls) <= set(g_inputs)
    # every graph input is either a declared input, the implicit state or a control
    assert set(g_inputs) == {t.name for t in config.input} | {state.input_name} | set(controls)
    assert load_artifact(root / "reclnet_step" / "1" / "model.onnx").kind == "step"


def test_served_graph_equals_step_and_start_resets(repo: tuple[Path, Path]) -> None:
    step, root = repo
    base = ort.InferenceSession(str(step), providers=["CPUExecutionProvider"])
    served = ort.InferenceSession(
        str(root / "reclnet_step" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    n = 4
    feats = {k: rng.normal(size=(n, d)).astype(np.float32) for k, d in CFG.modalities.items()}
    state = rng.normal(size=(n, CFG.state_size)).astype(np.float32)
    start = np.array([[0], [1], [0], [1]], np.float32)
    end = np.zeros((n, 1), np.float32)
    probs, state_out = served.run(None, {**feats, "state": state, "START": start, "END": end})
    reset = state * (1 - start)
    ref_p, ref_s = base.run(None, {**feats, "state": reset})
    np.testing.assert_allclose(probs, ref_p, atol=1e-6)
    np.testing.assert_allclose(state_out, ref_s, atol=1e-6)
    zero_p, _ = base.run(None, {**feats, "state": np.zeros_like(state)})
    np.testing.assert_allclose(probs[1], zero_p[1], atol=1e-6)  # START row = a fresh track


def test_cli_writes_the_repository(tmp_path: Path) -> None:
    from reclnet.export.cli import main
    from reclnet.train.checkpoint import save_checkpoint

    torch.manual_seed(1)
    ckpt = save_checkpoint(tmp_path / "m.pt", RecLNet(CFG))
    code = main(
        [
            str(ckpt),
            "--out",
            str(tmp_path / "out"),
            "--triton",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0
    assert (tmp_path / "r" / "reclnet_step" / "config.pbtxt").exists()
    assert (tmp_path / "r" / "reclnet_step" / "1" / "model.onnx").exists()
