"""Parsing untrusted JSON text with bounded size and nesting depth, and without NaN / Infinity.

:func:`json.loads` recurses once per nested array or object, so a small file of
100,000 ``[`` exhausts the interpreter stack (``RecursionError``); it also
accepts ``NaN`` and ``Infinity``, which are not JSON. :func:`loads_bounded`
checks the size and the depth first (the depth in one pass of C-speed regular
expressions and iterators), then parses, refusing those constants, and reports
every problem as :class:`JSONLimitError`, a ``ValueError``. Standard library only,
so that every part of reclnet can use it.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "JSONLimitError",
    "json_depth",
    "loads_bounded",
]

#: Nesting of arrays / objects accepted by default (reclnet's own files nest at most 4 deep).
DEFAULT_MAX_DEPTH = 32
#: Size accepted by default (a sidecar or a tube line is a few KiB).
DEFAULT_MAX_BYTES = 16 << 20

# A complete JSON string literal (the unrolled-loop form is linear: no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONLimitError(ValueError):
    """JSON text that is invalid, too large, nested too deeply or holding NaN / Infinity."""


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text (0 for a scalar).

    Brackets inside string literals do not count. For invalid text (an
    unterminated string, unbalanced brackets) the result is an upper bound of
    what a parser could nest before failing, so it is safe as a limit check.

    Parameters
    ----------
    text : str

    Returns
    -------
    int
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, max(itertools.accumulate(map(_DELTA.__getitem__, brackets))))


def _refuse_constant(name: str) -> Any:
    raise JSONLimitError(f"{name} is not a JSON value")


def loads_bounded(
    text: str | bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_nan: bool = False,
) -> Any:
    """:func:`json.loads` of untrusted text, with limits checked before parsing.

    Parameters
    ----------
    text : str or bytes
        The document (bytes must be UTF-8).
    max_depth : int
        Deepest nesting of arrays / objects accepted.
    max_bytes : int
        Largest document accepted, in bytes (characters for ``str``).
    allow_nan : bool
        Parse ``NaN`` / ``Infinity`` as floats (for a reader that checks values
        itself and names the field), instead of refusing them.

    Returns
    -------
    Any
        The parsed value.

    Raises
    ------
    JSONLimitError
        Too large, nested deeper than ``max_depth``, not UTF-8, not JSON, or holding
        ``NaN`` / ``Infinity`` / ``-Infinity`` (unless ``allow_nan``); the message names the problem (and,
        for a syntax error, the line and column).
    """
    if len(text) > max_bytes:
        raise JSONLimitError(f"JSON document of {len(text)} bytes (at most {max_bytes})")
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONLimitError(f"not UTF-8 text (byte {exc.start})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONLimitError(f"JSON nests {depth} levels deep (at most {max_depth})")
    try:
        if allow_nan:
            return json.loads(text)
        return json.loads(text, parse_constant=_refuse_constant)
    except JSONLimitError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONLimitError(
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        # e.g. an integer of more digits than int() converts (sys.get_int_max_str_digits)
        raise JSONLimitError(f"invalid JSON: {exc}") from None
