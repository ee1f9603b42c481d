"""Output paths that cannot destroy inputs: checked once, before anything is opened.

``reclnet stream`` writes up to five files (events, overlay video, timeline,
snapshot, tracks). :func:`check_outputs` refuses, with a message naming the
path and the problem, any output that

* resolves (symlinks and hard links included) to one of the inputs (the source
  video, the tracks file, the detector) or to another output;
* is an existing file of the model directory (a model artifact);
* exists and is not a regular file (a directory, a FIFO, a device node such as
  ``/dev/null``: opening or atomically renaming over it would block, or
  replace the node itself);
* lies in a folder that does not exist or cannot be written.

:func:`place_file` moves a finished temporary file over its destination
atomically (the snapshot is written aside and placed only after the events are
safe).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["OutputPathError", "check_outputs", "place_file"]


class OutputPathError(ValueError):
    """An output path would overwrite an input, a model artifact or a non-regular file."""


def _identity(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of an existing path (after symlinks), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(
    inputs: Mapping[str, str | os.PathLike | None],
    outputs: Mapping[str, str | os.PathLike | None],
    *,
    protected_dirs: Iterable[str | os.PathLike] = (),
) -> None:
    """Refuse outputs that would destroy an input or could not be written.

    Parameters
    ----------
    inputs : dict[str, path or None]
        What each input is called in messages (``"the source video"``,
        ``"--tracks"``) -> its path; None entries (absent options) are skipped.
    outputs : dict[str, path or None]
        Option name (``"--events"``) -> path; None entries are skipped.
    protected_dirs : iterable of path
        Folders whose existing files must not be overwritten (the model
        directory: its artifacts).

    Raises
    ------
    OutputPathError
        The first problem found, as one line naming the option, the path and
        why it is refused.
    """
    # Inputs by resolved path and by inode (a hard link is the same file under another name).
    taken: dict[str, str] = {}
    inodes: dict[tuple[int, int], str] = {}
    for what, raw in inputs.items():
        if raw is None:
            continue
        path = Path(raw)
        taken[os.path.realpath(path)] = f"{what} ({path})"
        ident = _identity(path)
        if ident is not None:
            inodes[ident] = f"{what} ({path})"
    for directory in protected_dirs:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for child in directory.iterdir():
            if child.is_file():
                what = f"the model artifact {child}"
                taken.setdefault(os.path.realpath(child), what)
                ident = _identity(child)
                if ident is not None:
                    inodes.setdefault(ident, what)
    for option, raw in outputs.items():
        if raw is None:
            continue
        path = Path(raw)
        real = os.path.realpath(path)
        ident = _identity(path)
        owner = taken.get(real) or (inodes.get(ident) if ident is not None else None)
        if owner is not None:
            raise OutputPathError(f"{option} {path} is {owner}: refusing to overwrite it")
        if ident is not None:
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode):
                kind = (
                    "a directory"
                    if stat.S_ISDIR(mode)
                    else "a FIFO"
                    if stat.S_ISFIFO(mode)
                    else "a device node"
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket"
                    if stat.S_ISSOCK(mode)
                    else "not a regular file"
                )
                raise OutputPathError(
                    f"{option} {path} is {kind}: outputs must be regular files or new paths"
                )
        parent = Path(real).parent
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{option} {path}: {parent} is not a folder")
        if not parent.is_dir():
            raise OutputPathError(f"{option} {path}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} {path}: the folder {parent} is not writable")
        taken[real] = f"the {option} output ({path})"
        if ident is not None:
            inodes[ident] = f"the {option} output ({path})"


def place_file(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Rename a finished file over ``dest`` atomically and make the rename durable.

    Parameters
    ----------
    tmp : path-like
        The finished file, in ``dest``'s folder (a rename never crosses file systems).
    dest : path-like
        Its final name; an existing file there is replaced in one step.

    Returns
    -------
    Path
        ``dest``.
    """
    dest = Path(dest)
    os.replace(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return dest
