"""The RecLNet model: paper sizes, step == forward, chunked == unchunked, bad input, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reclnet.config import RecLNetConfig
from reclnet.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reclnet.train.model import RecLNet

SMALL = dict(
    num_actions=4,
    modalities={"rgb": 12, "flow": 10},
    projection_size=16,
    memory_size=8,
    num_layers=2,
)
CELLS = ("gru", "lstm", "fc")
FUSIONS = ("average", "gating", "fusion_layer")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _feats(config: RecLNetConfig, batch: int, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s: torch.randn(batch, t, d, generator=g) for s, d in config.modalities.items()}


def _randomize(model: RecLNet, seed: int = 0) -> RecLNet:
    """Non-trivial gates (they start uniform) so that gating is really tested."""
    if model.mode == "gating":
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            model.gates.copy_(torch.rand(model.gates.shape, generator=g) + 0.5)
    return model.eval()


def test_default_parameter_count_is_the_papers() -> None:
    config = RecLNetConfig()
    assert (config.num_actions, config.memory_size, config.projection_size) == (24, 256, 1024)
    assert _count(RecLNet(config)) == 11_174_937


def test_fc_baseline_matches_gru_stack_within_one_percent() -> None:
    # (Tiny stacks cannot: one hidden unit is then worth more than 1% of the count.)
    medium = dict(SMALL, projection_size=128, memory_size=64, num_layers=3)
    for base in (RecLNetConfig(), RecLNetConfig(**medium)):
        gru = RecLNet(base)
        fc = RecLNet(dataclasses.replace(base, cell="fc"))
        gru_stack = sum(_count(e.layers) for e in gru.encoders.values())
        fc_stack = sum(_count(e.layers) for e in fc.encoders.values())
        assert abs(fc_stack - gru_stack) / gru_stack < 0.01
        assert isinstance(fc.encoders["rgb"].layers[0][1], torch.nn.ReLU)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_step_loop_equals_forward(cell: str, fusion: str) -> None:
    config = RecLNetConfig(**SMALL, cell=cell, fusion=fusion)
    torch.manual_seed(0)
    model = _randomize(RecLNet(config))
    feats = _feats(config, batch=3, t=15)
    init = torch.randn(3, config.state_size) * 0.5
    with torch.no_grad():
        probs, state = model(feats, init)
        st = init
        for t in range(15):
            p, st = model.step({s: x[:, t] for s, x in feats.items()}, st)
            torch.testing.assert_close(p, probs[:, t], atol=1e-6, rtol=0)
    torch.testing.assert_close(st, state, atol=1e-6, rtol=0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 15), atol=1e-5, rtol=0)
    assert state.shape == (3, config.state_size)


@pytest.mark.parametrize("cell", CELLS)
def test_single_modality_step_equals_forward(cell: str) -> None:
    config = RecLNetConfig(**{**SMALL, "modalities": {"rgb": 12}}, cell=cell)
    model = RecLNet(config).eval()
    feats = _feats(config, 2, 9, seed=1)
    with torch.no_grad():
        probs, _ = model(feats)
        st = torch.zeros(2, config.state_size)
        for t in range(9):
            p, st = model.step({"rgb": feats["rgb"][:, t]}, st)
            torch.testing.assert_close(p, probs[:, t], atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_chunked_forward_with_carried_state_equals_unchunked(cell: str, fusion: str) -> None:
    config = RecLNetConfig(**SMALL, cell=cell, fusion=fusion)
    torch.manual_seed(1)
    model = _randomize(RecLNet(config), 1)
    feats = _feats(config, batch=4, t=47, seed=2)
    with torch.no_grad():
        full, full_state = model(feats)
        parts, st = [], None
        for start in range(0, 47, 20):  # 20, 20, 7: the TBPTT chunking
            p, st = model({s: x[:, start : start + 20] for s, x in feats.items()}, st)
            parts.append(p)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-6, rtol=0)
    torch.testing.assert_close(st, full_state, atol=1e-6, rtol=0)


def test_state_layout_and_lstm_size() -> None:
    for cell, per_layer in [("gru", 8), ("lstm", 16), ("fc", 0)]:
        config = RecLNetConfig(**SMALL, cell=cell)
        assert config.state_size == 2 * 2 * per_layer
        _, state = RecLNet(config)(_feats(config, 2, 3))
        assert state.shape == (2, config.state_size)


def test_state_rows_are_independent() -> None:
    """One packed row per track: tracks in a batch do not interact."""
    config = RecLNetConfig(**SMALL)
    model = RecLNet(config).eval()
    feats = _feats(config, 3, 6)
    with torch.no_grad():
        batch, _ = model(feats)
        alone, _ = model({s: x[1:2] for s, x in feats.items()})
    torch.testing.assert_close(alone[0], batch[1], atol=1e-6, rtol=0)


def test_bad_input_names_the_problem() -> None:
    config = RecLNetConfig(**SMALL)
    model = RecLNet(config)
    feats = _feats(config, 2, 5)
    with pytest.raises(ValueError, match="flow"):
        model({"rgb": feats["rgb"]})
    with pytest.raises(ValueError, match="feature size 11, the model expects 12"):
        model({**feats, "rgb": torch.zeros(2, 5, 11)})
    bad = feats["flow"].clone()
    bad[0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"features\['flow'\] contains NaN"):
        model({**feats, "flow": bad})
    with pytest.raises(ValueError, match="state must be"):
        model(feats, torch.zeros(2, config.state_size + 1))
    with pytest.raises(ValueError, match=r"must be \[B, D\]"):
        model.step(feats, torch.zeros(2, config.state_size))
    with pytest.raises(ValueError, match="disagree"):
        model({**feats, "flow": feats["flow"][:, :4]})


def test_two_stage_helpers() -> None:
    base = RecLNetConfig(**SMALL, fusion="gating")
    single = RecLNet(dataclasses.replace(base, modalities={"rgb": 12}))
    fused = RecLNet(base)
    fused.load_modality_weights(single)
    for a, b in zip(
        single.encoders["rgb"].parameters(), fused.encoders["rgb"].parameters(), strict=True
    ):
        assert torch.equal(a, b)
    assert torch.equal(single.heads["rgb"].weight, fused.heads["rgb"].weight)
    fused.freeze_modalities()
    trainable = [p for p in fused.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is fused.gates
    assert RecLNet(dataclasses.replace(base, fusion="average")).fusion_parameters() == []
    with pytest.raises(ValueError, match="memory_size"):
        fused.load_modality_weights(
            RecLNet(dataclasses.replace(base, modalities={"rgb": 12}, memory_size=4))
        )


def test_checkpoint_round_trip_and_corruption(tmp_path) -> None:
    config = RecLNetConfig(**SMALL, cell="lstm")
    model = RecLNet(config)
    path = save_checkpoint(
        tmp_path / "m.pt", model, train_config={"lr": 0.1}, epoch=3, metrics={"acc": 0.5}
    )
    raw = torch.load(path, weights_only=True)
    assert raw["model_config"] == config.to_dict()
    back, payload = load_checkpoint(path)
    assert back.config == config and not back.training
    assert (payload["epoch"], payload["metrics"], payload["train_config"]) == (
        3,
        {"acc": 0.5},
        {"lr": 0.1},
    )
    feats = _feats(config, 1, 4)
    with torch.no_grad():
        torch.testing.assert_close(back(feats)[0], model.eval()(feats)[0])
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: cannot be read"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a reclnet-checkpoint/1"):
        load_checkpoint(tmp_path / "other.pt")
    bad = dict(raw, model_config={**raw["model_config"], "memory_size": 9})
    torch.save(bad, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="weights do not fit the config"):
        load_checkpoint(tmp_path / "mismatch.pt")


@pytest.mark.parametrize("cell", CELLS)
def test_feature_standardization_equals_standardized_inputs(cell: str) -> None:
    """A model with statistics on raw features == the same weights on (x - mean) / std."""
    import numpy as np

    config = RecLNetConfig(**SMALL, cell=cell)
    torch.manual_seed(4)
    plain = RecLNet(config).eval()
    rng = np.random.default_rng(5)
    raw = {
        m: rng.normal(3.0, 0.2, (500, d)) * rng.uniform(0.1, 4, d)
        for m, d in config.modalities.items()
    }
    raw["rgb"][:, 0] = 7.0  # a constant dimension keeps scale 1 (and is centred)
    model = RecLNet(config).eval()
    model.load_state_dict(plain.state_dict())
    model.set_feature_statistics(raw)
    mean = {m: x.mean(0) for m, x in raw.items()}
    std = {m: np.where(x.std(0) > 0, x.std(0), 1.0) for m, x in raw.items()}
    x = {m: torch.as_tensor(v[:30].reshape(3, 10, -1), dtype=torch.float32) for m, v in raw.items()}
    z = {
        m: torch.as_tensor(((v[:30] - mean[m]) / std[m]).reshape(3, 10, -1), dtype=torch.float32)
        for m, v in raw.items()
    }
    with torch.no_grad():
        got, _ = model(x)
        want, _ = plain(z)
        step, _ = model.step({m: t[:, 0] for m, t in x.items()})
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(step, want[:, 0], atol=1e-5, rtol=0)
    # The statistics travel with the weights (buffers), e.g. into a fused model.
    assert torch.equal(
        model.state_dict()["encoders.rgb.feature_mean"],
        torch.tensor(mean["rgb"], dtype=torch.float32),
    )


def test_feature_statistics_bad_input_names_the_problem() -> None:
    model = RecLNet(RecLNetConfig(**SMALL))
    with pytest.raises(ValueError, match="no features for modality 'flow'"):
        model.set_feature_statistics({"rgb": torch.zeros(4, 12)})
    with pytest.raises(ValueError, match=r"features\['rgb'\] must be \[N >= 1, 12\]"):
        model.set_feature_statistics({"rgb": torch.zeros(4, 11), "flow": torch.zeros(4, 10)})
    bad = torch.zeros(4, 12)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.set_feature_statistics({"rgb": bad, "flow": torch.zeros(4, 10)})
