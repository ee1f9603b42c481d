"""Export-friendly PyTorch graphs of a trained RecLNet: the streaming step and the pooled step.

The training model runs ``nn.GRU`` / ``nn.LSTM`` layers; here the same weights
are re-expressed as one *unrolled* cell step (MatMul, Sigmoid, Tanh, Mul, Add)
because that is what exports to a small ONNX graph every runtime executes fast
(ONNX Runtime CPU, the TensorRT ONNX parser). The input projection is linear
and feeds only the first recurrent layer, so it can be folded into that layer's
input weights (``W_ih @ W_proj``): mathematically identical, fewer bytes to
modality per step (see the "Export" README section for the measured gain).

Every graph here takes its weights from a :class:`~reclnet.train.model.RecLNet`
and is compared against it in tests/test_export.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reclnet.config import RecLNetConfig
from reclnet.train.model import RecLNet

__all__ = ["PoolStepGraph", "StepGraph"]


class _Layer(nn.Module):
    """One recurrent (or fc) layer as explicit matrices, weights pre-transposed.

    ``w_ih`` is ``[D_in, G*M]`` so that ``x @ w_ih`` is a plain MatMul with no
    Transpose in the graph; the gate order is PyTorch's (GRU: r, z, n; LSTM:
    i, f, g, o).
    """

    def __init__(
        self, cell: str, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor | None, b_hh: Tensor | None
    ) -> None:
        super().__init__()
        self.cell = cell
        self.w_ih = nn.Parameter(w_ih.detach().t().contiguous(), requires_grad=False)
        self.b_ih = nn.Parameter(b_ih.detach().clone(), requires_grad=False)
        if w_hh is not None:
            self.w_hh = nn.Parameter(w_hh.detach().t().contiguous(), requires_grad=False)
            self.b_hh = nn.Parameter(b_hh.detach().clone(), requires_grad=False)
        self.m = w_hh.shape[1] if w_hh is not None else w_ih.shape[0]

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        m = self.m
        gi = torch.matmul(x, self.w_ih) + self.b_ih
        if self.cell == "fc":
            return torch.relu(gi), None
        assert state is not None
        h = state[:, :m]
        gh = torch.matmul(h, self.w_hh) + self.b_hh
        if self.cell == "gru":
            rz = torch.sigmoid(gi[:, : 2 * m] + gh[:, : 2 * m])
            r, z = rz[:, :m], rz[:, m:]
            n = torch.tanh(gi[:, 2 * m :] + r * gh[:, 2 * m :])
            h_new = n + z * (h - n)  # == (1 - z) * n + z * h, one op fewer
            return h_new, h_new
        c = state[:, m:]
        g = gi + gh
        ifo = torch.sigmoid(torch.cat([g[:, : 2 * m], g[:, 3 * m :]], dim=1))
        i, f, o = ifo[:, :m], ifo[:, m : 2 * m], ifo[:, 2 * m :]
        c_new = f * c + i * torch.tanh(g[:, 2 * m : 3 * m])
        h_new = o * torch.tanh(c_new)
        return h_new, torch.cat([h_new, c_new], dim=1)


def _layers_of(model: RecLNet, modality: str, fold_projection: bool) -> nn.ModuleList:
    """The unrolled layers of one modality, the projection folded into layer 0 or kept apart."""
    config = model.config
    enc = model.encoders[modality]
    proj_w, proj_b = enc.projection.weight.double(), enc.projection.bias.double()
    layers = []
    for i, layer in enumerate(enc.layers):
        if config.cell == "fc":
            w_ih, b_ih = layer[0].weight.double(), layer[0].bias.double()
            w_hh = b_hh = None
        else:
            w_ih, b_ih = layer.weight_ih_l0.double(), layer.bias_ih_l0.double()
            w_hh, b_hh = layer.weight_hh_l0, layer.bias_hh_l0
        if i == 0 and fold_projection:
            # W (P x) + b with x = A d + a  ==  (W A) d + (W a + b); computed in float64
            # so that folding adds no rounding beyond the final cast to float32.
            w_ih, b_ih = w_ih @ proj_w, w_ih @ proj_b + b_ih
        layers.append(_Layer(config.cell, w_ih.float(), b_ih.float(), w_hh, b_hh))
    return nn.ModuleList(layers)


class _Heads(nn.Module):
    """The classifier(s) and the modality fusion, producing probabilities."""

    def __init__(self, model: RecLNet) -> None:
        super().__init__()
        self.mode = model.mode
        self.names = model.config.modality_names
        if self.mode == "fusion_layer":
            self.w = nn.Parameter(model.fusion_head.weight.detach().t().contiguous(), False)
            self.b = nn.Parameter(model.fusion_head.bias.detach().clone(), False)
        else:
            self.ws = nn.ParameterList(
                [
                    nn.Parameter(model.heads[n].weight.detach().t().contiguous(), False)
                    for n in self.names
                ]
            )
            self.bs = nn.ParameterList(
                [nn.Parameter(model.heads[n].bias.detach().clone(), False) for n in self.names]
            )
        if self.mode == "gating":
            self.gates = nn.Parameter(model.gates.detach().clone(), False)

    def forward(self, outputs: list[Tensor]) -> Tensor:
        if self.mode == "fusion_layer":
            return torch.softmax(torch.matmul(torch.cat(outputs, dim=-1), self.w) + self.b, dim=-1)
        logits = [torch.matmul(o, w) + b for o, w, b in zip(outputs, self.ws, self.bs, strict=True)]
        if self.mode == "single":
            return torch.softmax(logits[0], dim=-1)
        if self.mode == "average":
            probs = [torch.softmax(lg, dim=-1) for lg in logits]
            return sum(probs[1:], probs[0]) / float(len(probs))
        mixed = [self.gates[i] * lg for i, lg in enumerate(logits)]
        return torch.softmax(sum(mixed[1:], mixed[0]), dim=-1)


class StepGraph(nn.Module):
    """One streaming step of RecLNet for N live tracks.

    ``forward(*features, state)``: one float32 ``[N, D_s]`` tensor per modality in
    ``config.modalities`` order, then the packed state ``[N, S]``; returns
    ``probs [N, C+1]`` and ``state_out [N, S]`` (layout of
    :mod:`reclnet.config`). Equals :meth:`RecLNet.step` up to float rounding.

    Parameters
    ----------
    model : RecLNet
        Trained model; its weights are copied.
    fold_projection : bool
        Fold each modality's input projection into its first layer.
    """

    def __init__(self, model: RecLNet, *, fold_projection: bool = True) -> None:
        super().__init__()
        self.config: RecLNetConfig = model.config
        self.fold_projection = fold_projection
        self.modalities = nn.ModuleList(
            [_layers_of(model, s, fold_projection) for s in self.config.modality_names]
        )
        if not fold_projection:
            self.proj_w = nn.ParameterList(
                [
                    nn.Parameter(
                        model.encoders[s].projection.weight.detach().t().contiguous(), False
                    )
                    for s in self.config.modality_names
                ]
            )
            self.proj_b = nn.ParameterList(
                [
                    nn.Parameter(model.encoders[s].projection.bias.detach().clone(), False)
                    for s in self.config.modality_names
                ]
            )
        self.heads = _Heads(model)

    def forward(self, *args: Tensor) -> tuple[Tensor, Tensor]:
        *features, state = args
        width = self.config.state_per_layer
        outputs, states = [], []
        offset = 0
        for s, layers in enumerate(self.modalities):
            x = features[s]
            if not self.fold_projection:
                x = torch.matmul(x, self.proj_w[s]) + self.proj_b[s]
            outs = []
            for layer in layers:
                layer_state = state[:, offset : offset + width] if width else None
                offset += width
                x, new_state = layer(x, layer_state)
                outs.append(x)
                if new_state is not None:
                    states.append(new_state)
            outputs.append(torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0])
        probs = self.heads(outputs)
        if states:
            state_out = torch.cat(states, dim=1) if len(states) > 1 else states[0]
        else:
            state_out = state + 0.0  # fc baseline: S == 0, pass the empty state through
        return probs, state_out


class PoolStepGraph(nn.Module):
    """The step on a device-resident state pool: gather, step, scatter.

    ``forward(*features, pool, slots)``: features ``[N, D_s]`` per modality, the
    whole pool ``[capacity, S]`` and int64 ``slots [N]`` (distinct rows of the
    pool, one per live track); returns ``probs [N, C+1]`` and ``pool_out
    [capacity, S]`` with rows ``slots`` replaced by the new states (other rows
    unchanged), so a runtime can keep the pool on the device and feed
    ``pool_out`` back as the next ``pool``.
    """

    def __init__(self, model: RecLNet, *, fold_projection: bool = True) -> None:
        super().__init__()
        self.step = StepGraph(model, fold_projection=fold_projection)

    def forward(self, *args: Tensor) -> tuple[Tensor, Tensor]:
        *features, pool, slots = args
        state = pool.index_select(0, slots)
        probs, new_state = self.step(*features, state)
        pool_out = pool.index_copy(0, slots, new_state)
        return probs, pool_out
