"""The RecLNet model (paper section 3.2, Figure 2) in PyTorch: its one implementation.

Per modality (RGB, optical flow): a linear layer that normalizes the input
features, then a stack of recurrent layers (GRU, LSTM) or, for the baseline,
fully connected layers. Before that layer the features are standardized per
dimension, ``(x - feature_mean) * feature_inverse_std``, with statistics of the
training set (:meth:`RecLNet.set_feature_statistics`; identity until set):
backbone descriptors have a large shared offset and small per-dimension
spread, which leaves Adam at the majority class otherwise. The statistics are
buffers (saved with the weights, never optimized) and the export folds them
into the linear layer, so the exported step is unchanged. The outputs of every layer of every modality are
concatenated and classified into C actions + background (last column), see
:mod:`reclnet.config` for the class and packed-state layouts.

Fusion of the modalities (``RecLNetConfig.fusion``):

- ``fusion_layer``: one linear layer on the concatenated memories of all
  modalities (the paper's final model);
- ``average``: each modality has its own classifier; their softmax outputs are
  averaged;
- ``gating``: each modality's classifier logits are multiplied by learned
  per-class weights, summed, then one softmax.

Gating and fusion layer are trained on top of frozen single-modality networks
(:meth:`RecLNet.load_modality_weights`, :meth:`RecLNet.freeze_modalities`).

``forward`` runs a whole sequence ``[B, T, D]`` through ``nn.GRU`` / ``nn.LSTM``
(what training needs); ``step`` runs one frame ``[B, D]`` with the cells
written out as MatMul, Sigmoid, Tanh, Mul and Add on the same weights. That
per-frame ``step`` is also what :mod:`reclnet.export` exports, unchanged, to
the ONNX step graph; both take and return the packed state ``[B, S]`` so that
a chunked or frame-by-frame run equals one run over the whole sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from reclnet.config import RecLNetConfig

__all__ = ["RecLNet", "RecLNetConfig", "ModalityEncoder"]


def _affine(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` for ``x [..., D_in]``, ``weight [D_out, D_in]``.

    Written as matmul + add rather than ``nn.functional.linear``: the ONNX
    exporter then emits MatMul on a pre-transposed initializer plus Add (for 2-D
    inputs ``linear`` becomes Gemm, which the INT8 quantizer leaves in float).
    """
    return torch.matmul(x, weight.t()) + bias


def _gru_cell(gi: Tensor, gh: Tensor, h: Tensor, m: int) -> Tensor:
    """PyTorch's GRU update from the gate pre-activations (gate order r, z, n)."""
    rz = torch.sigmoid(gi[:, : 2 * m] + gh[:, : 2 * m])
    r, z = rz[:, :m], rz[:, m:]
    n = torch.tanh(gi[:, 2 * m :] + r * gh[:, 2 * m :])
    return n + z * (h - n)  # == (1 - z) * n + z * h, one op fewer


def _lstm_cell(gi: Tensor, gh: Tensor, c: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """PyTorch's LSTM update from the gate pre-activations (gate order i, f, g, o)."""
    g = gi + gh
    # One Sigmoid over the three sigmoid gates instead of three small ones.
    ifo = torch.sigmoid(torch.cat([g[:, : 2 * m], g[:, 3 * m :]], dim=1))
    i, f, o = ifo[:, :m], ifo[:, m : 2 * m], ifo[:, 2 * m :]
    c_new = f * c + i * torch.tanh(g[:, 2 * m : 3 * m])
    return o * torch.tanh(c_new), c_new


class ModalityEncoder(nn.Module):
    """One modality: input projection + layer stack.

    Input ``[B, T, D]`` (``forward``) or ``[B, D]`` (``step``), output the
    concatenated outputs of every layer, ``num_layers * layer_output_size``
    wide, and the modality's part of the packed state. ``projection`` may be
    ``nn.Identity`` when the export folded it into the first layer.
    """

    def __init__(self, input_size: int, config: RecLNetConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(input_size))
        self.register_buffer("feature_inverse_std", torch.ones(input_size))
        # True on export copies whose standardization is folded into the projection.
        self.normalization_folded = False
        self.projection: nn.Module = nn.Linear(input_size, config.projection_size)
        layers: list[nn.Module] = []
        size_in = config.projection_size
        for _ in range(config.num_layers):
            if config.cell == "gru":
                layers.append(nn.GRU(size_in, config.memory_size, batch_first=True))
            elif config.cell == "lstm":
                layers.append(nn.LSTM(size_in, config.memory_size, batch_first=True))
            else:
                layers.append(nn.Sequential(nn.Linear(size_in, config.fc_hidden_size), nn.ReLU()))
            size_in = config.layer_output_size
        self.layers = nn.ModuleList(layers)

    def standardize(self, x: Tensor) -> Tensor:
        """``(x - feature_mean) * feature_inverse_std`` for ``x [..., D]`` (identity once folded)."""
        if self.normalization_folded:
            return x
        return (x - self.feature_mean) * self.feature_inverse_std

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Run the modality over a sequence.

        Parameters
        ----------
        x : Tensor
            float32 ``[B, T, D]`` features.
        state : Tensor
            float32 ``[B, num_layers * state_per_layer]``, this modality's slice of
            the packed state.

        Returns
        -------
        outputs : Tensor
            float32 ``[B, T, modality_output_size]``.
        new_state : Tensor
            float32, same shape as ``state``: the state after the last step.
        """
        m = self.config.memory_size
        width = self.config.state_per_layer
        h = self.projection(self.standardize(x))
        outputs, new_states = [], []
        for i, layer in enumerate(self.layers):
            layer_state = state[:, i * width : (i + 1) * width]
            if self.config.cell == "gru":
                h, h_n = layer(h, layer_state[:, :m].unsqueeze(0).contiguous())
                new_states.append(h_n[0])
            elif self.config.cell == "lstm":
                h0 = layer_state[:, :m].unsqueeze(0).contiguous()
                c0 = layer_state[:, m:].unsqueeze(0).contiguous()
                h, (h_n, c_n) = layer(h, (h0, c0))
                new_states.append(torch.cat([h_n[0], c_n[0]], dim=1))
            else:
                h = layer(h)
            outputs.append(h)
        new_state = torch.cat(new_states, dim=1) if new_states else state
        return torch.cat(outputs, dim=-1), new_state

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Run the modality for one frame, the cells written out (see module doc).

        Parameters
        ----------
        x : Tensor
            float32 ``[B, D]`` features.
        states : list of Tensor
            Per recurrent layer, float32 ``[B, state_per_layer]`` (empty for fc).

        Returns
        -------
        outputs : Tensor
            float32 ``[B, modality_output_size]``.
        new_states : list of Tensor
            Same shapes as ``states``.
        """
        cell, m = self.config.cell, self.config.memory_size
        proj = self.projection
        x = self.standardize(x)
        h = x if isinstance(proj, nn.Identity) else _affine(x, proj.weight, proj.bias)
        outputs, new_states = [], []
        for i, layer in enumerate(self.layers):
            if cell == "fc":
                h = torch.relu(_affine(h, layer[0].weight, layer[0].bias))
                outputs.append(h)
                continue
            h_prev = states[i][:, :m]
            gi = _affine(h, layer.weight_ih_l0, layer.bias_ih_l0)
            gh = _affine(h_prev, layer.weight_hh_l0, layer.bias_hh_l0)
            if cell == "gru":
                h = _gru_cell(gi, gh, h_prev, m)
                new_states.append(h)
            else:
                h, c = _lstm_cell(gi, gh, states[i][:, m:], m)
                new_states.append(torch.cat([h, c], dim=1))
            outputs.append(h)
        return torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0], new_states


class RecLNet(nn.Module):
    """RecLNet: per-frame action probabilities for person tracks.

    Parameters
    ----------
    config : RecLNetConfig
        All hyper-parameters; stored on the model as ``model.config``.
    """

    def __init__(self, config: RecLNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RecLNetConfig()
        self.encoders = nn.ModuleDict(
            {name: ModalityEncoder(size, config) for name, size in config.modalities.items()}
        )
        n_modalities = len(config.modalities)
        self.mode = "single" if n_modalities == 1 else config.fusion
        if self.mode == "fusion_layer":
            self.fusion_head = nn.Linear(
                n_modalities * config.modality_output_size, config.num_classes
            )
        else:
            # single modality, average and gating: a classifier per modality.
            self.heads = nn.ModuleDict(
                {
                    name: nn.Linear(config.modality_output_size, config.num_classes)
                    for name in config.modalities
                }
            )
        if self.mode == "gating":
            self.gates = nn.Parameter(
                torch.full((n_modalities, config.num_classes), 1.0 / n_modalities)
            )

    # ------------------------------------------------------------ validation
    def _check_features(self, features: Mapping[str, Tensor], ndim: int) -> int:
        """Check modalities, shapes and values; return the batch size."""
        if not isinstance(features, Mapping):
            raise TypeError(f"features must be a dict modality -> tensor, got {type(features)}")
        missing = [s for s in self.config.modalities if s not in features]
        if missing:
            raise ValueError(
                f"missing feature modalities {missing}; the model needs {self.config.modality_names}"
            )
        extra = [s for s in features if s not in self.config.modalities]
        if extra:
            raise ValueError(
                f"unknown feature modalities {extra}; the model needs {self.config.modality_names}"
            )
        batch = None
        lead_shape = None
        for name, size in self.config.modalities.items():
            x = features[name]
            if not isinstance(x, Tensor):
                raise TypeError(f"features[{name!r}] must be a torch.Tensor, got {type(x)}")
            if x.dim() != ndim:
                want = "[B, T, D]" if ndim == 3 else "[B, D]"
                raise ValueError(f"features[{name!r}] must be {want}, got shape {tuple(x.shape)}")
            if x.shape[-1] != size:
                raise ValueError(
                    f"features[{name!r}] has feature size {x.shape[-1]}, the model expects {size}"
                )
            if lead_shape is None:
                lead_shape = tuple(x.shape[:-1])
            elif tuple(x.shape[:-1]) != lead_shape:
                raise ValueError(
                    f"feature modalities disagree on batch/time shape: {lead_shape} vs "
                    f"{tuple(x.shape[:-1])} for {name!r}"
                )
            if not torch.isfinite(x).all():
                raise ValueError(f"features[{name!r}] contains NaN or infinite values")
            batch = x.shape[0]
        assert batch is not None
        return batch

    def _check_state(self, state: Tensor | None, batch: int, like: Tensor) -> Tensor:
        s = self.config.state_size
        if state is None:
            return like.new_zeros((batch, s))
        if not isinstance(state, Tensor) or state.shape != (batch, s):
            shape = tuple(state.shape) if isinstance(state, Tensor) else type(state)
            raise ValueError(f"state must be [B={batch}, S={s}], got {shape}")
        if not torch.isfinite(state).all():
            raise ValueError("state contains NaN or infinite values")
        return state

    # ---------------------------------------------------------------- compute
    def _encode_sequence(
        self, features: Mapping[str, Tensor], state: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        """Every modality's layer outputs (``modality_names`` order) and the state after them."""
        slices = self.config.state_slices()
        last = self.config.num_layers - 1
        outputs, new_states = [], []
        for name in self.config.modality_names:
            part = state[:, slices[(name, 0)].start : slices[(name, last)].stop]
            out, st = self.encoders[name](features[name], part)
            outputs.append(out)
            new_states.append(st)
        return outputs, torch.cat(new_states, dim=1)

    def _encode_frame(
        self, features: Mapping[str, Tensor], state: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        """:meth:`_encode_sequence` for one frame ``[B, D]``, with the written-out cells.

        Every layer's state is sliced from the packed state and the new ones
        concatenated once, so the exported graph has no per-modality copies.
        """
        slices = self.config.state_slices()
        recurrent = self.config.state_per_layer > 0
        outputs, new_states = [], []
        for name in self.config.modality_names:
            layers = range(self.config.num_layers) if recurrent else ()
            states = [state[:, slices[(name, i)]] for i in layers]
            out, st = self.encoders[name].step(features[name], states)
            outputs.append(out)
            new_states += st
        if not new_states:  # fc baseline: S == 0, the empty state passes through
            return outputs, state
        return outputs, torch.cat(new_states, dim=1) if len(new_states) > 1 else new_states[0]

    def _logits(self, outputs: list[Tensor]) -> list[Tensor]:
        """Classifier(s) and fusion: the logits whose softmax (averaged if several) is the output.

        One tensor ``[..., C+1]``, except for ``average``: one per modality.
        """
        if self.mode == "fusion_layer":
            head = self.fusion_head
            return [_affine(torch.cat(outputs, dim=-1), head.weight, head.bias)]
        heads = [self.heads[n] for n in self.config.modality_names]
        logits = [_affine(o, h.weight, h.bias) for o, h in zip(outputs, heads, strict=True)]
        if self.mode == "gating":
            mixed = [self.gates[i] * lg for i, lg in enumerate(logits)]
            return [sum(mixed[1:], mixed[0])]
        return logits  # single: one; average: the per-modality softmaxes are averaged

    def log_probs(
        self, features: Mapping[str, Tensor], state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-frame log-probabilities over a sequence (what training needs).

        Parameters
        ----------
        features : dict[str, Tensor]
            float32 ``[B, T, D_modality]`` per modality.
        state : Tensor, optional
            float32 ``[B, S]`` packed state before the first frame; zeros when None.

        Returns
        -------
        log_probs : Tensor
            float32 ``[B, T, C + 1]``, background last.
        state : Tensor
            float32 ``[B, S]`` after the last frame.
        """
        batch = self._check_features(features, ndim=3)
        state = self._check_state(state, batch, features[self.config.modality_names[0]])
        outputs, new_state = self._encode_sequence(features, state)
        logits = self._logits(outputs)
        if len(logits) == 1:
            return torch.log_softmax(logits[0], dim=-1), new_state
        per_modality = torch.stack([torch.log_softmax(lg, dim=-1) for lg in logits])
        return torch.logsumexp(per_modality, dim=0) - math.log(len(logits)), new_state

    def forward(
        self, features: Mapping[str, Tensor], state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-frame probabilities over a sequence.

        Parameters
        ----------
        features : dict[str, Tensor]
            float32 ``[B, T, D_modality]`` per modality.
        state : Tensor, optional
            float32 ``[B, S]``; zeros (new tracks) when None.

        Returns
        -------
        probs : Tensor
            float32 ``[B, T, C + 1]``, rows sum to 1, background last.
        state : Tensor
            float32 ``[B, S]`` after the last frame.
        """
        logp, new_state = self.log_probs(features, state)
        return logp.exp(), new_state

    def step(
        self, features: Mapping[str, Tensor], state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One frame for a batch of live tracks (the streaming step, also the exported graph).

        Inputs are validated except while ``torch.export`` traces the step (the
        value checks would be data-dependent branches in the graph).

        Parameters
        ----------
        features : dict[str, Tensor]
            float32 ``[B, D_modality]`` per modality.
        state : Tensor, optional
            float32 ``[B, S]``; zeros (new tracks) when None.

        Returns
        -------
        probs : Tensor
            float32 ``[B, C + 1]``, rows sum to 1, background last.
        state : Tensor
            float32 ``[B, S]``.
        """
        if not torch.compiler.is_exporting():
            batch = self._check_features(features, ndim=2)
            state = self._check_state(state, batch, features[self.config.modality_names[0]])
        outputs, new_state = self._encode_frame(features, state)
        logits = self._logits(outputs)
        if len(logits) == 1:
            return torch.softmax(logits[0], dim=-1), new_state
        probs = [torch.softmax(lg, dim=-1) for lg in logits]
        return sum(probs[1:], probs[0]) / float(len(probs)), new_state

    # ------------------------------------------------------- two-stage training
    def set_feature_statistics(self, features: Mapping[str, np.ndarray | Tensor]) -> None:
        """Set each modality's standardization from its training features.

        Parameters
        ----------
        features : dict[str, array]
            Modality -> ``[N >= 1, D_modality]`` (any float dtype): every training frame.
            Dimensions with (near) zero spread keep scale 1: they carry no signal,
            and dividing by their spread would only amplify rounding noise.
        """
        for name, size in self.config.modalities.items():
            if name not in features:
                raise ValueError(f"set_feature_statistics: no features for modality {name!r}")
            x = torch.as_tensor(np.asarray(features[name]), dtype=torch.float64)
            if x.dim() != 2 or x.shape[1] != size or x.shape[0] < 1:
                raise ValueError(
                    f"set_feature_statistics: features[{name!r}] must be [N >= 1, {size}], "
                    f"got {list(x.shape)}"
                )
            if not torch.isfinite(x).all():
                raise ValueError(f"set_feature_statistics: features[{name!r}] holds NaN or inf")
            mean, std = x.mean(dim=0), x.std(dim=0, correction=0)
            flat = std <= 1e-6 * max(float(std.max()), 1e-30)
            inverse = torch.where(flat, torch.ones_like(std), 1.0 / std.clamp_min(1e-30))
            encoder = self.encoders[name]
            encoder.feature_mean.copy_(mean.float())
            encoder.feature_inverse_std.copy_(inverse.float())

    def load_modality_weights(self, single: RecLNet) -> None:
        """Copy a trained single-modality network into this model.

        The modality's encoder is always copied; its classifier too when this
        model keeps per-modality classifiers (``average``, ``gating``).
        """
        if len(single.config.modalities) != 1:
            raise ValueError("load_modality_weights takes a single-modality RecLNet")
        (name,) = single.config.modalities
        if name not in self.config.modalities:
            raise ValueError(f"modality {name!r} is not one of {self.config.modality_names}")
        for attr in ("projection_size", "memory_size", "num_layers", "cell", "num_actions"):
            if getattr(single.config, attr) != getattr(self.config, attr):
                raise ValueError(
                    f"single-modality network differs in {attr}: "
                    f"{getattr(single.config, attr)} vs {getattr(self.config, attr)}"
                )
        if single.config.modalities[name] != self.config.modalities[name]:
            raise ValueError(f"modality {name!r} input size differs")
        self.encoders[name].load_state_dict(single.encoders[name].state_dict())
        if hasattr(self, "heads"):
            self.heads[name].load_state_dict(single.heads[name].state_dict())

    def freeze_modalities(self) -> None:
        """Freeze encoders and per-modality classifiers: only fusion parameters train."""
        for module in [self.encoders, *([self.heads] if hasattr(self, "heads") else [])]:
            for p in module.parameters():
                p.requires_grad_(False)

    def fusion_parameters(self) -> list[nn.Parameter]:
        """The parameters the fusion stage trains (empty for ``average``)."""
        if self.mode == "fusion_layer":
            return list(self.fusion_head.parameters())
        if self.mode == "gating":
            return [self.gates]
        return []
