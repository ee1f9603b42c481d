"""The scorer's snapshot file: one zip of ``meta.json`` + ``.npy`` arrays, written atomically.

Format (``reclnet-snapshot/1``), a ZIP archive (stored, uncompressed) holding:

* ``meta.json``: UTF-8 JSON object with ``"format": "reclnet-snapshot/1"`` and
  the scalar state (see :meth:`reclnet.runtime.scorer.OnlineScorer.snapshot` for the keys);
* ``<name>.npy``: one array per name, in NumPy's ``.npy`` format, never with
  Python objects (read back with ``allow_pickle=False``).

Because the members are standard ``.npy`` files, ``numpy.load(path)`` also
opens the arrays (as an ``.npz``). The file is written to a temporary file in
the destination directory, flushed and fsynced, then renamed over the
destination, and the directory is fsynced: a crash leaves either the old or the
new snapshot, never a torn one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "SnapshotError", "read_snapshot", "write_snapshot"]

FORMAT = "reclnet-snapshot/1"


class SnapshotError(ValueError):
    """A snapshot file is missing, corrupt, of another format or does not fit the scorer."""


def write_snapshot(
    path: str | os.PathLike, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> Path:
    """Write ``meta`` and ``arrays`` atomically to ``path``.

    Parameters
    ----------
    path : path-like
        Destination file.
    meta : dict
        JSON-serializable scalars; ``"format"`` is added.
    arrays : dict[str, np.ndarray]
        Numeric arrays (no object dtype).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_bytes = json.dumps({"format": FORMAT, **meta}, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("meta.json", meta_bytes)
                for name, arr in arrays.items():
                    arr = np.asarray(arr)
                    if arr.dtype.hasobject:
                        raise TypeError(f"snapshot array {name!r} has object dtype")
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, arr, allow_pickle=False)
                    zf.writestr(f"{name}.npy", buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk too.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def read_snapshot(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a snapshot written by :func:`write_snapshot`.

    Returns
    -------
    meta : dict
    arrays : dict[str, np.ndarray]

    Raises
    ------
    SnapshotError
        Missing or unreadable file, wrong format, or a member that is not a plain array.
    """
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"snapshot {path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            if zf.testzip() is not None:
                raise SnapshotError(f"snapshot {path}: corrupt member (CRC mismatch)")
            names = zf.namelist()
            if "meta.json" not in names:
                raise SnapshotError(f"snapshot {path}: no meta.json")
            meta = json.loads(zf.read("meta.json").decode())
            arrays = {}
            for name in names:
                if name == "meta.json":
                    continue
                if not name.endswith(".npy"):
                    raise SnapshotError(f"snapshot {path}: unexpected member {name!r}")
                with zf.open(name) as fh:
                    arrays[name[:-4]] = np.lib.format.read_array(
                        io.BytesIO(fh.read()), allow_pickle=False
                    )
    except SnapshotError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot {path}: cannot be read ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"snapshot {path}: not a {FORMAT} file")
    return meta, arrays
