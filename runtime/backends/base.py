"""The step-backend contract: :class:`StepRunner`, the base class every backend subclasses.

A backend runs one RecLNet *step* for N live tracks: per-modality features
``[N, D]`` and packed states ``[N, S]`` in, probabilities ``[N, C+1]`` and new
states out. The public :meth:`StepRunner.step` is written once, here: it checks
the inputs (modality names, shapes, dtypes, finiteness, N against the
backend's ``max_tracks``), calls the backend's :meth:`StepRunner._step`, and
checks what came back (shapes, dtypes, finiteness, probability rows summing to
1), so that every backend, TensorRT included, keeps the same promises and a
backend implements only ``_step`` (plus loading and ``_close``).

Errors: bad input from the caller is a ``TypeError`` / ``ValueError`` naming the
problem; anything the backend itself gets wrong or cannot do is a
:class:`BackendError`.

Device-resident state
---------------------
A runner whose ``device_resident`` is True may return, instead of a host array,
an opaque *state handle* living on its device; the caller passes that handle
back unchanged as the next ``state`` while the batch of tracks is the same
(same slots in the same order, no new track), so states never leave the device
in the steady state. Whenever the batch changes the caller calls
:meth:`StepRunner.fetch_state` for a host copy and goes through host rows. A
handle's finiteness is not checked (that would copy it to the host); a
non-finite state shows up in the next step's probabilities, which are checked.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig, RecLNetConfig

__all__ = ["BackendError", "StepRunner", "all_finite", "check_features", "check_state"]

# A probability row of float32 softmax sums to 1 within a few ulp per class; fp16 and
# INT8 engines round more. 1e-2 holds for all of them and still catches logits, a
# missing softmax or a dropped column.
_SUM_TOLERANCE = 1e-2
_ONES: dict[int, np.ndarray] = {}


class BackendError(RuntimeError):
    """A backend cannot be loaded or failed (unknown name, missing package, bad model, bad output)."""


#: Columns per row dot product in :func:`all_finite`: OpenBLAS runs a dot product this
#: short in the calling thread (it spreads a matrix-vector product over its own threads).
_DOT_COLUMNS = 4096


def _ones(d: int) -> np.ndarray:
    ones = _ONES.get(d)
    if ones is None:
        ones = _ONES[d] = np.ones(d, np.float32)
    return ones


def all_finite(x: np.ndarray) -> bool:
    """Whether float32 ``[N, D]`` ``x`` holds only finite values (the per-frame check).

    Each row's dot product with ones is non-finite when the row holds a NaN or an
    infinity (they propagate through the products and the sum), and BLAS computes it
    at memory speed, about twice as fast as ``np.isfinite(x).all()``. A finite result
    proves the rows finite; a non-finite one may also come from finite values
    overflowing the sum, so only then is the exact check run.

    Row by row (``np.vecdot``, in chunks of :data:`_DOT_COLUMNS` columns), not ``x @ ones``:
    OpenBLAS runs a large matrix-vector product on its own threads, which then spin on
    the cores the model step is about to use. Measured on the 2-core Xeon at N = 1000
    (2 x 4096-d): the ONNX Runtime step after ``x @ ones`` took 6.8-14.5 ms longer than
    the bare session run, after the row dot products 2.3-2.7 ms (the checks included).

    Parameters
    ----------
    x : np.ndarray
        float32 ``[N, D]``.

    Returns
    -------
    bool
    """
    if x.size == 0:
        return True
    d = x.shape[1]
    vecdot = getattr(np, "vecdot", None)  # numpy >= 2.0
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, d, _DOT_COLUMNS):
            part = x[:, lo : lo + _DOT_COLUMNS]
            ones = _ones(part.shape[1])
            sums = vecdot(part, ones) if vecdot is not None else part @ ones
            if not np.isfinite(sums).all():
                return bool(np.isfinite(x).all())
    return True


def _first_bad_row(x: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])


def check_features(config: RecLNetConfig, features: Any, n: int) -> dict[str, np.ndarray]:
    """Check one frame's features against the model; raise naming the first problem.

    Parameters
    ----------
    config : RecLNetConfig
        The model (its ``modalities`` and their sizes).
    features : dict[str, np.ndarray]
        float32 ``[N, D_modality]`` per modality of ``config.modalities``, finite.
    n : int
        N, the number of tracks.

    Returns
    -------
    dict[str, np.ndarray]
        The same arrays, in the model's modality order (no copy).

    Raises
    ------
    TypeError, ValueError
        Not a dict, wrong or missing modalities, not numpy float32, wrong shape,
        NaN or infinite values.
    """
    if not isinstance(features, Mapping):
        raise TypeError(f"features must be a dict modality -> array, got {type(features)}")
    modalities = config.modalities
    missing = [s for s in modalities if s not in features]
    extra = [s for s in features if s not in modalities]
    if missing or extra:
        raise ValueError(
            f"features modalities {sorted(features)} do not match the model's "
            f"{list(modalities)} (missing {missing}, unknown {extra})"
        )
    out = {}
    for name, size in modalities.items():
        x = features[name]
        if not isinstance(x, np.ndarray):
            raise TypeError(f"features[{name!r}] must be a numpy array, got {type(x)}")
        if x.dtype != np.float32:
            raise TypeError(f"features[{name!r}] must be float32, got {x.dtype}")
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"features[{name!r}] must be [N={n}, {size}], got {x.shape}")
        if x.shape[1] != size:
            raise ValueError(
                f"features[{name!r}] must be [N={n}, {size}]: feature size {x.shape[1]}, "
                f"the model expects {size}"
            )
        if not all_finite(x):
            raise ValueError(
                f"features[{name!r}] has NaN or infinite values (row {_first_bad_row(x)})"
            )
        out[name] = x
    return out


def check_state(config: RecLNetConfig, state: Any, what: str = "state") -> int:
    """Check a host state array ``float32 [N, S]`` (finite); returns N.

    Raises
    ------
    TypeError, ValueError
        Not a float32 numpy array, not ``[N, S]``, NaN or infinite values.
    """
    s = config.state_size
    if not isinstance(state, np.ndarray):
        raise TypeError(f"{what} must be a float32 numpy array [N, {s}], got {type(state)}")
    if state.dtype != np.float32:
        raise TypeError(f"{what} must be float32 [N, {s}], got {state.dtype}")
    if state.ndim != 2 or state.shape[1] != s:
        raise ValueError(f"{what} must be [N, S={s}], got {state.shape}")
    if not all_finite(state):
        raise ValueError(f"{what} has NaN or infinite values (row {_first_bad_row(state)})")
    return int(state.shape[0])


class StepRunner(abc.ABC):
    """What the scorer needs from a backend; subclasses implement :meth:`_step`.

    A context manager: ``close()`` (or leaving the ``with`` block) releases the
    backend's sessions and device memory; a closed runner refuses to step.

    Attributes
    ----------
    name : str
        Backend name (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``, ...).
    config : RecLNetConfig
        The model's configuration (modalities and sizes).
    postprocess : PostprocessConfig
        Post-processing defaults stored with the model (sidecar), or the defaults.
    device_resident : bool
        True when :meth:`step` may return state handles that stay on a device.
    max_tracks : int or None
        Most tracks one step takes (an engine's profile), None for no limit.
    """

    name: str = "base"
    config: RecLNetConfig
    postprocess: PostprocessConfig
    device_resident: bool = False
    max_tracks: int | None = None
    #: What ``max_tracks`` is and what to do about it, for the error of a too large batch.
    max_tracks_origin: str = "the backend's max_tracks"
    max_tracks_hint: str = ""
    _closed: bool = False

    # ------------------------------------------------------------ contract
    def step(self, features: Mapping[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """One frame for N tracks.

        Parameters
        ----------
        features : dict[str, np.ndarray]
            float32 ``[N, D_modality]`` per modality of ``config.modalities``, finite.
        state : np.ndarray or handle
            float32 ``[N, S]`` finite host array, or the handle returned by the
            previous step of this runner (device-resident runners).

        Returns
        -------
        probs : np.ndarray
            float32 ``[N, C+1]`` on the host, finite, each row summing to 1.
        state : np.ndarray or handle
            The new states: float32 ``[N, S]`` (finite) or a device handle.

        Raises
        ------
        TypeError, ValueError
            Bad input (named in the message), including N outside ``1..max_tracks``.
        BackendError
            The runner is closed, the backend failed or returned a bad output.
        """
        if self._closed:
            raise BackendError(f"{self.name} backend: the runner is closed")
        if isinstance(state, np.ndarray):
            n = check_state(self.config, state)
        else:
            n = self._state_rows(state)
        if n < 1 or (self.max_tracks is not None and n > self.max_tracks):
            upper = "" if self.max_tracks is None else f", {self.max_tracks}"
            hint = f" ({self.max_tracks_hint})" if self.max_tracks_hint and n >= 1 else ""
            raise ValueError(
                f"{self.name} backend: N={n} tracks outside {self.max_tracks_origin} "
                f"[1{upper}]{hint}"
            )
        feats = check_features(self.config, features, n)
        try:
            probs, new_state = self._step(feats, state)
        except (BackendError, MemoryError):
            raise
        except Exception as exc:  # a backend's own exception types become BackendError
            raise BackendError(f"{self.name} backend: step failed: {exc}") from exc
        self._check_probs(probs, n)
        if isinstance(new_state, np.ndarray):
            self._check_new_state(new_state, n)
        else:
            rows = self._state_rows(new_state)
            if rows != n:
                raise BackendError(
                    f"{self.name} backend returned a state handle of {rows} rows for N={n}"
                )
        return probs, new_state

    def fetch_state(self, state: Any) -> np.ndarray:
        """Host copy (float32 ``[N, S]``) of a state returned by :meth:`step`.

        A host array is returned as it is; a handle is copied from the device.
        """
        if isinstance(state, np.ndarray):
            return state
        if self._closed:
            raise BackendError(f"{self.name} backend: the runner is closed")
        n = self._state_rows(state)
        host = self._fetch_state(state)
        self._check_new_state(host, n)
        return host

    def close(self) -> None:
        """Release sessions and device memory (idempotent)."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> StepRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        """The backend's step on checked inputs (see :meth:`step`); outputs are checked after."""

    def _state_rows(self, state: Any) -> int:
        """N of a state handle of this runner; raise for anything else (stale handles too)."""
        raise TypeError(
            f"{self.name} backend: state must be a float32 numpy array "
            f"[N, {self.config.state_size}], got {type(state).__name__}"
        )

    def _fetch_state(self, state: Any) -> np.ndarray:
        """Host copy of a handle that :meth:`_state_rows` accepted."""
        raise TypeError(f"{self.name} backend has no device states")  # pragma: no cover

    def _close(self) -> None:  # noqa: B027 - optional hook, not every backend holds something
        """Free what the backend holds (called once)."""

    # -------------------------------------------------------- output checks
    def _check_probs(self, probs: Any, n: int) -> None:
        c = self.config.num_classes
        if not isinstance(probs, np.ndarray) or probs.dtype != np.float32 or probs.shape != (n, c):
            got = f"{probs.dtype}{list(probs.shape)}" if isinstance(probs, np.ndarray) else probs
            raise BackendError(
                f"{self.name} backend returned probs {got!s:.80}, expected float32[{n}, {c}]"
            )
        if not all_finite(probs):
            raise BackendError(
                f"{self.name} backend returned non-finite probabilities "
                f"(row {_first_bad_row(probs)})"
            )
        sums = probs.sum(axis=1, dtype=np.float64)
        bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOLERANCE)
        if bad.size:
            raise BackendError(
                f"{self.name} backend returned probabilities whose row {int(bad[0])} sums to "
                f"{sums[bad[0]]:.6g}, not 1"
            )

    def _check_new_state(self, state: np.ndarray, n: int) -> None:
        s = self.config.state_size
        if state.dtype != np.float32 or state.shape != (n, s):
            raise BackendError(
                f"{self.name} backend returned state {state.dtype}{list(state.shape)}, "
                f"expected float32[{n}, {s}]"
            )
        if not all_finite(state):
            raise BackendError(
                f"{self.name} backend returned non-finite states (row {_first_bad_row(state)})"
            )
