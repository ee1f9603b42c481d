"""RecLNet graphs written directly with ONNX's recurrent operators (GRU / LSTM).

The sequence model ``[N, T, D] -> [N, T, C+1]`` is built here with
``onnx.helper`` rather than traced: the ONNX GRU / LSTM operators run a whole
track in one fused kernel in ONNX Runtime, and torch's exporter of
``nn.GRU`` in torch 2.14 emits several deprecation and user warnings. The same
builder makes the *GRU-operator* variant of the streaming step (T = 1), which
the benchmark compares with the unrolled step of reclnet.export.graphs.

Weights come from a :class:`~reclnet.train.model.RecLNet`; PyTorch's gate
orders (GRU r, z, n; LSTM i, f, g, o) are permuted to ONNX's (GRU z, r, h;
LSTM i, o, f, c), and ``linear_before_reset=1`` gives PyTorch's GRU formula.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from reclnet.train.model import RecLNet

__all__ = ["build_sequence_model", "build_step_rnn_model"]

_GRU_ORDER = (1, 0, 2)  # PyTorch r, z, n -> ONNX z, r, h
_LSTM_ORDER = (0, 3, 1, 2)  # PyTorch i, f, g, o -> ONNX i, o, f, c


def _reorder(w: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(w, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


class _Graph:
    """A tiny accumulator of nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: object) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs

    def op1(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        return self.op(op_type, inputs, **attrs)[0]


def _layer_weights(model: RecLNet, modality: str, i: int) -> tuple[np.ndarray, ...]:
    """(W_ih, b_ih, W_hh, b_hh) of layer i in float64, the projection folded into layer 0."""
    enc = model.encoders[modality]
    layer = enc.layers[i]
    if model.config.cell == "fc":
        w_ih, b_ih = layer[0].weight, layer[0].bias
        w_hh = b_hh = None
    else:
        w_ih, b_ih, w_hh, b_hh = (
            layer.weight_ih_l0,
            layer.bias_ih_l0,
            layer.weight_hh_l0,
            layer.bias_hh_l0,
        )
    w_ih = w_ih.detach().double().numpy()
    b_ih = b_ih.detach().double().numpy()
    if i == 0:
        pw = enc.projection.weight.detach().double().numpy()
        pb = enc.projection.bias.detach().double().numpy()
        w_ih, b_ih = w_ih @ pw, w_ih @ pb + b_ih
    if w_hh is None:
        return w_ih, b_ih, None, None
    return w_ih, b_ih, w_hh.detach().double().numpy(), b_hh.detach().double().numpy()


def _heads(g: _Graph, model: RecLNet, outputs: list[str]) -> str:
    """Classifier(s) + fusion on ``[..., F]`` modality outputs -> probabilities ``[..., C+1]``."""
    f32 = np.float32

    def linear(x: str, lin: object) -> str:
        w = lin.weight.detach().numpy().T.astype(f32)
        b = lin.bias.detach().numpy().astype(f32)
        return g.op1("Add", [g.op1("MatMul", [x, g.const("head_w", w)]), g.const("head_b", b)])

    names = model.config.modality_names
    if model.mode == "fusion_layer":
        cat = g.op1("Concat", outputs, axis=-1)
        return g.op1("Softmax", [linear(cat, model.fusion_head)], axis=-1)
    logits = [linear(o, model.heads[n]) for o, n in zip(outputs, names, strict=True)]
    if model.mode == "single":
        return g.op1("Softmax", [logits[0]], axis=-1)
    if model.mode == "average":
        probs = [g.op1("Softmax", [lg], axis=-1) for lg in logits]
        total = g.op1("Sum", probs)
        return g.op1("Mul", [total, g.const("inv_n", np.array(1.0 / len(probs), f32))])
    gates = model.gates.detach().numpy().astype(f32)
    mixed = [g.op1("Mul", [lg, g.const("gate", gates[i])]) for i, lg in enumerate(logits)]
    return g.op1("Softmax", [g.op1("Sum", mixed)], axis=-1)


def _recurrent_layer(
    g: _Graph, model: RecLNet, modality: str, i: int, x: str, init: list[str] | None
) -> tuple[str, list[str]]:
    """One layer on time-major ``x [T, N, D_in]``; returns ``[T, N, M]`` and the final state(s)."""
    cfg = model.config
    m = cfg.memory_size
    w_ih, b_ih, w_hh, b_hh = _layer_weights(model, modality, i)
    f32 = np.float32
    if cfg.cell == "fc":
        y = g.op1("MatMul", [x, g.const("fc_w", w_ih.T.astype(f32))])
        return g.op1("Relu", [g.op1("Add", [y, g.const("fc_b", b_ih.astype(f32))])]), []
    order = _GRU_ORDER if cfg.cell == "gru" else _LSTM_ORDER
    w = g.const("W", _reorder(w_ih, order)[None].astype(f32))
    r = g.const("R", _reorder(w_hh, order)[None].astype(f32))
    b = g.const(
        "B", np.concatenate([_reorder(b_ih, order), _reorder(b_hh, order)])[None].astype(f32)
    )
    inputs = [x, w, r, b, ""]
    if init is not None:
        inputs += init
    if cfg.cell == "gru":
        y, y_h = g.op("GRU", inputs, n_out=2, hidden_size=m, linear_before_reset=1)
        finals = [y_h]
    else:
        y, y_h, y_c = g.op("LSTM", inputs, n_out=3, hidden_size=m)
        finals = [y_h, y_c]
    axis1 = g.const("axis1", np.array([1], np.int64))
    return g.op1("Squeeze", [y, axis1]), finals


def build_sequence_model(model: RecLNet, opset: int = 18) -> onnx.ModelProto:
    """The sequence model: ``{modality} [N, T, D] -> probs [N, T, C+1]`` from zero state.

    Parameters
    ----------
    model : RecLNet
        Trained model.
    opset : int
        Default-domain opset (>= 14 for GRU/LSTM with these attributes).

    Returns
    -------
    onnx.ModelProto
        Checked model with dynamic N and T.
    """
    cfg = model.config
    g = _Graph()
    perm = [1, 0, 2]
    outputs = []
    for modality in cfg.modality_names:
        x = g.op1("Transpose", [modality], perm=perm)  # [T, N, D]
        outs = []
        for i in range(cfg.num_layers):
            x, _ = _recurrent_layer(g, model, modality, i, x, None)
            outs.append(x)
        outputs.append(outs[0] if len(outs) == 1 else g.op1("Concat", outs, axis=-1))
    probs_tn = _heads(g, model, outputs)
    g.nodes.append(helper.make_node("Transpose", [probs_tn], ["probs"], perm=perm, name="out"))
    inputs = [
        helper.make_tensor_value_info(s, TensorProto.FLOAT, ["N", "T", d])
        for s, d in cfg.modalities.items()
    ]
    out = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "T", cfg.num_classes])]
    graph = helper.make_graph(g.nodes, "reclnet_sequence", inputs, out, g.inits)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="reclnet"
    )
    onnx.checker.check_model(proto)
    return proto


def build_step_rnn_model(model: RecLNet, opset: int = 18) -> onnx.ModelProto:
    """The streaming step built on the ONNX GRU / LSTM operators with T = 1.

    Same I/O as the unrolled step (``{modality} [N, D], state [N, S] -> probs,
    state_out``); used to measure which form runs faster.

    Returns
    -------
    onnx.ModelProto
    """
    cfg = model.config
    if cfg.cell == "fc":
        raise ValueError("the fc baseline has no recurrent operator to compare")
    g = _Graph()
    m = cfg.memory_size
    axis0 = g.const("axis0", np.array([0], np.int64))
    axis1 = g.const("axis1", np.array([1], np.int64))
    slices = cfg.state_slices()
    outputs, states = [], []
    for modality in cfg.modality_names:
        x = g.op1("Unsqueeze", [modality, axis0])  # [1, N, D]
        outs = []
        for i in range(cfg.num_layers):
            sl = slices[(modality, i)]
            parts = [(sl.start, sl.start + m)]
            if cfg.cell == "lstm":
                parts.append((sl.start + m, sl.stop))
            init = []
            for a, b in parts:
                piece = g.op1(
                    "Slice",
                    [
                        "state",
                        g.const("s", np.array([a], np.int64)),
                        g.const("e", np.array([b], np.int64)),
                        axis1,
                    ],
                )
                init.append(g.op1("Unsqueeze", [piece, axis0]))
            x, finals = _recurrent_layer(g, model, modality, i, x, init)
            states += [g.op1("Squeeze", [f, axis0]) for f in finals]
            outs.append(x)
        outputs.append(outs[0] if len(outs) == 1 else g.op1("Concat", outs, axis=-1))
    probs = _heads(g, model, outputs)  # [1, N, C+1]
    g.nodes.append(helper.make_node("Squeeze", [probs, axis0], ["probs"], name="probs_out"))
    g.nodes.append(helper.make_node("Concat", states, ["state_out"], axis=1, name="state_cat"))
    inputs = [
        helper.make_tensor_value_info(s, TensorProto.FLOAT, ["N", d])
        for s, d in cfg.modalities.items()
    ] + [helper.make_tensor_value_info("state", TensorProto.FLOAT, ["N", cfg.state_size])]
    out = [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", cfg.num_classes]),
        helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["N", cfg.state_size]),
    ]
    graph = helper.make_graph(g.nodes, "reclnet_step_rnn", inputs, out, g.inits)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="reclnet"
    )
    onnx.checker.check_model(proto)
    return proto
