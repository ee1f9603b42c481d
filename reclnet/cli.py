"""The ``reclnet`` command: one entry point, one subcommand per part.

Each subcommand lives in the part it belongs to as ``main(argv) -> int`` and is
imported only when it is run, so ``reclnet eval`` works without torch and
``reclnet --help`` is instant.

Every command parses its arguments with :class:`reclnet.argparsing.ArgumentParser`
(errors: one line, exit status 2) and reports the bad files it meets as one
line. As a last line of defence the dispatcher turns what a command let through
from bad input, an ``OSError`` (missing file, full disk, permission) or an
error class of reclnet's own (``ArtifactError``, ``BackendError``,
``CheckpointError``, ``TubeFormatError``, ...), into one line on stderr and
exit status 1, never a traceback; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("reclnet.train.train", "main", "train a RecLNet model on a track-feature dataset"),
    "synth": (
        "reclnet.train.synthetic",
        "main",
        "write a synthetic track-feature dataset or rendered action videos (--kind video)",
    ),
    "extract": (
        "reclnet.train.extract",
        "main",
        "videos + tracks + tubes -> a track-feature dataset",
    ),
    "export": ("reclnet.export.cli", "main", "export a checkpoint to ONNX (+ sidecar JSON)"),
    "build-engine": ("reclnet.export.cli", "build_engine_main", "build a TensorRT engine"),
    "eval": ("reclnet.runtime.offline.cli", "main", "evaluate detections against tubes"),
    "stream": ("reclnet.runtime.camera.cli", "main", "run the online scorer on a video or camera"),
    "serve": ("reclnet.runtime.serve.cli", "main", "many cameras on a Ray cluster (exactly-once)"),
    "bench": ("reclnet.benchmarks.suite", "main", "run the benchmark suite"),
    "demo": ("reclnet.demo", "main", "the built-in end-to-end demo (make demo)"),
    "gpu-check": ("reclnet.runtime.backends.gpu_check", "main", "prove the GPU path vs ORT CPU"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: reclnet COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`reclnet COMMAND --help` describes a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``reclnet COMMAND ARGS...`` to the command's own ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"reclnet: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"reclnet {name}: needs {exc.name or exc} which is not installed "
            f"(install the matching extra, e.g. pip install 'reclnet[train]')",
            file=sys.stderr,
        )
        return 2
    try:
        return int(getattr(module, func_name)(rest) or 0)
    except Exception as exc:
        if not _is_input_error(exc):
            raise
        print(f"reclnet {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _is_input_error(exc: BaseException) -> bool:
    """An OSError, or an exception class that reclnet itself defines for bad input."""
    if isinstance(exc, OSError):
        return True
    return any(
        cls.__module__.split(".")[0] == "reclnet" and cls.__name__.endswith("Error")
        for cls in type(exc).__mro__
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
