"""Command line of the export part: ``reclnet export`` and ``reclnet build-engine``.

``reclnet export CHECKPOINT --out DIR`` writes ``DIR/step.onnx`` with its
sidecar, plus (on request) the INT8 step, the feature networks and a Triton
model repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reclnet.argparsing import ArgumentParser, positive_int
from reclnet.export.features import DEFAULT_FRAME_GRID, DEFAULT_FRAME_STAGE, FRAME_STAGES
from reclnet.export.quantize import DEFAULT_VARIANT, VARIANTS
from reclnet.runtime.camera.flow import DEFAULT_DIS_PRESET, DIS_PRESETS

#: Lowest ONNX opset the exporter writes (the step graph needs opset 17 ops).
MIN_OPSET = 17

__all__ = ["build_engine_main", "main"]


def _export_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="reclnet export",
        description="Export a trained RecLNet checkpoint to ONNX artifacts with JSON sidecars.",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint written by reclnet train (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output model directory")
    p.add_argument("--opset", type=positive_int, default=18, help="ONNX opset (>= 17; default 18)")
    p.add_argument(
        "--no-fold-projection",
        action="store_true",
        help="keep the input projection as its own MatMul instead of folding it into layer 0",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write step.int8.onnx (ONNX Runtime dynamic quantization, see --int8-variant)",
    )
    p.add_argument(
        "--int8-variant",
        default=DEFAULT_VARIANT,
        choices=VARIANTS,
        help=f"which INT8 variant --int8 writes (default: {DEFAULT_VARIANT}: every matrix, "
        "7-bit weights; see docs/export.md)",
    )
    p.add_argument(
        "--features",
        nargs="*",
        default=None,
        metavar="MODALITY",
        help="also write features_<MODALITY>.onnx for these modalities (default: all the model's)",
    )
    p.add_argument(
        "--backbone",
        default="resnet18",
        choices=["resnet18", "vgg16"],
        help="feature network backbone (default resnet18; vgg16 = the paper's FC7)",
    )
    p.add_argument(
        "--feature-stage",
        default=DEFAULT_FRAME_STAGE,
        choices=list(FRAME_STAGES),
        help=f"frame head: last ResNet-18 stage run (default {DEFAULT_FRAME_STAGE}; layer4 "
        "with trained weights)",
    )
    p.add_argument(
        "--feature-grid",
        type=positive_int,
        default=DEFAULT_FRAME_GRID,
        help=f"frame head: each box is pooled to GRID x GRID cells (default "
        f"{DEFAULT_FRAME_GRID}; 1 with trained weights)",
    )
    p.add_argument(
        "--flow-preset",
        default=DEFAULT_DIS_PRESET,
        choices=list(DIS_PRESETS),
        help=f"flow network: the OpenCV DIS preset of its flow images, recorded in its "
        f"sidecar for extract and stream (default {DEFAULT_DIS_PRESET})",
    )
    p.add_argument(
        "--backbone-weights",
        type=Path,
        default=None,
        help="local torchvision state_dict file for the backbone (never downloaded); "
        "random weights otherwise, and the sidecar says so",
    )
    p.add_argument(
        "--triton",
        type=Path,
        default=None,
        metavar="REPO_DIR",
        help="also write a Triton model repository serving the step model",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``reclnet export``; returns the process exit code.

    0 on success; 2 on bad arguments or an unusable checkpoint (missing, corrupt,
    NaN weights); 1 when writing the artifacts fails (one line naming the file).
    """
    parser = _export_parser()
    args = parser.parse_args(argv)
    import onnx

    max_opset = int(onnx.defs.onnx_opset_version())
    if not MIN_OPSET <= args.opset <= max_opset:
        parser.error(
            f"argument --opset: must be in [{MIN_OPSET}, {max_opset}] (this onnx), got {args.opset}"
        )
    from reclnet.export.onnx_export import export_step
    from reclnet.train.checkpoint import CheckpointError, load_checkpoint

    try:
        model, payload = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"reclnet export: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.features or ()) - set(model.config.modalities))
    if unknown:
        parser.error(
            f"argument --features: the model has no modality {unknown}; "
            f"it has {model.config.modality_names}"
        )
    try:
        written = _export(args, model, export_step, payload.get("class_names", []))
    except (OSError, ValueError) as exc:  # ArtifactError is a ValueError
        print(f"reclnet export: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _export(
    args: argparse.Namespace, model: Any, export_step: Any, class_names: list[str]
) -> list[Path]:
    """Write what ``reclnet export`` was asked for; the written files in order."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    written = [
        export_step(
            model,
            out / "step.onnx",
            opset=args.opset,
            fold_projection=not args.no_fold_projection,
            source_checkpoint=args.checkpoint,
            class_names=class_names,
        )
    ]
    if args.int8:
        from reclnet.export.quantize import quantize_step

        written.append(
            quantize_step(out / "step.onnx", out / "step.int8.onnx", variant=args.int8_variant)
        )
    if args.features is not None:
        from reclnet.export.features import export_features

        for modality in args.features or model.config.modality_names:
            written.append(
                export_features(
                    out / f"features_{modality}.onnx",
                    stream=modality,
                    out_dim=model.config.modalities[modality],
                    backbone=args.backbone,
                    weights=args.backbone_weights,
                    opset=args.opset,
                    stage=args.feature_stage,
                    grid=args.feature_grid,
                    flow_preset=args.flow_preset if modality == "flow" else None,
                )
            )
    if args.triton is not None:
        from reclnet.export.triton import write_triton_repository

        written.append(write_triton_repository(out / "step.onnx", args.triton))
    return written


def _engine_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="reclnet build-engine",
        description="Build a TensorRT engine (+ sidecar) from an exported ONNX step model.",
    )
    p.add_argument("onnx", type=Path, help="exported model (with its sidecar beside it)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument(
        "--fp16",
        action="store_true",
        help="FP16 engine (TensorRT 10: FP16 flag; 11: FP16 graph with FP32 I/O, converted)",
    )
    prec.add_argument("--int8", action="store_true", help="INT8 engine (needs a Q/DQ graph)")
    p.add_argument("--min-tracks", type=int, default=1, help="profile minimum N (default 1)")
    p.add_argument("--opt-tracks", type=int, default=32, help="profile optimum N (default 32)")
    p.add_argument("--max-tracks", type=int, default=256, help="profile maximum N (default 256)")
    p.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        help="timing cache file, read if present and written back",
    )
    p.add_argument(
        "--workspace-mb", type=positive_int, default=1024, help="builder workspace (MiB)"
    )
    p.add_argument(
        "--device", type=int, default=0, help="CUDA device recorded in the sidecar (default 0)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="engine path (default: beside the ONNX file, .engine)",
    )
    return p


def build_engine_main(argv: list[str] | None = None) -> int:
    """``reclnet build-engine``; returns the process exit code."""
    args = _engine_parser().parse_args(argv)
    from reclnet.export.tensorrt_engine import EngineBuildError, build_engine

    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    try:
        path = build_engine(
            args.onnx,
            args.out,
            precision=precision,
            min_tracks=args.min_tracks,
            opt_tracks=args.opt_tracks,
            max_tracks=args.max_tracks,
            timing_cache=args.timing_cache,
            workspace_mb=args.workspace_mb,
            device=args.device,
        )
    except (EngineBuildError, ValueError, ImportError, OSError) as exc:
        print(f"reclnet build-engine: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(path)
    return 0
