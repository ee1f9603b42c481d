"""ONNX export of the streaming step (``step.onnx``), followed by its sidecar.

Uses the torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``):
in torch 2.14 the TorchScript exporter (``dynamo=False``) is deprecated and
warns on every call, while the dynamo exporter turns :meth:`RecLNet.step`
(wrapped by :class:`reclnet.export.graphs.StepGraph`) into a clean graph of
plain MatMul / Add / Sigmoid / Tanh / Mul / Slice / Concat / Softmax nodes.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from reclnet.config import PostprocessConfig
from reclnet.export.graphs import StepGraph
from reclnet.export.sidecar import weights_id, write_sidecar
from reclnet.train.model import RecLNet

__all__ = ["DEFAULT_OPSET", "export_step", "onnx_export"]

DEFAULT_OPSET = 18


def onnx_export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | os.PathLike,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic: dict[str, dict[int, str]],
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``module(*args)`` to one self-contained ONNX file.

    Parameters
    ----------
    module : torch.nn.Module
        Called as ``module(*args)``.
    args : tuple of Tensor
        Example inputs (any sizes along the dynamic axes).
    path : path-like
        Destination ``.onnx`` file (weights inside it, no external data).
    input_names, output_names : list[str]
        Graph I/O names, in order.
    dynamic : dict[str, dict[int, str]]
        Per input name, ``{axis: symbolic name}`` of its dynamic axes.
    opset : int
        Default-domain opset (>= 17).

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes: tuple = tuple(dynamic.get(name, {}) for name in input_names)
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        shapes = (shapes,)  # forward(*args): torch.export sees one tuple argument
    module = module.eval()
    with warnings.catch_warnings():
        # torch.export names every dynamic axis it sees; inputs sharing one symbol
        # (N) trigger a purely informative note that one of the names is dropped.
        warnings.filterwarnings(
            "ignore", message=r"# The axis name: .* will not be used", category=UserWarning
        )
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=shapes,
                dynamo=True,
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    return path


def _source_info(source_checkpoint: str | os.PathLike | None) -> dict[str, Any] | None:
    if source_checkpoint is None:
        return None
    from reclnet.runtime.artifacts import file_sha256

    p = Path(source_checkpoint)
    return {"path": str(p.resolve()), "sha256": file_sha256(p)}


def export_step(
    model: RecLNet,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    fold_projection: bool = True,
    postprocess: PostprocessConfig | None = None,
    source_checkpoint: str | os.PathLike | None = None,
    class_names: list[str] | tuple[str, ...] = (),
) -> Path:
    """Export the streaming step: ``{modality} [N, D], state [N, S] -> probs [N, C+1], state_out``.

    Parameters
    ----------
    model : RecLNet
        The trained model (put in eval mode).
    path : path-like
        Destination, conventionally ``DIR/step.onnx``; ``DIR/step.json`` is written beside it.
    opset : int
        ONNX opset.
    fold_projection : bool
        Export :func:`~reclnet.export.graphs.fold_input_projection` of the model (exact up
        to rounding, fewer weights).
    postprocess : PostprocessConfig, optional
        Post-processing defaults recorded in the sidecar.
    source_checkpoint : path-like, optional
        Checkpoint the model came from (path and sha256 recorded).
    class_names : sequence of str
        The C action names recorded in the sidecar (``class_names``), empty when unknown.

    Returns
    -------
    Path
        The ONNX file.

    Raises
    ------
    ValueError
        A parameter holding NaN or infinity (named): the exported model would
        output NaN at every frame.
    """
    from reclnet.train.checkpoint import nonfinite_weights

    bad = nonfinite_weights(model.state_dict())
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(
            f"refusing to export: parameter {bad[0]!r}{more} holds NaN or infinite values"
        )
    config = model.config
    if class_names and len(class_names) != config.num_actions:
        raise ValueError(
            f"class_names has {len(class_names)} names, the model {config.num_actions} actions"
        )
    graph = StepGraph(model.eval(), fold_projection=fold_projection)
    n = 2
    args = tuple(torch.zeros(n, d) for d in config.modalities.values()) + (
        torch.zeros(n, config.state_size),
    )
    names = [*config.modality_names, "state"]
    path = onnx_export(
        graph,
        args,
        path,
        input_names=names,
        output_names=["probs", "state_out"],
        dynamic={name: {0: "N"} for name in names},
        opset=opset,
    )
    write_sidecar(
        path,
        kind="step",
        config=config,
        postprocess=postprocess,
        model_id=weights_id(model.state_dict()),
        source_checkpoint=_source_info(source_checkpoint),
        preprocessing={"modalities": dict(config.modalities), "initial_state": "zeros"},
        extra={
            "variant": {"cell": "unrolled", "fold_projection": fold_projection},
            "class_names": [str(name) for name in class_names],
        },
    )
    return path
