"""The ``reclnet serve`` configuration: its YAML schema and validation, before anything starts.

A configuration file lists the cameras, the per-camera defaults, the workers,
the step mode and the sink::

    workers: 2                 # camera-worker actors ("auto": from the cluster's CPUs)
    cpus_per_worker: 1
    snapshot_every: 50         # frames between a camera's snapshots
    state_dir: state           # snapshots (shared storage on a cluster)
    status: status.json        # progress of every camera, rewritten atomically
    max_restarts: 3            # restarts of a dead worker before the run fails
    step:
      mode: local              # or "service": the batched Ray Serve step deployment
    sink:
      dir: events              # events/<camera>.jsonl
      queue: 1024              # bounded: a slow sink holds the cameras back
    defaults:                  # any camera key but name / source
      model: model
      feature_scale: 0.5
    cameras:
      - name: lobby
        source: lobby.mp4
        tracks: lobby.txt      # or detector: det.onnx; neither: OpenCV's HOG detector

Relative paths are relative to the configuration file's folder. Every error
is a :class:`ConfigError` naming the key (``cameras[1].tracks``) and the
problem, raised by :func:`parse_config` before any worker starts. PyYAML is
imported only by :func:`load_config`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclnet.runtime.camera.cli import DEFAULT_HOG_REGIONS, HOG_REGIONS
from reclnet.runtime.camera.features import FEATURE_BACKENDS, FEATURE_PRECISIONS

__all__ = [
    "CameraConfig",
    "ConfigError",
    "ServeConfig",
    "SinkConfig",
    "StepConfig",
    "load_config",
    "parse_config",
]

#: Camera names become file names and parts of event ids.
CAMERA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NETWORK = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://", "http://", "https://")


class ConfigError(ValueError):
    """A configuration problem; the message starts with the key (``cameras[0].source``)."""


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its source, model, persons and per-camera settings.

    Attributes
    ----------
    name : str
        Unique; names the events file, the snapshot folder and the event ids.
    source : str
        A video file (absolute path), a camera index (``"0"``) or a URL.
    model : Path
        The exported model folder (``step.onnx`` + ``features_<modality>.onnx``).
    tracks, detector : Path or None
        Persons from a MOTChallenge file, from an ONNX detector, or (both None)
        from OpenCV's HOG detector.
    """

    name: str
    source: str
    model: Path
    tracks: Path | None = None
    detector: Path | None = None
    int8: bool = False
    feature_precision: str = "auto"
    feature_backend: str = "auto"
    threads: int | None = 1
    feature_scale: float = 0.5
    hog_upscale: float = 1.0
    hog_regions: str = DEFAULT_HOG_REGIONS
    detect_every: int = 1
    lookahead: int | None = None
    threshold: float | None = None
    max_age: int = 10
    max_frames: int | None = None
    pace: float = 0.0
    retries: int = 5
    backoff: float = 0.5

    @property
    def live(self) -> bool:
        """A camera index or a network stream (not replayable): resumes at the current frame."""
        return self.source.isdigit() or self.source.startswith(_NETWORK)

    @property
    def step_path(self) -> Path:
        """The step model file."""
        return self.model / ("step.int8.onnx" if self.int8 else "step.onnx")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the events (a resumed run must have the same)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in _as_dict(self).items()}


@dataclass(frozen=True)
class SinkConfig:
    """Where events go: ``kind`` (``"jsonl"``: one JSON Lines file per camera in ``dir``)."""

    dir: Path
    kind: str = "jsonl"
    queue: int = 1024
    fsync: bool = False


@dataclass(frozen=True)
class StepConfig:
    """The model step: in each worker (``"local"``) or a batched Ray Serve deployment."""

    mode: str = "local"
    replicas: int = 1
    max_batch_size: int = 64
    batch_wait_ms: float = 2.0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int | None = 1


@dataclass(frozen=True)
class ServeConfig:
    """The whole configuration (see the module docstring for the YAML)."""

    cameras: tuple[CameraConfig, ...]
    sink: SinkConfig
    state_dir: Path
    step: StepConfig = field(default_factory=StepConfig)
    workers: int | None = None
    cpus_per_worker: float = 1.0
    snapshot_every: int = 50
    status: Path | None = None
    max_restarts: int = 3
    address: str | None = None
    poll_seconds: float = 0.5


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# ----------------------------------------------------------------- typed readers
def _int(key: str, value: Any, minimum: int | None = None, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value}")
    return int(value)


def _float(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    optional: bool = False,
    open_low: bool = False,
) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{key}: must be finite, got {value}")
    if low is not None and (value <= low if open_low else value < low):
        raise ConfigError(f"{key}: must be {'>' if open_low else '>='} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ConfigError(f"{key}: must be <= {high:g}, got {value:g}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _str(key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a camera index written as a number
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
    return value.strip()


def _path(key: str, value: Any, base: Path) -> Path:
    path = Path(_str(key, value)).expanduser()
    return path if path.is_absolute() else base / path


def _mapping(key: str, value: Any, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a mapping, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise ConfigError(f"{key}: keys must be strings, got {k!r}")
        if k not in known:
            where = f"{key}.{k}" if key != "config" else k
            raise ConfigError(f"{where}: unknown key (known keys: {', '.join(sorted(known))})")
    return value


# ------------------------------------------------------------------- sections
_TOP_KEYS = {
    "cameras",
    "defaults",
    "sink",
    "step",
    "state_dir",
    "workers",
    "cpus_per_worker",
    "snapshot_every",
    "status",
    "max_restarts",
    "address",
    "poll_seconds",
}
_CAMERA_KEYS = {f.name for f in dataclasses.fields(CameraConfig)}
_DEFAULT_KEYS = _CAMERA_KEYS - {"name", "source", "tracks"}


def _camera(key: str, raw: Mapping[str, Any], base: Path) -> CameraConfig:
    """One camera entry (defaults already merged in) -> CameraConfig, files checked."""
    for required in ("name", "source", "model"):
        if raw.get(required) is None:
            raise ConfigError(f"{key}.{required}: missing (every camera needs one)")
    name = _str(f"{key}.name", raw["name"])
    if not CAMERA_NAME.match(name):
        raise ConfigError(
            f"{key}.name: {name!r} is not a valid camera name (letters, digits, '_', '.', '-'; "
            f"at most 64 characters; it names files)"
        )
    source = _str(f"{key}.source", raw["source"])
    is_live = source.isdigit() or source.startswith(_NETWORK)
    if not is_live:
        path = _path(f"{key}.source", source, base)
        if not path.is_file():
            raise ConfigError(f"{key}.source: video file {path} does not exist")
        source = str(path)
    model = _path(f"{key}.model", raw["model"], base)
    if not model.is_dir():
        raise ConfigError(f"{key}.model: model folder {model} does not exist")
    int8 = _bool(f"{key}.int8", raw.get("int8", False))
    step = model / ("step.int8.onnx" if int8 else "step.onnx")
    if not step.is_file():
        raise ConfigError(f"{key}.model: {step} not found (export the model with `reclnet export`)")
    if not any(model.glob("features_*.onnx")):
        raise ConfigError(
            f"{key}.model: no features_<modality>.onnx in {model} "
            f"(export with `reclnet export CHECKPOINT --out {model} --features`)"
        )
    tracks = detector = None
    if raw.get("tracks") is not None:
        tracks = _path(f"{key}.tracks", raw["tracks"], base)
        if not tracks.is_file():
            raise ConfigError(f"{key}.tracks: tracks file {tracks} does not exist")
    if raw.get("detector") is not None:
        detector = _path(f"{key}.detector", raw["detector"], base)
        if not detector.is_file():
            raise ConfigError(f"{key}.detector: detector model {detector} does not exist")
    if tracks is not None and detector is not None:
        raise ConfigError(f"{key}: give tracks or detector, not both")
    d = CameraConfig.__dataclass_fields__
    get = lambda k: raw.get(k, d[k].default)  # noqa: E731 - a local shorthand
    precision = _str(f"{key}.feature_precision", get("feature_precision"))
    if precision not in FEATURE_PRECISIONS:
        raise ConfigError(
            f"{key}.feature_precision: must be one of {', '.join(FEATURE_PRECISIONS)}, "
            f"got {precision!r}"
        )
    backend = _str(f"{key}.feature_backend", get("feature_backend"))
    if backend not in FEATURE_BACKENDS:
        raise ConfigError(
            f"{key}.feature_backend: must be one of {', '.join(FEATURE_BACKENDS)}, got {backend!r}"
        )
    if precision == "bf16" and backend == "onnxruntime":
        raise ConfigError(
            f"{key}: feature_precision bf16 runs on OpenVINO, not feature_backend onnxruntime"
        )
    regions = _str(f"{key}.hog_regions", get("hog_regions"))
    if regions not in HOG_REGIONS:
        raise ConfigError(
            f"{key}.hog_regions: must be one of {', '.join(HOG_REGIONS)}, got {regions!r}"
        )
    return CameraConfig(
        name=name,
        source=source,
        model=model,
        tracks=tracks,
        detector=detector,
        int8=int8,
        feature_precision=precision,
        feature_backend=backend,
        threads=_int(f"{key}.threads", get("threads"), 1, optional=True),
        feature_scale=_float(f"{key}.feature_scale", get("feature_scale"), 0, 4, open_low=True),
        hog_upscale=_float(f"{key}.hog_upscale", get("hog_upscale"), 0, 8, open_low=True),
        hog_regions=regions,
        detect_every=_int(f"{key}.detect_every", get("detect_every"), 1),
        lookahead=_int(f"{key}.lookahead", get("lookahead"), 0, optional=True),
        threshold=_float(f"{key}.threshold", get("threshold"), 0, 1, optional=True),
        max_age=_int(f"{key}.max_age", get("max_age"), 0),
        max_frames=_int(f"{key}.max_frames", get("max_frames"), 1, optional=True),
        pace=_float(f"{key}.pace", get("pace"), 0, 10_000),
        retries=_int(f"{key}.retries", get("retries"), 0),
        backoff=_float(f"{key}.backoff", get("backoff"), 0, 3600),
    )


def _step(raw: Any) -> StepConfig:
    if raw is None:
        return StepConfig()
    raw = _mapping("step", raw, {f.name for f in dataclasses.fields(StepConfig)})
    mode = _str("step.mode", raw.get("mode", "local"))
    if mode not in ("local", "service"):
        raise ConfigError(f"step.mode: must be 'local' or 'service', got {mode!r}")
    d = StepConfig()
    return StepConfig(
        mode=mode,
        replicas=_int("step.replicas", raw.get("replicas", d.replicas), 1),
        max_batch_size=_int("step.max_batch_size", raw.get("max_batch_size", d.max_batch_size), 1),
        batch_wait_ms=_float("step.batch_wait_ms", raw.get("batch_wait_ms", d.batch_wait_ms), 0),
        num_cpus=_float("step.num_cpus", raw.get("num_cpus", d.num_cpus), 0),
        num_gpus=_float("step.num_gpus", raw.get("num_gpus", d.num_gpus), 0),
        threads=_int("step.threads", raw.get("threads", d.threads), 1, optional=True),
    )


def _sink(raw: Any, base: Path) -> SinkConfig:
    if raw is None:
        raise ConfigError("sink: missing (give at least sink.dir, the events folder)")
    raw = _mapping("sink", raw, {f.name for f in dataclasses.fields(SinkConfig)})
    if raw.get("dir") is None:
        raise ConfigError("sink.dir: missing (the folder of the events files)")
    kind = _str("sink.kind", raw.get("kind", "jsonl"))
    if kind != "jsonl":
        raise ConfigError(f"sink.kind: unknown sink {kind!r} (known: jsonl)")
    return SinkConfig(
        dir=_path("sink.dir", raw["dir"], base),
        kind=kind,
        queue=_int("sink.queue", raw.get("queue", 1024), 1),
        fsync=_bool("sink.fsync", raw.get("fsync", False)),
    )


def parse_config(raw: Any, base: str | Path = ".") -> ServeConfig:
    """Validate a parsed configuration (a mapping, as from YAML).

    Parameters
    ----------
    raw : mapping
        The configuration (see the module docstring).
    base : path-like
        Relative paths are resolved against this folder (the file's folder).

    Returns
    -------
    ServeConfig

    Raises
    ------
    ConfigError
        The first problem, as ``"<key>: <problem>"``: an unknown or missing key, a
        value of the wrong type or out of range, a missing input file or model,
        duplicate camera names.
    """
    base = Path(base)
    raw = _mapping("config", raw, _TOP_KEYS)
    defaults = _mapping("defaults", raw.get("defaults") or {}, _DEFAULT_KEYS)
    cameras_raw = raw.get("cameras")
    if not isinstance(cameras_raw, list) or not cameras_raw:
        raise ConfigError("cameras: must be a non-empty list of cameras")
    cameras = []
    names: set[str] = set()
    for i, entry in enumerate(cameras_raw):
        key = f"cameras[{i}]"
        entry = _mapping(key, entry, _CAMERA_KEYS)
        merged = {**defaults, **entry}
        if "tracks" in entry and "detector" not in entry:
            # A camera's own tracks file replaces a default detector.
            merged.pop("detector", None)
        camera = _camera(key, merged, base)
        if camera.name in names:
            raise ConfigError(f"{key}.name: camera name {camera.name!r} is used twice")
        names.add(camera.name)
        cameras.append(camera)
    workers = raw.get("workers", "auto")
    workers = None if workers == "auto" else _int("workers", workers, 1)
    status = raw.get("status")
    address = raw.get("address")
    return ServeConfig(
        cameras=tuple(cameras),
        sink=_sink(raw.get("sink"), base),
        state_dir=_path("state_dir", raw.get("state_dir", "state"), base),
        step=_step(raw.get("step")),
        workers=workers,
        cpus_per_worker=_float("cpus_per_worker", raw.get("cpus_per_worker", 1.0), 0, 1024),
        snapshot_every=_int("snapshot_every", raw.get("snapshot_every", 50), 1),
        status=None if status is None else _path("status", status, base),
        max_restarts=_int("max_restarts", raw.get("max_restarts", 3), 0),
        address=None if address is None else _str("address", address),
        poll_seconds=_float("poll_seconds", raw.get("poll_seconds", 0.5), 0.01, 60),
    )


def load_config(path: str | Path) -> ServeConfig:
    """Read and validate a YAML configuration file (see :func:`parse_config`).

    Raises
    ------
    ConfigError
        The file is missing or not valid YAML, or a key is wrong (named).
    """
    path = Path(path)
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the cluster extra installs it
        raise ConfigError(
            "reading the configuration needs PyYAML: pip install 'reclnet[cluster]'"
        ) from exc
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(f"{path} is empty")
    return parse_config(raw, path.resolve().parent)
