"""Where the project's real data lives: the one place that knows.

``RECLNET_DATA`` names the data folder (the layout of ``../shared/data``:
``ucf101-24/``, ``jhmdb/``, ``video/vtest.avi``). Without it, a source checkout
falls back to ``shared/data`` beside the repository; an installed package has no
default and every command that needs data asks for ``--data`` instead. Standard
library only, so ``reclnet.runtime`` can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "data_dir", "source_checkout", "vtest_video"]

ENV_VAR = "RECLNET_DATA"


def source_checkout() -> Path | None:
    """The repository root when reclnet runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[1]
    if (root / "setup.py").is_file() and (root / "csrc").is_dir():
        return root
    return None


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data folder: ``explicit``, else ``$RECLNET_DATA``, else ``../shared/data``.

    Parameters
    ----------
    explicit : path, optional
        A ``--data`` flag's value; wins over everything else.

    Returns
    -------
    Path or None
        The folder (which may not exist: callers say what they miss), or None for an
        installed package with neither ``explicit`` nor ``RECLNET_DATA``.
    """
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    root = source_checkout()
    if root is None:
        return None
    return root.parent / "shared" / "data"


def vtest_video(explicit: str | os.PathLike | None = None) -> Path | None:
    """OpenCV's pedestrian sample ``video/vtest.avi`` inside :func:`data_dir`, or None."""
    base = data_dir(explicit)
    return None if base is None else base / "video" / "vtest.avi"
