"""Checkpoints: model weights + the RecLNetConfig they belong to, and training metadata.

A checkpoint is a plain ``torch.save`` dict of tensors and JSON-like values, so it
loads with ``torch.load(weights_only=True)`` (no pickled classes):

``{"format": "reclnet-checkpoint/1", "model_config": RecLNetConfig.to_dict(),
"model": state_dict, "train_config": dict, "epoch": int, "metrics": dict,
"optimizer": state_dict | None}``
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from reclnet.config import RecLNetConfig
from reclnet.train.model import RecLNet

FORMAT = "reclnet-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not a reclnet checkpoint."""


def save_checkpoint(
    path: str | os.PathLike,
    model: RecLNet,
    *,
    train_config: dict[str, Any] | None = None,
    epoch: int = 0,
    metrics: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file + rename).

    Parameters
    ----------
    path : path-like
        Destination ``.pt`` file.
    model : RecLNet
        Its ``config`` and ``state_dict()`` are stored.
    train_config, metrics : dict, optional
        JSON-like values (numbers, strings, lists, dicts).
    epoch : int
        Epochs completed.
    optimizer : torch.optim.Optimizer, optional
        Stored so that training can resume.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "train_config": dict(train_config or {}),
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint's raw payload (no model built).

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable, or not a reclnet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path}: cannot be read ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a {FORMAT} file")
    for key in ("model_config", "model"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path}: missing {key!r}")
    return payload


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[RecLNet, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint.

    Returns
    -------
    model : RecLNet
        In eval mode, on ``map_location``.
    payload : dict
        The whole checkpoint (``train_config``, ``epoch``, ``metrics``, ...).
    """
    payload = read_checkpoint(path)
    try:
        config = RecLNetConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad model_config ({exc})") from exc
    model = RecLNet(config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the config ({exc})") from exc
    return model.to(map_location).eval(), payload
