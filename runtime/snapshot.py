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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.jsonsafe import json_depth

__all__ = [
    "FORMAT",
    "MAX_META_BYTES",
    "MAX_META_DEPTH",
    "SnapshotError",
    "bank_state_tracks",
    "read_snapshot",
    "write_snapshot",
]

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


#: Largest ``meta.json`` accepted (a real one is a few KiB).
MAX_META_BYTES = 1 << 20
#: Deepest nesting of JSON arrays / objects accepted in ``meta.json`` (a real one has 3).
MAX_META_DEPTH = 32
#: dtype kinds a snapshot array may have: bool, signed / unsigned integers, floats.
_ARRAY_KINDS = "biuf"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"meta.json holds {name}, which is not JSON")


def _read_meta(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> dict[str, Any]:
    if info.file_size > MAX_META_BYTES:
        raise SnapshotError(
            f"{where}: meta.json has {info.file_size} bytes (at most {MAX_META_BYTES})"
        )
    text = zf.read(info).decode("utf-8")
    # Checked before json.loads, whose recursion a deeply nested document exhausts.
    if json_depth(text) > MAX_META_DEPTH:
        raise SnapshotError(f"{where}: meta.json nests deeper than {MAX_META_DEPTH} levels")
    meta = json.loads(text, parse_constant=_refuse_constant)
    if not isinstance(meta, dict):
        raise SnapshotError(f"{where}: meta.json is not a JSON object")
    return meta


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One ``.npy`` member whose header must account for its size exactly.

    The header (shape, dtype) is read first and the member must hold exactly that
    many bytes: a forged shape cannot make the reader allocate more than the file has.
    """
    name = info.filename
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise SnapshotError(f"{where}: {name} has .npy version {version}")
        header = fh.tell() if fh.seekable() else None
        if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields or dtype.subdtype:
            raise SnapshotError(f"{where}: {name} has dtype {dtype}, not a plain number type")
        count = 1
        for dim in shape:
            count *= int(dim)
        nbytes = count * dtype.itemsize
        data = fh.read(info.file_size + 1)  # at most the member: bounded by the header check
    if header is not None and info.file_size != header + nbytes:
        raise SnapshotError(
            f"{where}: {name} is {info.file_size} bytes but its header {shape} {dtype} needs "
            f"{header + nbytes}"
        )
    if len(data) != nbytes:
        raise SnapshotError(
            f"{where}: {name} holds {len(data)} data bytes, its header needs {nbytes}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def read_snapshot(
    path: str | os.PathLike, expected: Iterable[str] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a snapshot written by :func:`write_snapshot`, trusting nothing in it.

    Every member must be stored (compressed members could expand without bound), be
    ``meta.json`` or a ``.npy`` whose header accounts for its exact size, with a plain
    numeric dtype; ``meta.json`` is at most :data:`MAX_META_BYTES` and nests at most
    :data:`MAX_META_DEPTH` levels. Memory used is thus bounded by the file size.

    Parameters
    ----------
    path : path-like
        The snapshot.
    expected : iterable of str, optional
        The array names the file must hold exactly (unknown or missing ones are refused).

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
    where = f"snapshot {path}"
    if not path.is_file():
        raise SnapshotError(f"{where}: no such file")
    want = None if expected is None else set(expected)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise SnapshotError(f"{where}: a member name appears twice")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                    raise SnapshotError(
                        f"{where}: member {info.filename!r} is compressed (only stored members)"
                    )
                if info.flag_bits & 0x1:
                    raise SnapshotError(f"{where}: member {info.filename!r} is encrypted")
                if info.filename != "meta.json" and not (
                    info.filename.endswith(".npy") and (want is None or info.filename[:-4] in want)
                ):
                    raise SnapshotError(f"{where}: unexpected member {info.filename!r}")
            if "meta.json" not in names:
                raise SnapshotError(f"{where}: no meta.json")
            if want is not None:
                missing = sorted(want - {n[:-4] for n in names if n.endswith(".npy")})
                if missing:
                    raise SnapshotError(f"{where}: missing array(s) {missing}")
            meta: dict[str, Any] = {}
            arrays = {}
            # Reading a stored member checks its CRC; a mismatch raises BadZipFile.
            for info in infos:
                if info.filename == "meta.json":
                    meta = _read_meta(zf, info, where)
                else:
                    arrays[info.filename[:-4]] = _read_npy(zf, info, where)
    except SnapshotError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{where}: cannot be read ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise SnapshotError(f"{where}: not a {FORMAT} file")
    return meta, arrays


def bank_state_tracks(state: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decode the C bank's snapshot bytes (layout of ``reclnet/postproc.h``, version 1).

    Used to cross-check a scorer snapshot's arrays against its bank. Call it only on
    bytes the C loader accepted (``SegmentBank.from_state``): it does not re-validate.

    Returns
    -------
    config : dict
        ``num_classes``, ``window``, ``lookahead``, ``threshold``, ``close_threshold``,
        ``top_k``, ``min_length``, ``max_gap``, ``capacity``.
    tracks : list of dict
        Per open track, ascending by slot: ``slot``, ``track_id``, ``count``, ``done``,
        ``last_frame``, ``frames`` (sample index -> frame of the last ``lookahead + 1``
        samples) and ``segments``: ``(label, started, num_samples, first_frame)`` of
        each open segment.
    """
    import struct

    try:
        pos = 16
        C, w, L, thr, close, k, min_len, gap, cap, nt = struct.unpack_from(
            "<iiiffiiqii", state, pos
        )
        pos += 44
        config = dict(
            num_classes=C,
            window=w,
            lookahead=L,
            threshold=thr,
            close_threshold=close,
            top_k=k,
            min_length=min_len,
            max_gap=gap,
            capacity=cap,
        )
        tracks = []
        for _ in range(nt):
            slot, tid, count, done, last, prev = struct.unpack_from("<iqqqqq", state, pos)
            pos += 44
            ring = struct.unpack_from(f"<{L + 1}q", state, pos)
            pos += 8 * (L + 1)
            frames = {s: ring[s % (L + 1)] for s in range(max(0, count - L - 1), count)}
            wn = min(count, w)
            segments = []
            for c in range(C):
                pos += 4 * wn
                is_open, started, num, first, _, hn = struct.unpack_from("<BBiqqi", state, pos)
                pos += 26 + 4 * hn
                if is_open:
                    segments.append((c, bool(started), num, first))
            tracks.append(
                dict(
                    slot=slot,
                    track_id=tid,
                    count=count,
                    done=done,
                    last_frame=last,
                    frames=frames,
                    segments=segments,
                )
            )
    except struct.error as exc:
        raise SnapshotError(f"bank state cannot be decoded ({exc})") from exc
    return config, tracks
