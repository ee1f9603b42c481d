"""The module that is exported as ``step.onnx``: :meth:`RecLNet.step` with positional I/O.

There is no second copy of the model's math here: :class:`StepGraph` calls
the model's own ``step``, whose cells and fusion heads are written so that the
exporter emits plain MatMul / Sigmoid / Tanh / Mul / Add / Slice / Concat /
Softmax nodes (see :mod:`reclnet.train.model`).

Two transformations are made for export, both exact linear algebra done in
float64: :func:`fold_feature_standardization` always (the per-dimension
``(x - mean) * inverse_std`` of the training set goes into the input
projection's weights, so the graph has no extra Sub / Mul), and
:func:`fold_input_projection` by default: the input projection is linear and
feeds only the first layer, so it can be folded into that layer's input
weights (``W_ih @ W_proj``), mathematically identical and fewer weights to
read per step (7.5 M instead of 11.2 M for the paper's model, see
docs/export.md for the measured gain).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from reclnet.train.model import RecLNet

__all__ = ["StepGraph", "fold_feature_standardization", "fold_input_projection"]


def fold_feature_standardization(model: RecLNet) -> RecLNet:
    """A copy of ``model`` whose feature standardization is folded into the projections.

    ``W ((x - m) * s) + b == (W diag(s)) x + (b - W diag(s) m)``; the copy's
    encoders skip :meth:`~reclnet.train.model.ModalityEncoder.standardize`.

    Parameters
    ----------
    model : RecLNet
        Left unchanged.

    Returns
    -------
    RecLNet
        The folded copy, in eval mode, without gradients.
    """
    folded = copy.deepcopy(model).eval()
    for name, encoder in folded.encoders.items():
        proj = encoder.projection
        if encoder.normalization_folded:
            continue
        if not isinstance(proj, nn.Linear):
            raise ValueError(f"modality {name!r}: the input projection is already folded")
        with torch.no_grad():
            w = proj.weight.double() * encoder.feature_inverse_std.double()[None, :]
            proj.bias.copy_(proj.bias.double() - w @ encoder.feature_mean.double())
            proj.weight.copy_(w)
            encoder.feature_mean.zero_()
            encoder.feature_inverse_std.fill_(1.0)
        encoder.normalization_folded = True
    return folded.requires_grad_(False)


def fold_input_projection(model: RecLNet) -> RecLNet:
    """A copy of ``model`` whose input projections are folded into the first layers.

    Each modality's ``projection`` becomes ``nn.Identity`` and its first layer
    reads the raw features: ``W (A d + a) + b == (W A) d + (W a + b)``; the
    feature standardization is folded first (:func:`fold_feature_standardization`).
    The copy's ``forward`` and ``step`` equal the original's up to float32 rounding.

    Parameters
    ----------
    model : RecLNet
        Trained model; left unchanged.

    Returns
    -------
    RecLNet
        The folded copy, in eval mode.
    """
    folded = fold_feature_standardization(model)
    for name, encoder in folded.encoders.items():
        proj = encoder.projection
        if not isinstance(proj, nn.Linear):
            raise ValueError(f"modality {name!r}: the input projection is already folded")
        first = encoder.layers[0]
        linear = first[0] if isinstance(first, nn.Sequential) else None
        if linear is not None:  # fc baseline: Linear + ReLU
            w, b = linear.weight, linear.bias
            new: nn.Module = nn.Linear(proj.in_features, linear.out_features)
            new_w, new_b = new.weight, new.bias
        else:
            w, b = first.weight_ih_l0, first.bias_ih_l0
            new = type(first)(proj.in_features, first.hidden_size, batch_first=True)
            new_w, new_b = new.weight_ih_l0, new.bias_ih_l0
        with torch.no_grad():
            # Products in float64: folding adds no rounding beyond the final cast.
            a, a0 = proj.weight.double(), proj.bias.double()
            new_w.copy_(w.double() @ a)
            new_b.copy_(w.double() @ a0 + b.double())
            if linear is None:
                new.weight_hh_l0.copy_(first.weight_hh_l0)
                new.bias_hh_l0.copy_(first.bias_hh_l0)
        if linear is not None:
            first[0] = new
        else:
            encoder.layers[0] = new
        encoder.projection = nn.Identity()
    return folded.requires_grad_(False)


class StepGraph(nn.Module):
    """:meth:`RecLNet.step` as ``forward(*features, state) -> (probs, state_out)``.

    One float32 ``[N, D_m]`` tensor per modality in ``config.modalities``
    order, then the packed state ``[N, S]``; returns ``probs [N, C+1]`` and
    ``state_out [N, S]`` (layout of :mod:`reclnet.config`).

    Parameters
    ----------
    model : RecLNet
        Trained model (copied, then folded).
    fold_projection : bool
        Export :func:`fold_input_projection` of the model.
    """

    def __init__(self, model: RecLNet, *, fold_projection: bool = True) -> None:
        super().__init__()
        fold = fold_input_projection if fold_projection else fold_feature_standardization
        self.model = fold(model)
        self.names = model.config.modality_names

    def forward(self, *args: Tensor) -> tuple[Tensor, Tensor]:
        *features, state = args
        return self.model.step(dict(zip(self.names, features, strict=True)), state)
