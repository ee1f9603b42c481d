"""Restricted unpickling of ground-truth files: data only, never code.

The UCF101-24 annotations are distributed only as a pickle, and ``pickle.load`` on a
user-supplied file runs whatever the file asks for. :func:`load` reads such files with
an unpickler that admits only what that file holds: the built-in containers and scalars
pickle encodes with its own opcodes (dict, list, tuple, set, str, bytes, int, float,
bool, None) and numpy arrays, dtypes and scalars of plain numeric, bool and fixed-width
string types. Any other global (``os.system``, ``builtins.eval``, any other numpy
callable, ...) is refused before it is looked up, and numpy objects are rebuilt from
their validated bytes instead of calling numpy's own ``__setstate__`` on unchecked
state. The result is walked once more to refuse nesting deeper than :data:`MAX_DEPTH`,
recursive structures and incomplete objects.

Every refusal raises :class:`SafePickleError` (a ``ValueError``) naming the file and
the problem.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "SafePickleError", "load", "loads", "ALLOWED_GLOBALS"]

#: Deepest container nesting accepted (the UCF101-24 file nests 6 levels).
MAX_DEPTH = 64
#: The only globals a ground-truth pickle may name: what numpy >= 1 (``numpy.core``) and
#: numpy >= 2 (``numpy._core``) write for arrays, dtypes and scalars with protocols 3-4,
#: and protocol 3's sets. Each resolves to a checking stand-in, never to the real callable.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        # protocol 3 has no set opcodes: it writes set([...]) and frozenset([...])
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }
)
# bool, signed/unsigned integers, floats, complex, fixed-width bytes/unicode strings:
# dtypes whose items are plain bytes (never object pointers).
_DTYPE_SPEC = re.compile(r"^[<>|=]?(?:b1|\?|[iu][1248]|f[248]|c(?:8|16)|[SU][0-9]{1,7})$")
_MAX_ITEMSIZE = 1 << 22
_MAX_NDIM = 32


class SafePickleError(ValueError):
    """A pickle was refused or is malformed.

    Attributes
    ----------
    path : str
        The file (``"<bytes>"`` for :func:`loads`).
    problem : str
        What was wrong, without the file name.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class _Refused(Exception):
    """Raised inside the unpickler; :func:`loads` turns it into a SafePickleError."""


class _NdarraySentinel:
    """Stands for ``numpy.ndarray``: only usable as ``_reconstruct``'s first argument."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise _Refused("numpy.ndarray may not be called (only named as an array's type)")

    def __setstate__(self, state: Any) -> None:
        raise _Refused("numpy.ndarray used other than as an array's type")


_NDARRAY = _NdarraySentinel()


class _Dtype:
    """A validated plain dtype (``numpy.dtype(spec, False, True)`` + its pickled state)."""

    __slots__ = ("dtype", "built")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.built = False

    def __setstate__(self, state: Any) -> None:
        # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags);
        # only byteorder may differ from what the spec gives, and only for byte order.
        if self.built:
            raise _Refused("dtype state set twice")
        self.built = True
        dt = self.dtype
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3):
            raise _Refused(f"unsupported dtype state {_short(state)}")
        _, order, subarray, names, fields, elsize, alignment, flags = state
        flexible = dt.kind in "SU"
        expected = (
            None,
            None,
            None,
            dt.itemsize if flexible else -1,
            dt.alignment if flexible else -1,
            dt.flags,
        )
        if (subarray, names, fields, elsize, alignment, flags) != expected or order not in (
            "<",
            ">",
            "|",
            "=",
        ):
            raise _Refused(f"dtype state {_short(state)} does not describe a plain {dt.str} dtype")
        if order in "<>" and dt.itemsize > 1 and dt.kind != "S":
            self.dtype = dt.newbyteorder(order)


class _Scalar:
    """A numpy scalar from ``scalar(dtype, bytes)``, converted after loading."""

    __slots__ = ("value",)

    def __init__(self, value: np.generic) -> None:
        self.value = value

    def __setstate__(self, state: Any) -> None:
        raise _Refused("state applied to a numpy scalar")


class _Array:
    """A numpy array from ``_reconstruct`` + state, rebuilt from its raw bytes."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise _Refused("array state set twice")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _Refused(f"unsupported array state {_short(state)}")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype):
            raise _Refused(f"array dtype is {type(dtype).__name__}, not a numpy dtype")
        if not (
            isinstance(shape, tuple)
            and len(shape) <= _MAX_NDIM
            and all(type(n) is int and n >= 0 for n in shape)
        ):
            raise _Refused(f"invalid array shape {_short(shape)}")
        if not isinstance(fortran, bool) or not isinstance(raw, bytes):
            raise _Refused("array state needs a bool order flag and bytes data")
        count = 1
        for n in shape:
            count *= n
        dt = dtype.dtype
        if count * dt.itemsize != len(raw):
            raise _Refused(
                f"array of shape {shape} and dtype {dt.str} needs {count * dt.itemsize} bytes, "
                f"the file holds {len(raw)}"
            )
        flat = np.frombuffer(raw, dtype=dt)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> _Dtype:
    if not (isinstance(spec, str) and _DTYPE_SPEC.match(spec)) or align is not False:
        raise _Refused(f"dtype {_short(spec)} is not a plain numeric, bool or string dtype")
    if copy is not True:
        raise _Refused("dtype with copy=False")
    dt = np.dtype(spec)
    if dt.hasobject or dt.itemsize > _MAX_ITEMSIZE:
        raise _Refused(f"dtype {spec!r} refused")
    return _Dtype(dt)


def _scalar(dtype: Any, data: Any = None) -> _Scalar:
    if not isinstance(dtype, _Dtype) or not isinstance(data, bytes):
        raise _Refused("numpy scalar needs a plain dtype and bytes")
    if len(data) != dtype.dtype.itemsize:
        raise _Refused(
            f"numpy scalar of dtype {dtype.dtype.str} needs {dtype.dtype.itemsize} bytes, "
            f"got {len(data)}"
        )
    return _Scalar(np.frombuffer(data, dtype=dtype.dtype)[0])


def _reconstruct(subtype: Any, shape: Any = None, typecode: Any = None) -> _Array:
    # numpy always writes _reconstruct(ndarray, (0,), b'b'); the real content is the state.
    if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refused("numpy _reconstruct called with other than (ndarray, (0,), b'b')")
    return _Array()


def _set(items: Any = ()) -> set:
    if type(items) not in (list, tuple):
        raise _Refused("set() of other than a list")
    return set(items)


def _frozenset(items: Any = ()) -> frozenset:
    if type(items) not in (list, tuple):
        raise _Refused("frozenset() of other than a list")
    return frozenset(items)


_FACTORIES = {
    "dtype": _dtype,
    "scalar": _scalar,
    "_reconstruct": _reconstruct,
    "set": _set,
    "frozenset": _frozenset,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(
                f"global {module}.{name} is not allowed (a ground-truth pickle may hold only "
                "built-in containers and numpy arrays, dtypes and scalars)"
            )
        return _NDARRAY if name == "ndarray" else _FACTORIES[name]

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


_PLAIN = (str, bytes, bytearray, int, float, bool, type(None))


def _finish(root: Any) -> Any:
    """Replace the numpy placeholders; refuse deep, recursive or incomplete structures."""
    done: dict[int, Any] = {}
    active: set[int] = set()

    def walk(obj: Any, depth: int) -> Any:
        if isinstance(obj, _PLAIN):
            return obj
        key = id(obj)
        if key in done:
            return done[key]
        if depth > MAX_DEPTH:
            raise _Refused(f"containers nested deeper than {MAX_DEPTH} levels")
        if key in active:
            raise _Refused("recursive structure (a container holds itself)")
        active.add(key)
        if isinstance(obj, _Array):
            if obj.array is None:
                raise _Refused("numpy array without its data")
            out: Any = obj.array
        elif isinstance(obj, _Scalar):
            out = obj.value
        elif isinstance(obj, _Dtype):
            out = obj.dtype
        elif type(obj) is dict:
            out = {walk(k, depth + 1): walk(v, depth + 1) for k, v in obj.items()}
        elif type(obj) is list:
            out = [walk(v, depth + 1) for v in obj]
        elif type(obj) is tuple:
            out = tuple(walk(v, depth + 1) for v in obj)
        elif type(obj) in (set, frozenset):
            out = type(obj)(walk(v, depth + 1) for v in obj)
        elif obj is _NDARRAY or callable(obj):
            raise _Refused("a numpy type or function is left in the data (only data is allowed)")
        else:
            raise _Refused(f"unexpected {type(obj).__name__} object")
        active.discard(key)
        done[key] = out
        return out

    return walk(root, 0)


def loads(data: bytes, *, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only built-in containers and plain numpy objects.

    Parameters
    ----------
    data : bytes
        The pickle.
    name : str
        What to call the source in error messages.

    Returns
    -------
    object
        The unpickled value; numpy arrays come back writable and owning their data.

    Raises
    ------
    SafePickleError
        Refused content (a global outside :data:`ALLOWED_GLOBALS`, an unsupported numpy
        state, nesting deeper than :data:`MAX_DEPTH`, a recursive structure) or a
        malformed / truncated pickle.
    """
    try:
        obj = _Unpickler(io.BytesIO(data)).load()
        return _finish(obj)
    except _Refused as exc:
        raise SafePickleError(name, f"refused: {exc}") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise SafePickleError(
            name, f"not a complete pickle ({exc or type(exc).__name__})"
        ) from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise SafePickleError(name, f"malformed pickle ({type(exc).__name__}: {exc})") from None


def load(path: str | os.PathLike[str]) -> Any:
    """Read and unpickle a file with :func:`loads` (same guarantees and errors).

    Parameters
    ----------
    path : path-like

    Raises
    ------
    SafePickleError
        As :func:`loads`, the message naming ``path``.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    return loads(path.read_bytes(), name=str(path))
