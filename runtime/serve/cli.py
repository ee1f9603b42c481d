"""``reclnet serve CONFIG.yaml``: run many cameras on a Ray cluster (or ``--local``, in this process).

The configuration is read and validated first (:mod:`.config`: every error
names its key), the events files are checked against the inputs
(:func:`~reclnet.runtime.serve.driver.check_paths`), and only then do workers
start. Progress per camera is shown live (rich, on a terminal) and written to
the configuration's ``status`` file. A run that is stopped (Ctrl-C) or
crashes resumes where its snapshots left off when started again with the same
configuration; ``--fresh`` starts every camera over (its snapshots and events
files are deleted).

Exit status: 0 when every camera finished, 1 when a camera failed or the run
could not go on, 2 for a bad configuration or arguments.

Test hook (environment, not a user interface): ``RECLNET_SERVE_TEST_EXIT_AT=cam:K[,cam:K]``
makes the worker of camera ``cam`` end its process (``os._exit``) right after
frame K, once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    from reclnet.argparsing import ArgumentParser, positive_int

    p = ArgumentParser(
        prog="reclnet serve",
        description="Localize actions on many cameras, on a Ray cluster, with exactly-once events.",
    )
    p.add_argument("config", type=Path, help="the YAML configuration (docs/serve.md)")
    p.add_argument("--local", action="store_true", help="run the workers in this process (no Ray)")
    p.add_argument("--address", help="Ray cluster address (default: the config's, else local)")
    p.add_argument("--num-cpus", type=positive_int, help="CPUs of a local Ray cluster started here")
    p.add_argument("--fresh", action="store_true", help="delete snapshots and events; start over")
    p.add_argument("--quiet", action="store_true", help="no live display, summary only")
    return p


def _exit_hook() -> dict[str, int]:
    spec = os.environ.get("RECLNET_SERVE_TEST_EXIT_AT", "")
    out = {}
    for part in filter(None, spec.split(",")):
        name, _, frame = part.rpartition(":")
        out[name] = int(frame)
    return out


class _Display:
    """A live table of the cameras (rich), on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self._live = None
        if enabled:
            from rich.live import Live

            self._live = Live(refresh_per_second=4, transient=False)
            self._live.start()

    def __call__(self, status: dict[str, Any]) -> None:
        if self._live is None:
            return
        from rich.table import Table

        table = Table(title="reclnet serve")
        for col in ("camera", "worker", "status", "frame", "fps", "tracks", "events", "lag s"):
            table.add_column(col)
        for cam in status["cameras"].values():
            table.add_row(
                cam["camera"],
                str(cam.get("worker")),
                cam.get("status", ""),
                str(cam.get("frame")),
                f"{cam.get('fps', 0.0):.1f}",
                str(cam.get("live_tracks", 0)),
                str(cam.get("events", 0)),
                "" if cam.get("lag_s") is None else f"{cam['lag_s']:.2f}",
            )
        self._live.update(table)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def main(argv: list[str] | None = None) -> int:
    """``reclnet serve``; returns the exit status."""
    args = build_parser().parse_args(argv)
    from reclnet.runtime.camera.output_paths import OutputPathError

    from .config import ConfigError, load_config
    from .driver import Driver, LocalBackend, ServeError, check_paths, clear_state

    def fail(message: str, status: int) -> int:
        print(f"reclnet serve: {message}", file=sys.stderr)
        return status

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(f"error: {args.config}: {exc}", 2)
    if args.local and config.step.mode == "service":
        return fail("error: step.mode service needs Ray (drop --local)", 2)
    try:
        check_paths(config)
    except OutputPathError as exc:
        return fail(f"error: {exc}", 2)
    if args.fresh:
        clear_state(config)
    try:
        exit_at = _exit_hook()
    except ValueError as exc:
        return fail(f"error: bad RECLNET_SERVE_TEST_EXIT_AT: {exc}", 2)

    if args.local:
        backend: Any = LocalBackend(config)
    else:
        try:
            from .ray_backend import RayBackend
        except ImportError as exc:  # pragma: no cover - ray_backend imports Ray lazily
            return fail(str(exc), 2)
        init = {"num_cpus": args.num_cpus} if args.num_cpus else {}
        try:
            backend = RayBackend(config, address=args.address, init_options=init, exit_at=exit_at)
        except ImportError as exc:
            return fail(str(exc), 2)
    display = _Display(not args.quiet and sys.stderr.isatty())
    status = 0
    try:
        final = Driver(config, backend, on_progress=display).run()
    except ServeError as exc:
        status = fail(f"error: {exc}", 1)
        final = None
    except KeyboardInterrupt:
        status = fail("interrupted: the cameras resume from their snapshots next time", 1)
        final = None
    finally:
        display.close()
        backend.shutdown()
    if final is not None:
        for cam in final["cameras"].values():
            line = (
                f"{cam['camera']}: {cam['status']}, frame {cam.get('frame')}, "
                f"{cam.get('events', 0)} events"
            )
            if cam.get("resumed_from") is not None:
                line += f", resumed after frame {cam['resumed_from']}"
            if cam.get("error"):
                line += f": {cam['error']}"
                status = 1
            print(line)
    return status
