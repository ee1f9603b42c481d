"""PyTorch reference step runner: ``RecLNet.step`` on a checkpoint; the one runtime module importing torch.

torch is imported when a runner is built (not when this module is imported), so
that every runtime module stays importable on a machine without torch.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig
from reclnet.runtime.backends.base import BackendError, StepRunner

__all__ = ["TorchRunner", "sequence_probs"]


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise BackendError(f"torch backend: PyTorch is not installed ({exc})") from exc


class TorchRunner(StepRunner):
    """Runs :meth:`reclnet.train.model.RecLNet.step` eagerly (the reference backend).

    Parameters
    ----------
    checkpoint : path-like, optional
        Checkpoint read with :func:`reclnet.train.checkpoint.load_checkpoint`.
    model : RecLNet, optional
        An in-memory model instead (put in eval mode).
    postprocess : PostprocessConfig, optional
        Post-processing defaults; a checkpoint's ``train_config["postprocess"]`` is used
        when present, else ``PostprocessConfig()``.
    device : str
        Torch device.
    threads : int, optional
        Intra-op threads.
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        model: Any = None,
        postprocess: PostprocessConfig | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        torch = self._torch = _torch()
        payload: dict[str, Any] = {}
        try:
            if threads is not None:
                torch.set_num_threads(int(threads))
            self.device = torch.device(device)
            if checkpoint is not None:
                from reclnet.train.checkpoint import load_checkpoint

                model, payload = load_checkpoint(checkpoint, map_location=self.device)
            self.model = model.to(self.device).eval()
            self.config = self.model.config
            stored = (payload.get("train_config") or {}).get("postprocess")
            if postprocess is None:
                postprocess = PostprocessConfig.from_dict(stored) if stored else PostprocessConfig()
        except (BackendError, MemoryError):
            raise
        except Exception as exc:  # CheckpointError, torch's RuntimeError (bad device), ...
            raise BackendError(f"torch backend: cannot load the model: {exc}") from exc
        self.postprocess = postprocess

    def _step(
        self, features: dict[str, np.ndarray], state: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame for N tracks on checked inputs (see :class:`StepRunner`)."""
        torch = self._torch
        with torch.inference_mode():
            feats = {k: torch.from_numpy(v).to(self.device) for k, v in features.items()}
            probs, new_state = self.model.step(feats, torch.from_numpy(state).to(self.device))
        return probs.cpu().numpy(), new_state.cpu().numpy()

    def sequence(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities of one whole track from a zero state (the offline reference).

        Parameters
        ----------
        features : dict[str, np.ndarray]
            float32 ``[T, D_modality]`` per stream.

        Returns
        -------
        np.ndarray
            float32 ``[T, C+1]``.
        """
        try:
            return sequence_probs(self.model, features, device=self.device)
        except (BackendError, MemoryError):
            raise
        except Exception as exc:  # torch's own errors (shapes, device) become BackendError
            raise BackendError(f"torch backend: sequence failed: {exc}") from exc


def sequence_probs(
    model: Any, features: Mapping[str, np.ndarray], device: Any = "cpu"
) -> np.ndarray:
    """``RecLNet.forward`` over one track ``{stream: float32[T, D]}`` -> float32 ``[T, C+1]``."""
    torch = _torch()
    with torch.inference_mode():
        feats = {k: torch.from_numpy(np.asarray(v))[None].to(device) for k, v in features.items()}
        probs, _ = model.forward(feats)
    return probs[0].cpu().numpy()
