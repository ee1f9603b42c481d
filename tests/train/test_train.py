"""Training: TBPTT batching, carried state, learning a tiny synthetic set, stages, resume, CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from reclnet.config import RecLNetConfig
from reclnet.train.checkpoint import load_checkpoint
from reclnet.train.data import DatasetError, LabelledTrack, load_tracks
from reclnet.train.model import RecLNet
from reclnet.train.synthetic import FeatureSpec, make_builtin_dataset
from reclnet.train.train import TrackBank, TrainConfig, main, predict_tracks, train

TINY = dict(projection_size=8, memory_size=8, progress=False, threads=1)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Two modalities, 3 actions, 16 videos: for the plumbing tests (not for learning)."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    spec = FeatureSpec(modalities={"rgb": 6, "flow": 5})
    return make_builtin_dataset(path, 16, num_actions=3, spec=spec, seed=0, frames=(10, 30))


def _tracks(lengths, d=3, seed=0) -> list[LabelledTrack]:
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        feats = {"rgb": rng.standard_normal((n, d)).astype(np.float32)}
        frames = np.arange(n, dtype=np.int64)
        out.append(LabelledTrack("v", i, frames, np.zeros((n, 4), np.float32), feats, frames % 3))
    return out


def test_chunks_cover_every_frame_once_in_order_with_resets() -> None:
    lengths = [5, 23, 1, 40, 20, 7, 13]
    tracks = _tracks(lengths)
    bank = TrackBank(tracks, ["rgb"])
    order = np.random.default_rng(0).permutation(len(tracks))
    seen = {i: [] for i in range(len(tracks))}
    slot_track: dict[int, int] = {}
    for rows, reset, feats, labels, info in bank.chunks(order, batch_tracks=3, chunk=6):
        assert feats["rgb"].shape == (len(rows), 6, 3) and labels.shape == (len(rows), 6)
        for r, rs, (t, start, valid), x, y in zip(
            rows, reset, info, feats["rgb"], labels, strict=True
        ):
            # a slot resets exactly when it starts a new track, and otherwise continues it
            assert rs == (start == 0)
            if not rs:
                assert slot_track[int(r)] == t
            slot_track[int(r)] = t
            np.testing.assert_array_equal(
                x[:valid].numpy(), tracks[t].features["rgb"][start:][:valid]
            )
            np.testing.assert_array_equal(y[:valid].numpy(), tracks[t].labels[start:][:valid])
            assert (y[valid:] == -100).all() and (x[valid:] == 0).all()
            seen[t].extend(range(start, start + valid))
    for t, n in enumerate(lengths):
        assert seen[t] == list(range(n))
    # tracks are taken in the shuffled order
    first_chunks = [t for t in order]
    assert sorted(first_chunks) == list(range(len(tracks)))


@pytest.mark.parametrize("cell", ["gru", "lstm", "fc"])
def test_predict_with_carried_state_equals_whole_track_forward(cell: str) -> None:
    tracks = _tracks([5, 23, 1, 40, 20, 7], d=4, seed=1)
    config = RecLNetConfig(
        num_actions=2, modalities={"rgb": 4}, projection_size=6, memory_size=5, cell=cell
    )
    torch.manual_seed(0)
    model = RecLNet(config).eval()
    probs = predict_tracks(model, tracks, batch_tracks=2, chunk=6)
    with torch.no_grad():
        for t, p in zip(tracks, probs, strict=True):
            whole, _ = model({"rgb": torch.from_numpy(t.features["rgb"])[None]})
            np.testing.assert_allclose(p, whole[0].numpy(), atol=1e-6, rtol=0)


def test_tiny_synthetic_set_is_learned_well_above_majority(tmp_path) -> None:
    spec = FeatureSpec(modalities={"rgb": 16})
    data = make_builtin_dataset(tmp_path / "d.h5", 48, num_actions=3, spec=spec, seed=1)
    torch.manual_seed(0)
    result = train(
        data,
        tmp_path / "out",
        projection_size=24,
        memory_size=24,
        epochs=8,
        batch_tracks=12,
        lr=3e-3,
        progress=False,
        threads=1,
    )
    m = result.metrics
    # Measured 0.83 vs a majority class of 0.65 and a mean class accuracy of 0.70 (on
    # AVX-512 and with ATEN_CPU_CAPABILITY=avx2); the bounds keep a third of the gain over
    # the majority class and sit far above the 0.25 mean class accuracy of predicting it.
    assert m["frame_accuracy"] > m["majority_accuracy"] + 0.06, m
    assert m["mean_class_accuracy"] > 0.45, m
    assert len(m["per_class_accuracy"]) == 4
    history = result.history["modality_rgb"]
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("fusion", ["fusion_layer", "gating", "average"])
def test_two_stage_schedule(tiny_data, tmp_path, fusion: str) -> None:
    result = train(tiny_data, tmp_path, fusion=fusion, epochs=1, fusion_epochs=1, **TINY)
    names = {p.name for p in tmp_path.glob("*.pt")}
    assert names == {"modality_rgb.pt", "modality_flow.pt", "fusion.pt", "model.pt"}
    model, payload = load_checkpoint(result.checkpoint)
    assert model.config.fusion == fusion and model.config.modality_names == ["rgb", "flow"]
    assert payload["train_config"]["weight_decay"] == 5e-4
    assert payload["train_config"]["batch_tracks"] == 100 and payload["train_config"]["chunk"] == 20
    assert set(payload["metrics"]) >= {"loss", "frame_accuracy", "per_class_accuracy", "history"}
    # stage two trains only the fusion: the modalities are the stage-one networks
    for stream in ("rgb", "flow"):
        single, _ = load_checkpoint(tmp_path / f"modality_{stream}.pt")
        for a, b in zip(
            single.encoders[stream].state_dict().values(),
            model.encoders[stream].state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b)
    # Each modality is standardized with the training tracks' statistics (numpy twin).
    tracks, _ = load_tracks(tiny_data, "train")
    for stream in ("rgb", "flow"):
        x = np.concatenate([t.features[stream] for t in tracks]).astype(np.float64)
        encoder = model.encoders[stream]
        np.testing.assert_allclose(encoder.feature_mean.numpy(), x.mean(0), rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            encoder.feature_inverse_std.numpy(), 1 / x.std(0), rtol=1e-5, atol=0
        )
    epochs = [h["epoch"] for h in result.history["fusion"]]
    assert epochs == ([0] if fusion == "average" else [1])


def test_resume_continues_exactly(tiny_data, tmp_path) -> None:
    opts = dict(modalities={"rgb": 6}, cell="lstm", **TINY)
    straight = train(tiny_data, tmp_path / "a", epochs=2, **opts)
    train(tiny_data, tmp_path / "b", epochs=1, **opts)
    resumed = train(tiny_data, tmp_path / "b", epochs=2, resume=True, **opts)
    assert [h["epoch"] for h in resumed.history["modality_rgb"]] == [1, 2]
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # resuming a finished run trains nothing more
    again = train(tiny_data, tmp_path / "b", epochs=2, resume=True, **opts)
    assert len(again.history["modality_rgb"]) == 2


def test_cli(tiny_data, tmp_path, capsys) -> None:
    args = ["--data", str(tiny_data), "--out", str(tmp_path)]
    ok = main([*args, "--epochs=1", "--fusion_epochs=0", "--memory_size=4", "--projection_size=4"])
    assert ok == 0
    assert "frame accuracy" in capsys.readouterr().out
    model, payload = load_checkpoint(tmp_path / "model.pt")
    assert model.config.memory_size == 4 and payload["train_config"]["fusion_epochs"] == 0
    with pytest.raises(SystemExit) as exited:  # an option error: argparse's exit 2
        main([*args, "--no_such_option=3"])
    assert exited.value.code == 2
    assert "no_such_option" in capsys.readouterr().err


def test_bad_training_input(tiny_data, tmp_path) -> None:
    with pytest.raises(ValueError, match="no modality 'depth'"):
        train(tiny_data, tmp_path, modalities={"depth": 6}, **TINY)
    with pytest.raises(ValueError, match="modality 'rgb': dataset feature size 6, config 7"):
        train(tiny_data, tmp_path, modalities={"rgb": 7}, **TINY)
    with pytest.raises(ValueError, match="dataset has 3 actions"):
        train(tiny_data, tmp_path, num_actions=5, **TINY)
    with pytest.raises(ValueError, match="no tracks in split 'nope'"):
        train(tiny_data, tmp_path, train_split="nope", **TINY)
    with pytest.raises(ValueError, match="chunk"):
        TrainConfig(chunk=0)
    # NaN features in the file are caught while loading, naming video, track and stream
    bad = tmp_path / "nan.h5"
    bad.write_bytes(tiny_data.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["videos/v000001/tracks/t000000/features/flow"][3, 1] = np.nan
    with pytest.raises(DatasetError, match=r"track 0: features\['flow'\] contain NaN"):
        train(bad, tmp_path / "nan", **TINY)
    # resuming into a folder trained with another model is refused
    train(tiny_data, tmp_path / "r", modalities={"rgb": 6}, epochs=1, **TINY)
    with pytest.raises(ValueError, match="cannot resume .* different model"):
        train(
            tiny_data,
            tmp_path / "r",
            modalities={"rgb": 6},
            cell="gru",
            memory_size=5,
            epochs=2,
            resume=True,
            progress=False,
        )
    tracks, _ = load_tracks(tiny_data)
    assert tracks  # the fixture itself is fine


def test_label_runs_and_temporal_metrics_on_hand_made_tracks() -> None:
    from reclnet.config import PostprocessConfig
    from reclnet.train.compare_cells import label_runs, temporal_metrics

    bg = 2
    labels = np.array([bg] * 40 + [1] * 40 + [bg] * 20 + [0] * 20)
    assert label_runs(labels, bg) == [(1, 40, 80), (0, 100, 120)]
    assert label_runs(np.full(5, bg), bg) == []
    track = LabelledTrack(
        "v", 0, np.arange(120), np.zeros((120, 4), np.float32), {}, labels.astype(np.int64)
    )
    post = PostprocessConfig(window=5, threshold=0.5)
    perfect = np.eye(3, dtype=np.float32)[labels]
    m = temporal_metrics([perfect], [track], 2, post)
    assert (m["tiou"], m["recall@0.5"], m["boundary_error"], m["spurious_per_track"]) == (
        1.0,
        1.0,
        0.0,
        0.0,
    )
    assert m["flicker_per_100"] == m["gt_flicker_per_100"] == 100 * 3 / 120
    assert (m["tiou_any"], m["recall_any@0.5"]) == (1.0, 1.0)
    # class-1 prediction late by 10 frames, class-0 interval missed, one false segment
    late = np.eye(3, dtype=np.float32)[np.array([bg] * 50 + [1] * 40 + [bg] * 10 + [bg] * 20)]
    late[5:15] = np.eye(3, dtype=np.float32)[0]
    m = temporal_metrics([late], [track], 2, post)
    assert m["tiou"] == pytest.approx((30 / 50 + 0.0) / 2)
    assert m["recall@0.5"] == 0.5 and m["boundary_error"] == 20.0
    assert m["spurious_per_track"] == 1.0 and m["intervals"] == 2
    # class-agnostic: action frames 5..14 and 50..89 vs truth 40..79 and 100..119
    assert m["tiou_any"] == pytest.approx((30 / 50 + 0.0) / 2)


def test_class_names_go_from_the_dataset_to_the_step_sidecar(tiny_data, tmp_path) -> None:
    from reclnet.export.cli import main as export_main
    from reclnet.runtime.artifacts import load_artifact
    from reclnet.train.checkpoint import CheckpointError, save_checkpoint

    result = train(tiny_data, tmp_path / "run", modalities={"rgb": 6}, epochs=1, **TINY)
    _, payload = load_checkpoint(result.checkpoint)
    assert payload["class_names"] == ["action_0", "action_1", "action_2"]
    assert export_main([str(result.checkpoint), "--out", str(tmp_path / "model")]) == 0
    sidecar = load_artifact(tmp_path / "model" / "step.onnx", kind="step")
    assert sidecar.metadata["class_names"] == ["action_0", "action_1", "action_2"]
    # A hand-edited checkpoint with the wrong number of names is refused, named.
    payload["class_names"] = ["only", "two"]
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt: 2 class_names for 3 actions"):
        load_checkpoint(tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="class_names has 1 names"):
        save_checkpoint(tmp_path / "x.pt", result.model, class_names=["one"])
