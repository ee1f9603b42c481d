"""Options of the PyTorch reference backend; torch itself is imported by ``runner`` only."""

from __future__ import annotations

import os
from typing import Any

from reclnet.config import PostprocessConfig

__all__ = ["load"]


def load(
    checkpoint: str | os.PathLike | None = None,
    *,
    model: Any = None,
    postprocess: PostprocessConfig | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> Any:
    """Load the PyTorch reference step runner.

    Parameters
    ----------
    checkpoint : path-like, optional
        A ``reclnet.train.checkpoint`` file (loaded with ``load_checkpoint``).
    model : RecLNet, optional
        An in-memory model instead of a checkpoint (tests, benchmarks).
    postprocess : PostprocessConfig, optional
        Post-processing defaults reported by the runner (default: PostprocessConfig()).
    device : str
        Torch device, ``"cpu"`` or ``"cuda[:i]"``.
    threads : int, optional
        ``torch.set_num_threads`` when given.

    Returns
    -------
    TorchRunner
    """
    if (checkpoint is None) == (model is None):
        from reclnet.runtime.backends import BackendError

        raise BackendError("torch backend: give exactly one of checkpoint= or model=")
    from .runner import TorchRunner

    return TorchRunner(
        checkpoint=checkpoint, model=model, postprocess=postprocess, device=device, threads=threads
    )
