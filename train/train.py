"""Training of RecLNet on a track-feature dataset (paper section 3.4).

One responsibility: fit a :class:`~reclnet.train.model.RecLNet` to the tracks of
a ``reclnet-tracks/1`` dataset and write checkpoints.

* Adam with weight decay 5e-4, negative log-likelihood over the C + 1 classes
  (background last).
* Batches of ``batch_tracks`` (100) track slots x ``chunk`` (20) frames,
  truncated back-propagation through time: each slot walks through one track
  chunk by chunk and carries the (detached) recurrent state from one chunk to
  the next; when a track ends the slot takes the next track of the shuffled
  epoch and its state is reset to zeros. The frames past a track's end in its
  last chunk are padding, ignored by the loss.
* Two stages from one call: every modality is first trained as a single-modality
  network (``epochs`` epochs each), then for two or more modalities the fused
  network is built with :meth:`RecLNet.load_modality_weights`, its modalities frozen
  and only :meth:`RecLNet.fusion_parameters` trained (``fusion_epochs``);
  ``average`` fusion has no parameters and is only validated.
* Validation after every epoch: loss, frame accuracy, per-class accuracy (recall
  of each class over its frames) and their mean.
* Checkpoints in ``out``: ``modality_<name>.pt`` per stage-one modality,
  ``fusion.pt`` for the second stage (each rewritten after every epoch, with the
  optimizer state), and ``model.pt``, the final model after the last epoch. Each
  holds the training config, epoch and metrics history; ``resume=True``
  continues a stopped run from those files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from reclnet.argparsing import ArgumentParser
from reclnet.config import RecLNetConfig
from reclnet.train.checkpoint import read_checkpoint, save_checkpoint
from reclnet.train.data import LabelledTrack, load_tracks
from reclnet.train.model import RecLNet

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrackBank",
    "train",
    "train_stage",
    "frame_metrics",
    "validation_metrics",
    "predict_tracks",
    "main",
]

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (stored in every checkpoint as ``train_config``).

    Attributes
    ----------
    epochs : int
        Epochs of each single-modality network (stage one).
    fusion_epochs : int
        Epochs of the fusion stage (gating / fusion_layer).
    batch_tracks : int
        Track slots per batch (100 in the paper).
    chunk : int
        Frames per truncated-BPTT chunk (20 in the paper).
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam weight decay (5e-4 in the paper).
    clip_grad : float
        Gradient norm clip (0 disables).
    seed : int
        Seeds torch and the track order (epoch e uses ``seed + e``).
    train_split, val_split : str
        Video split tags; when no video carries ``val_split``, ``"test"`` is used,
        and when there is none either, validation runs on the training tracks.
    iou_threshold : float
        Label assignment overlap (0.3).
    standardize_features : bool
        Standardize each feature dimension with the training tracks' mean and
        spread inside the model (:meth:`RecLNet.set_feature_statistics`; folded
        into the exported step, so free at run time).
    threads : int
        ``torch.set_num_threads`` while training (0 leaves torch's default).
    progress : bool or None
        tqdm progress bars; None shows them only on a terminal.
    """

    epochs: int = 10
    fusion_epochs: int = 3
    batch_tracks: int = 100
    chunk: int = 20
    lr: float = 1e-3
    weight_decay: float = 5e-4
    clip_grad: float = 5.0
    seed: int = 0
    train_split: str = "train"
    val_split: str = "val"
    iou_threshold: float = 0.3
    standardize_features: bool = True
    threads: int = 0
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("batch_tracks", "chunk"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"TrainConfig.{name} must be > 0")
        for name in ("epochs", "fusion_epochs", "threads"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError("TrainConfig.lr must be a positive number")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : RecLNet
        The final model (eval mode).
    checkpoint : Path
        ``out/model.pt``.
    metrics : dict
        Validation metrics of the final model (see :func:`validation_metrics`).
    history : dict[str, list[dict]]
        Per stage (``"modality_rgb"``, ``"fusion"``, ...) the per-epoch records.
    seconds : float
        Wall-clock training time of this call.
    """

    model: RecLNet
    checkpoint: Path
    metrics: dict[str, Any]
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0


class TrackBank:
    """All tracks of a split, concatenated per modality for fast chunk gathering.

    Parameters
    ----------
    tracks : sequence of LabelledTrack
    modalities : sequence of str
        The modalities to keep.
    """

    def __init__(self, tracks: Sequence[LabelledTrack], modalities: Sequence[str]) -> None:
        if not tracks:
            raise ValueError("no tracks to train or validate on")
        self.lengths = np.array([len(t) for t in tracks], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        # One zero row at the end: the target of padded positions.
        self.features = {
            s: torch.from_numpy(
                np.concatenate([*(t.features[s] for t in tracks), np.zeros((1, t0), np.float32)])
            )
            for s, t0 in ((s, tracks[0].features[s].shape[1]) for s in modalities)
        }
        labels = np.concatenate([*(t.labels for t in tracks), [IGNORE]])
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.pad_row = int(self.lengths.sum())

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def chunks(self, order: np.ndarray, batch_tracks: int, chunk: int):
        """Yield TBPTT batches over the tracks in ``order``.

        Yields
        ------
        rows : np.ndarray
            int64 ``[A]`` slot indices (into ``0 .. batch_tracks-1``) active in this batch.
        reset : np.ndarray
            bool ``[A]``: the slot starts a new track (state must be zeros).
        features : dict[str, Tensor]
            float32 ``[A, chunk, D]``.
        labels : Tensor
            int64 ``[A, chunk]``, ``IGNORE`` past a track's end.
        track_pos : list[tuple[int, int, int]]
            ``(track index, first position, valid length)`` per active slot.
        """
        slot_track = np.full(batch_tracks, -1, dtype=np.int64)
        slot_pos = np.zeros(batch_tracks, dtype=np.int64)
        queue = list(order[::-1])
        steps = np.arange(chunk)
        while True:
            reset = np.zeros(batch_tracks, dtype=bool)
            for s in range(batch_tracks):
                if slot_track[s] < 0 or slot_pos[s] >= self.lengths[slot_track[s]]:
                    slot_track[s] = queue.pop() if queue else -1
                    slot_pos[s] = 0
                    reset[s] = True
            rows = np.flatnonzero(slot_track >= 0)
            if rows.size == 0:
                return
            tr = slot_track[rows]
            pos = slot_pos[rows][:, None] + steps[None, :]
            valid = pos < self.lengths[tr][:, None]
            idx = np.where(valid, self.offsets[tr][:, None] + pos, self.pad_row)
            idx_t = torch.from_numpy(idx)
            feats = {s: x[idx_t] for s, x in self.features.items()}
            labels = self.labels[idx_t]
            info = [
                (int(t), int(p), int(v))
                for t, p, v in zip(tr, slot_pos[rows], valid.sum(axis=1), strict=True)
            ]
            yield rows, reset[rows], feats, labels, info
            slot_pos[rows] += chunk


def _run_epoch(
    model: RecLNet,
    bank: TrackBank,
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer | None,
    order: np.ndarray,
    desc: str,
    collect: bool = False,
) -> tuple[float, list[np.ndarray] | None]:
    """One pass; trains when ``optimizer`` is given. Returns (mean loss, probs per track)."""
    num_classes = model.config.num_classes
    state = torch.zeros((cfg.batch_tracks, model.config.state_size))
    total_loss, total_frames = 0.0, 0
    probs_out = [np.empty((n, num_classes), np.float32) for n in bank.lengths] if collect else None
    n_batches = math.ceil(bank.lengths.sum() / (cfg.batch_tracks * cfg.chunk)) + 1
    bar = tqdm(total=n_batches, desc=desc, leave=False, disable=_no_progress(cfg))
    with torch.set_grad_enabled(optimizer is not None):
        for rows, reset, feats, labels, info in bank.chunks(order, cfg.batch_tracks, cfg.chunk):
            rows_t = torch.from_numpy(rows)
            st = state[rows_t]
            st[torch.from_numpy(reset)] = 0.0
            logp, new_state = model.log_probs(feats, st)
            n_valid = int((labels != IGNORE).sum())
            loss = torch.nn.functional.nll_loss(
                logp.reshape(-1, num_classes), labels.reshape(-1), ignore_index=IGNORE
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: the loss is {float(loss)} (training diverged)")
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in optimizer.param_groups for p in g["params"]], cfg.clip_grad
                    )
                optimizer.step()
            state[rows_t] = new_state.detach()
            total_loss += float(loss.detach()) * n_valid
            total_frames += n_valid
            if probs_out is not None:
                p = logp.detach().exp().numpy()
                for i, (t, start, v) in enumerate(info):
                    probs_out[t][start : start + v] = p[i, :v]
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / max(total_frames, 1):.3f}")
    bar.close()
    return total_loss / max(total_frames, 1), probs_out


def _no_progress(cfg: TrainConfig) -> bool | None:
    # tqdm: disable=None hides the bar when stderr is not a terminal.
    return None if cfg.progress is None else not cfg.progress


def frame_metrics(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int
) -> dict[str, Any]:
    """Frame-level metrics of per-track predictions.

    Parameters
    ----------
    probs : sequence of np.ndarray
        float32 ``[T_i, C + 1]`` per track.
    labels : sequence of np.ndarray
        int64 ``[T_i]`` per track.
    num_classes : int
        C + 1.

    Returns
    -------
    dict
        ``loss`` (mean NLL), ``frame_accuracy``, ``per_class_accuracy`` (list of
        C + 1 recalls, NaN for a class without frames), ``mean_class_accuracy``
        (over classes with frames), ``majority_accuracy`` (share of the most
        frequent class: the accuracy of always predicting it), ``frames``.
    """
    p = np.concatenate(probs)
    y = np.concatenate(labels)
    pred = p.argmax(axis=1)
    correct = pred == y
    counts = np.bincount(y, minlength=num_classes)
    hits = np.bincount(y[correct], minlength=num_classes)
    per_class = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    loss = float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())
    return {
        "loss": loss,
        "frame_accuracy": float(correct.mean()),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "majority_accuracy": float(counts.max() / counts.sum()),
        "frames": int(len(y)),
    }


@torch.no_grad()
def predict_tracks(
    model: RecLNet, tracks: Sequence[LabelledTrack], batch_tracks: int = 100, chunk: int = 100
) -> list[np.ndarray]:
    """Per-frame probabilities of whole tracks (state carried across chunks).

    Returns
    -------
    list[np.ndarray]
        float32 ``[T_i, C + 1]`` per track, in input order.
    """
    bank = TrackBank(tracks, model.config.modality_names)
    cfg = TrainConfig(batch_tracks=batch_tracks, chunk=chunk, progress=False)
    was_training = model.training
    model.eval()
    _, probs = _run_epoch(model, bank, cfg, None, np.arange(len(bank)), "predict", collect=True)
    model.train(was_training)
    assert probs is not None
    return probs


def validation_metrics(
    model: RecLNet, tracks: Sequence[LabelledTrack], cfg: TrainConfig | None = None
) -> dict[str, Any]:
    """Validation metrics of ``model`` on ``tracks`` (see :func:`frame_metrics`)."""
    cfg = cfg or TrainConfig()
    probs = predict_tracks(model, tracks, cfg.batch_tracks, max(cfg.chunk, 100))
    return frame_metrics(probs, [t.labels for t in tracks], model.config.num_classes)


def train_stage(
    model: RecLNet,
    params: list[torch.nn.Parameter],
    train_tracks: Sequence[LabelledTrack],
    val_tracks: Sequence[LabelledTrack],
    cfg: TrainConfig,
    epochs: int,
    checkpoint: Path,
    stage: str,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train ``params`` of ``model`` for ``epochs`` epochs, checkpointing each epoch.

    Returns
    -------
    list[dict]
        Per epoch: ``epoch``, ``train_loss``, ``seconds`` and the validation
        metrics of :func:`validation_metrics`.
    """
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    start = 0
    if resume and checkpoint.is_file():
        payload = read_checkpoint(checkpoint)
        if payload["model_config"] != model.config.to_dict():
            raise ValueError(
                f"cannot resume from {checkpoint}: it holds a different model "
                f"({payload['model_config']} vs {model.config.to_dict()})"
            )
        model.load_state_dict(payload["model"])
        if payload.get("optimizer") is not None:
            optimizer.load_state_dict(payload["optimizer"])
        start = int(payload["epoch"])
        history = list(payload["metrics"].get("history", []))
    bank = TrackBank(train_tracks, model.config.modality_names)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(bank))
        model.train()
        loss, _ = _run_epoch(model, bank, cfg, optimizer, order, f"{stage} {epoch + 1}/{epochs}")
        val = validation_metrics(model, val_tracks, cfg)
        record = {"epoch": epoch + 1, "train_loss": loss, "seconds": time.perf_counter() - t0}
        record.update({f"val_{k}": v for k, v in val.items()})
        history.append(record)
        _log(
            cfg,
            f"{stage} epoch {epoch + 1}/{epochs}: train loss {loss:.4f}, val loss "
            f"{val['loss']:.4f}, frame acc {val['frame_accuracy']:.3f}, mean class acc "
            f"{val['mean_class_accuracy']:.3f} ({record['seconds']:.1f}s)",
        )
        save_checkpoint(
            checkpoint,
            model,
            train_config={**cfg.to_dict(), "stage": stage},
            epoch=epoch + 1,
            metrics={"history": history, **{k: v for k, v in val.items()}},
            optimizer=optimizer,
        )
    model.eval()
    return history


def _log(cfg: TrainConfig, msg: str) -> None:
    if cfg.progress is not False:
        print(msg, file=sys.stderr, flush=True)


def _split_tracks(
    data: Path, cfg: TrainConfig
) -> tuple[list[LabelledTrack], list[LabelledTrack], dict[str, int], int, list[str]]:
    train_tracks, info = load_tracks(data, cfg.train_split, iou_threshold=cfg.iou_threshold)
    if not train_tracks:
        raise ValueError(f"dataset {data}: no tracks in split {cfg.train_split!r}")
    val_tracks: list[LabelledTrack] = []
    for split in dict.fromkeys([cfg.val_split, "test"]):
        val_tracks, _ = load_tracks(data, split, iou_threshold=cfg.iou_threshold)
        if val_tracks:
            break
    if not val_tracks:
        val_tracks = train_tracks
    names = list(info.class_names) if len(info.class_names) == info.num_actions else []
    return train_tracks, val_tracks, info.modalities, info.num_actions, names


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    model_config: RecLNetConfig | dict[str, Any] | None = None,
    train_config: TrainConfig | dict[str, Any] | None = None,
    *,
    resume: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train RecLNet on a dataset with the two-stage schedule.

    Parameters
    ----------
    data : path-like
        A ``reclnet-tracks/1`` HDF5 file (:mod:`reclnet.train.data`).
    out : path-like
        Output folder for the checkpoints (created).
    model_config : RecLNetConfig or dict, optional
        Model hyper-parameters; ``modalities`` and ``num_actions`` default to the
        dataset's (and must match it when given).
    train_config : TrainConfig or dict, optional
    resume : bool
        Continue from the checkpoints already in ``out``.
    **overrides
        ``key=value`` for any field of RecLNetConfig or TrainConfig (e.g.
        ``cell="lstm"``, ``epochs=3``).

    Returns
    -------
    TrainResult
    """
    t_start = time.perf_counter()
    data, out = Path(data), Path(out)
    mfields = {f.name for f in dataclasses.fields(RecLNetConfig)}
    tfields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - mfields - tfields
    if unknown:
        raise ValueError(f"unknown training option(s) {sorted(unknown)}")
    tdict = (
        train_config.to_dict()
        if isinstance(train_config, TrainConfig)
        else dict(train_config or {})
    )
    tdict.update({k: v for k, v in overrides.items() if k in tfields})
    cfg = TrainConfig(**tdict)
    train_tracks, val_tracks, modalities, num_actions, class_names = _split_tracks(data, cfg)
    mdict = (
        model_config.to_dict()
        if isinstance(model_config, RecLNetConfig)
        else dict(model_config or {})
    )
    mdict.update({k: v for k, v in overrides.items() if k in mfields})
    mdict.setdefault("modalities", modalities)
    mdict.setdefault("num_actions", num_actions)
    config = RecLNetConfig(**mdict)
    for name, size in config.modalities.items():
        if name not in modalities:
            raise ValueError(f"dataset {data} has no modality {name!r} (it has {list(modalities)})")
        if modalities[name] != size:
            raise ValueError(
                f"modality {name!r}: dataset feature size {modalities[name]}, config {size}"
            )
    if config.num_actions != num_actions:
        raise ValueError(f"dataset has {num_actions} actions, config {config.num_actions}")

    out.mkdir(parents=True, exist_ok=True)
    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    history: dict[str, list[dict[str, Any]]] = {}
    try:
        singles = []
        for name in config.modalities:
            torch.manual_seed(cfg.seed)
            single = RecLNet(
                dataclasses.replace(config, modalities={name: config.modalities[name]})
            )
            if cfg.standardize_features:
                single.set_feature_statistics(
                    {name: np.concatenate([t.features[name] for t in train_tracks])}
                )
            stage = f"modality_{name}"
            history[stage] = train_stage(
                single,
                list(single.parameters()),
                train_tracks,
                val_tracks,
                cfg,
                cfg.epochs,
                out / f"{stage}.pt",
                stage,
                resume,
            )
            singles.append(single)
        if len(singles) == 1:
            model, last = singles[0], out / f"modality_{config.modality_names[0]}.pt"
        else:
            torch.manual_seed(cfg.seed)
            model = RecLNet(config)
            for single in singles:
                model.load_modality_weights(single)
            model.freeze_modalities()
            params = model.fusion_parameters()
            last = out / "fusion.pt"
            if params and cfg.fusion_epochs > 0:
                history["fusion"] = train_stage(
                    model,
                    params,
                    train_tracks,
                    val_tracks,
                    cfg,
                    cfg.fusion_epochs,
                    last,
                    "fusion",
                    resume,
                )
            else:
                val = validation_metrics(model, val_tracks, cfg)
                history["fusion"] = [{"epoch": 0, **{f"val_{k}": v for k, v in val.items()}}]
                save_checkpoint(
                    last,
                    model,
                    train_config={**cfg.to_dict(), "stage": "fusion"},
                    epoch=0,
                    metrics={"history": history["fusion"], **val},
                )
    finally:
        torch.set_num_threads(previous)
    model.eval()
    metrics = validation_metrics(model, val_tracks, cfg)
    seconds = time.perf_counter() - t_start
    final = out / "model.pt"
    save_checkpoint(
        final,
        model,
        train_config={**cfg.to_dict(), "stage": "final", "data": str(data)},
        epoch=sum(len(h) for h in history.values()),
        metrics={**metrics, "history": history, "seconds": seconds},
        class_names=class_names,
    )
    return TrainResult(model, final, metrics, history, seconds)


def _parse_value(text: str) -> Any:
    """``--key=value`` values: JSON when it parses (numbers, true/false, dicts), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _check_overrides(overrides: dict[str, Any]) -> None:
    """Refuse unknown ``--key=value`` options and bad values before any data is read.

    The model fields are checked on the default config (the dataset fills in
    ``modalities`` and ``num_actions`` later), the training fields on TrainConfig.

    Raises
    ------
    TypeError, ValueError
        Naming the option and the problem.
    """
    mfields = {f.name for f in dataclasses.fields(RecLNetConfig)}
    tfields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - mfields - tfields
    if unknown:
        raise ValueError(f"unknown training option(s) {sorted(unknown)}")
    TrainConfig(**{k: v for k, v in overrides.items() if k in tfields})
    RecLNetConfig(**{k: v for k, v in overrides.items() if k in mfields})


def main(argv: list[str] | None = None) -> int:
    """``reclnet train --data PATH --out DIR [--key=value ...] [--resume]``."""
    p = ArgumentParser(
        prog="reclnet train",
        description="Train RecLNet (two-stage: each modality, then the fusion).",
        epilog="Any RecLNetConfig or TrainConfig field can be set with --key=value, e.g. "
        "--cell=lstm --memory_size=64 --projection_size=128 --epochs=5 --fusion=gating.",
    )
    p.add_argument("--data", required=True, help="reclnet-tracks/1 HDF5 dataset")
    p.add_argument("--out", required=True, help="output folder for checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from checkpoints in --out")
    args, rest = p.parse_known_args(argv)
    overrides: dict[str, Any] = {}
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            p.error(f"expected --key=value, got {item!r}")
        key, value = item[2:].split("=", 1)
        overrides[key.replace("-", "_")] = _parse_value(value)
    try:
        _check_overrides(overrides)
    except (TypeError, ValueError) as exc:
        p.error(str(exc))  # exit 2, one line, before any file is read
    try:
        result = train(args.data, args.out, resume=args.resume, **overrides)
    except (TypeError, ValueError, OSError) as exc:
        print(f"reclnet train: {exc}", file=sys.stderr)
        return 1
    m = result.metrics
    print(
        f"trained in {result.seconds:.1f}s: frame accuracy {m['frame_accuracy']:.3f} "
        f"(majority class {m['majority_accuracy']:.3f}), mean class accuracy "
        f"{m['mean_class_accuracy']:.3f}, checkpoint {result.checkpoint}"
    )
    return 0
