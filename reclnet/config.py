"""The model and post-processing hyper-parameters: the one place they are declared.

:class:`RecLNetConfig` is saved in every checkpoint (as a plain dict) and in the
JSON sidecar beside every exported artifact; everything downstream (export,
runtime backends, benchmarks) reads it back from there and never re-declares a
size. This module needs only the standard library so that ``reclnet.runtime``
can read sidecars without torch.

Class layout of the model output
--------------------------------
The model scores ``C + 1`` classes per frame: columns ``0 .. C-1`` are the
actions, with the 0-based labels of the dataset (UCF101-24 label 3 is column
3), and column ``C`` (the last one) is background.

Packed recurrent state
----------------------
A track's whole recurrent state is one float32 row of ``state_size`` values so
that a runtime can keep one row per live track. The row is laid out modality by modality (in the order of :attr:`RecLNetConfig.modalities`), layer by layer inside a
modality, and for each layer the hidden vector ``h`` (M values), followed for an
LSTM by its cell vector ``c`` (M values). A new track starts from zeros. The
``fc`` baseline has no state (``state_size == 0``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

CELLS = ("gru", "lstm", "fc")
#: Largest size (features, projection, memory, layers, classes, state) a config may
#: declare: beyond it the weights alone (M * M per layer) would need terabytes, so the
#: number is a forgery or a broken file, not a model.
MAX_MODEL_SIZE = 1 << 20
#: Most modalities a model may declare.
MAX_MODALITIES = 64
#: Largest post-processing sample count (window, top_k, min_length): 65,536 samples are
#: 44 minutes at 25 fps, far above any median window; larger values would only make the
#: scorer allocate per-track buffers that do not fit.
MAX_POSTPROCESS_SAMPLES = 1 << 16
_MODALITY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FUSIONS = ("average", "gating", "fusion_layer")


@dataclass(frozen=True)
class RecLNetConfig:
    """Hyper-parameters of a RecLNet model (paper sections 3.2 and 3.4).

    Attributes
    ----------
    num_actions : int
        C, the number of action classes; the model outputs C + 1 probabilities,
        background last.
    modalities : dict[str, int]
        Input feature size per modality, in modality order: ``{"rgb": 4096,
        "flow": 4096}`` for Fast-RCNN FC7 features, 832 per modality for I3D.
        One modality makes a single-modality network.
    projection_size : int
        Output size of the per-modality linear layer that normalizes the input.
    memory_size : int
        M, the hidden size of every recurrent layer.
    num_layers : int
        Recurrent layers per modality; the outputs of all of them are concatenated.
    cell : str
        ``"gru"`` (the paper's model), ``"lstm"`` or ``"fc"`` (the baseline with
        no recurrence: fully connected layers with a ReLU, sized so that the
        stack has the GRU stack's parameter count within 1%).
    fusion : str
        How two or more modalities are combined: ``"average"`` of the modalities'
        softmax outputs, ``"gating"`` (learned per-class weights on each
        modality's class scores before one softmax) or ``"fusion_layer"`` (a
        linear classifier on the concatenated memories of all modalities).
        Ignored for a single modality.
    """

    num_actions: int = 24
    modalities: dict[str, int] = field(default_factory=lambda: {"rgb": 4096, "flow": 4096})
    projection_size: int = 1024
    memory_size: int = 256
    num_layers: int = 2
    cell: str = "gru"
    fusion: str = "fusion_layer"

    def __post_init__(self) -> None:
        owner = "RecLNetConfig"
        for attr in ("cell", "fusion"):
            if not isinstance(getattr(self, attr), str):
                raise TypeError(f"{owner}.{attr} must be a string, got {getattr(self, attr)!r:.60}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}.cell must be one of {CELLS}, got {self.cell!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"{owner}.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not isinstance(self.modalities, dict):
            raise TypeError(
                f"{owner}.modalities must be a dict name -> size, got {self.modalities!r:.60}"
            )
        if not 1 <= len(self.modalities) <= MAX_MODALITIES:
            raise ValueError(
                f"{owner}.modalities must name 1 to {MAX_MODALITIES} modalities, "
                f"got {len(self.modalities)}"
            )
        modalities = {}
        for name, size in self.modalities.items():
            # "state" is the name of the step graph's state input.
            if not isinstance(name, str) or not _MODALITY_NAME.fullmatch(name) or name == "state":
                raise ValueError(
                    f"{owner}.modalities: bad modality name {name!r:.60} "
                    "(1 to 64 of A-Z a-z 0-9 _ . -, not 'state')"
                )
            modalities[name] = _check_int(owner, f"modalities[{name!r}]", size, 1, MAX_MODEL_SIZE)
        for attr in ("num_actions", "projection_size", "memory_size", "num_layers"):
            value = _check_int(owner, attr, getattr(self, attr), 1, MAX_MODEL_SIZE)
            object.__setattr__(self, attr, value)
        # A dict field in a frozen dataclass: copy it so callers cannot mutate ours.
        object.__setattr__(self, "modalities", modalities)
        if self.state_size > MAX_MODEL_SIZE:
            raise ValueError(
                f"{owner}: state size {self.state_size} (modalities x layers x memory) "
                f"exceeds {MAX_MODEL_SIZE}"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def num_classes(self) -> int:
        """C + 1: the actions plus background (the last column)."""
        return self.num_actions + 1

    @property
    def background_index(self) -> int:
        """Column of the background class in the model output."""
        return self.num_actions

    @property
    def modality_names(self) -> list[str]:
        """The modalities in state and input order."""
        return list(self.modalities)

    @property
    def fc_hidden_size(self) -> int:
        """Width of the ``fc`` baseline's layers.

        Chosen so that ``num_layers`` fully connected layers (projection ->
        H -> H ...) hold as many parameters as the GRU stack they replace:
        solve ``P*H + H + (L-1)*(H*H + H) = gru_params`` for H.
        """
        p, m, n = self.projection_size, self.memory_size, self.num_layers
        gru = 3 * (p * m + m * m + 2 * m) + (n - 1) * 3 * (2 * m * m + 2 * m)
        if n == 1:
            return max(1, round(gru / (p + 1)))
        a, b, c = n - 1, p + 1 + (n - 1), -gru
        return max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))

    @property
    def layer_output_size(self) -> int:
        """Size of one layer's output (M, or the fc width for the baseline)."""
        return self.fc_hidden_size if self.cell == "fc" else self.memory_size

    @property
    def modality_output_size(self) -> int:
        """Size of one modality's concatenated layer outputs (2M in the paper)."""
        return self.num_layers * self.layer_output_size

    @property
    def state_per_layer(self) -> int:
        """Packed state values per recurrent layer: M for a GRU, 2M for an LSTM, 0 for fc."""
        return {"gru": 1, "lstm": 2, "fc": 0}[self.cell] * self.memory_size

    @property
    def state_size(self) -> int:
        """S, the length of a track's packed state row."""
        return len(self.modalities) * self.num_layers * self.state_per_layer

    def state_slices(self) -> dict[tuple[str, int], slice]:
        """Where each (modality, layer) lives in the packed state row.

        Returns
        -------
        dict[tuple[str, int], slice]
            ``(modality, layer) -> slice`` into a row of length ``state_size``;
            for an LSTM the first M values of the slice are h, the next M are c.
        """
        out: dict[tuple[str, int], slice] = {}
        offset, width = 0, self.state_per_layer
        for modality in self.modalities:
            for layer in range(self.num_layers):
                out[(modality, layer)] = slice(offset, offset + width)
                offset += width
        return out

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what checkpoints and sidecars store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecLNetConfig:
        """Read back :meth:`to_dict` output (a checkpoint's, sidecar's or snapshot's).

        Untrusted input: every key must be present and none unknown; the field checks
        of the constructor then refuse wrong types (``"5"``, ``5.0``, ``true``) and
        sizes out of range.
        """
        if not isinstance(data, dict):
            raise TypeError(f"RecLNetConfig: expected a dict, got {type(data).__name__}")
        fields = list(cls.__dataclass_fields__)
        unknown = sorted(str(k) for k in data if k not in fields)
        missing = [f for f in fields if f not in data]
        if unknown:
            raise ValueError(f"RecLNetConfig: unknown key(s) {unknown}")
        if missing:
            raise ValueError(f"RecLNetConfig: missing key(s) {missing}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RecLNetConfig:
        return cls.from_dict(json.loads(text))


def _check_int(
    owner: str, name: str, value: Any, minimum: int, maximum: int | None = None, why: str = ""
) -> int:
    """``value`` as an int in ``[minimum, maximum]``; a clear ValueError/TypeError otherwise."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{owner}.{name} must be an integer, got {value!r}")
    out = int(value.__index__())
    if out < minimum or (maximum is not None and out > maximum):
        upper = "" if maximum is None else f" and <= {maximum}{why}"
        raise ValueError(f"{owner}.{name} must be >= {minimum}{upper}, got {out}")
    return out


def _check_unit(owner: str, name: str, value: Any) -> float:
    """``value`` as a finite float in ``[0, 1]``; a clear ValueError/TypeError otherwise."""
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise TypeError(f"{owner}.{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or not 0.0 <= out <= 1.0:
        raise ValueError(f"{owner}.{name} must be a finite number in [0, 1], got {value!r}")
    return out


@dataclass(frozen=True)
class PostprocessConfig:
    """Defaults of the temporal localization (paper section 3.4, "Detection").

    The one place these defaults are written: every command-line option, function
    default and runtime reads them from here (the C core in ``csrc/`` has its own
    copy in ``rpp_config_init``, for C callers). The values are checked on
    construction (and by :func:`dataclasses.replace`).

    Attributes
    ----------
    window : int
        Median filter window, in samples of the track (>= 1).
    lookahead : int
        Samples the online median waits for after the one it smooths, in
        ``0 .. (window - 1) // 2``: 0 is the causal, zero-delay filter;
        ``(window - 1) // 2`` reproduces the offline centred filter exactly.
    threshold : float
        Smoothed score at or above which a frame belongs to a segment (in [0, 1]).
    top_k : int
        A segment's score is the mean of its top-k raw scores (>= 1).
    nms_iou : float
        Spatio-temporal IoU above which the lower-scored segment is suppressed (in [0, 1]).
    min_length : int
        Segments shorter than this many samples are dropped (>= 1).

    Raises
    ------
    TypeError, ValueError
        A field of the wrong type or out of its range (the message names it).
    """

    window: int = 25
    lookahead: int = 0
    threshold: float = 0.1
    top_k: int = 40
    nms_iou: float = 0.2
    min_length: int = 1

    def __post_init__(self) -> None:
        owner = "PostprocessConfig"
        window = _check_int(owner, "window", self.window, 1, MAX_POSTPROCESS_SAMPLES)
        values = {
            "window": window,
            "lookahead": _check_int(
                owner, "lookahead", self.lookahead, 0, (window - 1) // 2, " = (window - 1) // 2"
            ),
            "threshold": _check_unit(owner, "threshold", self.threshold),
            "top_k": _check_int(owner, "top_k", self.top_k, 1, MAX_POSTPROCESS_SAMPLES),
            "nms_iou": _check_unit(owner, "nms_iou", self.nms_iou),
            "min_length": _check_int(
                owner, "min_length", self.min_length, 1, MAX_POSTPROCESS_SAMPLES
            ),
        }
        # Plain Python numbers (numpy scalars would not survive JSON).
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what sidecars and snapshots store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostprocessConfig:
        """Read back :meth:`to_dict` output; unknown keys are an error, missing ones default."""
        if not isinstance(data, dict):
            raise TypeError(f"PostprocessConfig: expected a dict, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"PostprocessConfig: unknown keys {sorted(unknown)}")
        return cls(**data)


#: Where the C core's copy of the post-processing defaults is generated.
C_DEFAULTS_HEADER = "csrc/include/reclnet/postproc_defaults.h"


def postprocess_defaults_c_header() -> str:
    """The text of :data:`C_DEFAULTS_HEADER`: :class:`PostprocessConfig`'s defaults for C.

    The C core (``rpp_config_init``) takes its defaults from that generated header, so
    they are written once, here. Regenerate it with ``make c-defaults``;
    a test fails when the committed header differs from this text.
    """
    d = PostprocessConfig()
    return (
        "/* Generated by `make c-defaults` from reclnet/config.py PostprocessConfig:\n"
        " * do not edit; tests/runtime/postproc/test_defaults.py checks it is current. */\n"
        "#ifndef RECLNET_POSTPROC_DEFAULTS_H\n"
        "#define RECLNET_POSTPROC_DEFAULTS_H\n\n"
        f"#define RPP_DEFAULT_WINDOW {d.window}\n"
        f"#define RPP_DEFAULT_LOOKAHEAD {d.lookahead}\n"
        f"#define RPP_DEFAULT_THRESHOLD {float(d.threshold)!r}f\n"
        f"#define RPP_DEFAULT_TOP_K {d.top_k}\n"
        f"#define RPP_DEFAULT_MIN_LENGTH {d.min_length}\n\n"
        "#endif\n"
    )


def write_postprocess_defaults_c_header() -> str:
    """Regenerate :data:`C_DEFAULTS_HEADER` in the source checkout (``make c-defaults``)."""
    from pathlib import Path

    target = Path(__file__).resolve().parents[1] / C_DEFAULTS_HEADER
    target.write_text(postprocess_defaults_c_header())
    return str(target)
