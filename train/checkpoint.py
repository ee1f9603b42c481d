"""Checkpoints: model weights + the RecLNetConfig they belong to, and training metadata.

A checkpoint is a plain ``torch.save`` dict of tensors and JSON-like values, so it
loads with ``torch.load(weights_only=True)`` (no pickled classes):

``{"format": "reclnet-checkpoint/1", "model_config": RecLNetConfig.to_dict(),
"model": state_dict, "train_config": dict, "epoch": int, "metrics": dict,
"optimizer": state_dict | None, "class_names": [str] (C names, or empty)}``
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from reclnet.train.model import RecLNet

__all__ = [
    "FORMAT",
    "CheckpointError",
    "load_checkpoint",
    "nonfinite_weights",
    "read_checkpoint",
    "save_checkpoint",
]

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
    class_names: list[str] | tuple[str, ...] = (),
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
    class_names : sequence of str
        The C action names (the dataset's), which the export writes into the step
        sidecar for ``reclnet stream`` to show; empty when unknown.

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
        "class_names": [str(name) for name in class_names],
    }
    if payload["class_names"] and len(payload["class_names"]) != model.config.num_actions:
        raise ValueError(
            f"class_names has {len(payload['class_names'])} names, the model "
            f"{model.config.num_actions} actions"
        )
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


def _one_line(exc: BaseException) -> str:
    # torch's messages span lines (one per mismatched tensor); an error is one line.
    return " ".join(str(exc).split())


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
        raise CheckpointError(f"checkpoint {path}: cannot be read ({_one_line(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a {FORMAT} file")
    for key in ("model_config", "model"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path}: missing {key!r}")
    return payload


def nonfinite_weights(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding NaN or infinity.

    Parameters
    ----------
    state_dict : dict[str, Tensor]

    Returns
    -------
    list of str
        In ``state_dict`` order; empty when every weight is finite.
    """
    return [
        name
        for name, tensor in state_dict.items()
        if isinstance(tensor, torch.Tensor)
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor).all())
    ]


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    require_finite: bool = True,
) -> tuple[RecLNet, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file.
    map_location : str or torch.device
        Where the model goes.
    require_finite : bool
        Refuse weights holding NaN or infinity (a diverged training run): every
        output of such a model is NaN, which would otherwise surface only at the
        first frame of whatever runs it (default on).

    Returns
    -------
    model : RecLNet
        In eval mode, on ``map_location``.
    payload : dict
        The whole checkpoint (``train_config``, ``epoch``, ``metrics``, ...).

    Raises
    ------
    CheckpointError
        Missing, unreadable or foreign file, a model_config of wrong types or
        sizes, weights that do not fit it, or non-finite weights; the message
        names the file (and the parameter).
    """
    from reclnet.runtime.artifacts import model_config_from_dict

    payload = read_checkpoint(path)
    try:
        config = model_config_from_dict(payload["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad model_config ({exc})") from exc
    weights = payload["model"]
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict of tensors")
    names = payload.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"checkpoint {path}: 'class_names' is not a list of strings")
    if names and len(names) != config.num_actions:
        raise CheckpointError(
            f"checkpoint {path}: {len(names)} class_names for {config.num_actions} actions"
        )
    model = RecLNet(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the config ({_one_line(exc)})"
        ) from exc
    if require_finite:
        bad = nonfinite_weights(weights)
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise CheckpointError(
                f"checkpoint {path}: parameter {bad[0]!r}{more} holds NaN or infinite "
                "values (a diverged training run?)"
            )
    return model.to(map_location).eval(), payload
