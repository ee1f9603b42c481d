"""Rendered action videos: person-like figures whose actions differ in motion, drawn in pixels.

One responsibility: generate and write ``reclnet synth --kind video`` sets, i.e.
320x240 videos procedurally drawn with OpenCV, the person tracks a tracker would
write for them (MOTChallenge files) and their ground-truth action tubes (the
project's tube JSON Lines), so that the path from pixels to a trained model
(``reclnet extract`` -> train -> export -> ``reclnet stream`` -> ``reclnet eval``)
can be exercised on videos whose actions are known exactly.

What is drawn
-------------
Each video has a static textured background (a wall and a floor with
furniture-like rectangles, low- and high-frequency texture), camera noise
(per-frame sensor noise, a brightness flicker, a slow sub-pixel camera drift
and a slight blur) and several stick-like figures (head with hair and eyes,
a torso with a chest logo, two-segment arms and legs with hands and shoes, in
random colours). Figures stand idle (breathing sway, with occasional
low-amplitude *fidgets*: a few frames of a weak, partial action pose that stays
background), walk (side view, legs and arms swinging, in depth as well: nearer
figures are bigger and drawn in front), pass in front of each other, enter and
leave the frame, and perform actions. An action has an onset (its first
quarter: the figure blends from idle into the motion), a middle and an offset
(its last quarter: back to idle). The motion patterns (:data:`MOTIONS`) share
poses and differ in *motion*, so that a single frame is ambiguous (the raised
arm of ``wave`` is a frame of ``raise``, the crouch of ``squat`` a frame of
``jump``, a ``march`` stride a walking step, a fidget any action's first
frame) and flow and temporal context decide:

=========  ==================================================================
``wave``   one arm raised, swinging side to side, the body swaying (period ~14 frames)
``clap``   both forearms sweeping in and out in front of the chest (~10)
``jump``   crouch, take off with the arms up, land (~21)
``squat``  slow knee bend down and up, arms forward (~32)
``spin``   turning about the vertical axis with the arms out (~19)
``kick``   one leg swung out sideways and back (~15)
``punch``  fists up, arms alternately punching out sideways (~14)
``swing``  both arms swung together in a big arc, slow back, fast through (~26)
``march``  knees alternately raised towards the camera (~17)
``raise``  both arms raised sideways over the head and lowered (~28)
=========  ==================================================================

The built-in timing (``timing="builtin"``) uses ``actions`` (default
:data:`DEFAULT_ACTIONS`: ``wave jump squat spin kick``) as the classes, in that
order: 2-4 figures a video (fewer when no placement avoids an actor), the first always an actor, the others actors with
probability 0.5; an actor performs 1-2 actions of 24-64 frames between idle and
walking stretches.

``timing="ucf101-24"`` renders one video per annotated UCF101-24 video (a
seeded random subset of ``videos`` of them): its length, and for each of its
ground-truth tubes one acting figure whose action covers exactly the tube's
frames and whose position and size follow the tube's annotated boxes (bottom
centre and height; the width stretches the figure within limits), so the short
classes are really short. Tubes that follow one another in time and place are
chained into one figure that walks from one to the next; before the first and
after the last action a figure is idle or walks. The 24 classes are mapped to
9 motion patterns (:data:`UCF_MOTIONS`; ``clap`` is unused), and the classes of
the rendered set are these 9 patterns (in :data:`MOTIONS` order), with each
video's UCF101-24 class names recorded in the manifest:

* ``jump``: Basketball, BasketballDunk, LongJump, TrampolineJumping
* ``swing``: CricketBowling, GolfSwing, TennisSwing
* ``spin``: FloorGymnastics, IceDancing, SalsaSpin
* ``squat``: Skiing, Skijet, Surfing
* ``march``: Biking, HorseRiding, WalkingWithDog
* ``raise``: CliffDiving, Diving, PoleVault
* ``kick``: SkateBoarding, SoccerJuggling
* ``punch``: Fencing, VolleyballSpiking
* ``wave``: RopeClimbing

(24 distinct patterns would not be distinct enough to be learnable from
random-initialized features; 9 patterns keep the real timing, which is the
point of this mode.)

Ground truth and tracks
-----------------------
A figure's true box is the extent of what is drawn (limbs with their thickness,
head, hands, shoes), including the camera drift, clipped to the frame. A tube
(:class:`~reclnet.runtime.offline.tubes.Tube`) is the true box on every frame
of one action. The MOT track of a figure covers its whole visible life (idle,
walking, acting: every frame where at least 20% of its box is inside the
frame), one track per figure. So that the project's IoU > 0.3 labelling rule
(:func:`reclnet.train.data.assign_labels`) gives back exactly the rendered
labels, a figure that is not acting never overlaps an acting one with an IoU
above 0.2 (builtin: such plans are redrawn; ucf101-24: the non-acting figure is
not drawn on those frames, and its idle/walking life before its first action or
after its last one is cut there). Optionally the tracks get a tracker's
errors: ``jitter`` (temporally correlated box noise, in box sizes) and
``id_switches`` (per overlap of two figures, the probability that their ids
are exchanged after it; each track also restarts under a new id with half that
probability).

Reproducibility: everything comes from ``seed`` through numpy Generators, a
video's from its own stream (``SeedSequence([seed, key])``, key = index for
builtin, CRC-32 of the video name for ucf101-24), with separate streams for the
plan, the pixels, the jitter and the id switches, so a video does not depend on
the other videos, and turning jitter or id switches on changes neither the
video nor the tubes. The encoder runs on one thread, so the files are
byte-identical for the same seed and the same software, on any number of cores.

Layout of ``out``::

    manifest.json          format, classes, fps, size, seed, timing source, videos
    tubes.jsonl            ground-truth tubes of every video (video = its name)
    videos/<name>.mp4      H.264 (fragmented MP4, see reclnet.runtime.camera.render)
    tracks/<name>.txt      MOTChallenge tracks (1-based frames, ids from 1)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

from reclnet.runtime.camera.persons import write_mot
from reclnet.runtime.camera.render import VideoWriter
from reclnet.runtime.offline.tubes import Tube, write_tubes

__all__ = [
    "WIDTH",
    "HEIGHT",
    "FPS",
    "MOTIONS",
    "DEFAULT_ACTIONS",
    "UCF_MOTIONS",
    "PHASE_NAMES",
    "FigureTruth",
    "VideoTruth",
    "RenderedSet",
    "motion_pose",
    "render_set",
    "MANIFEST_FORMAT",
]

WIDTH, HEIGHT = 320, 240
FPS = 25.0
MANIFEST_FORMAT = "reclnet-rendered/1"

MOTIONS: tuple[str, ...] = (
    "wave",
    "clap",
    "jump",
    "squat",
    "spin",
    "kick",
    "punch",
    "swing",
    "march",
    "raise",
)
DEFAULT_ACTIONS: tuple[str, ...] = ("wave", "jump", "squat", "spin", "kick")
UCF_MOTIONS: dict[str, str] = {
    "Basketball": "jump",
    "BasketballDunk": "jump",
    "Biking": "march",
    "CliffDiving": "raise",
    "CricketBowling": "swing",
    "Diving": "raise",
    "Fencing": "punch",
    "FloorGymnastics": "spin",
    "GolfSwing": "swing",
    "HorseRiding": "march",
    "IceDancing": "spin",
    "LongJump": "jump",
    "PoleVault": "raise",
    "RopeClimbing": "wave",
    "SalsaSpin": "spin",
    "SkateBoarding": "kick",
    "Skiing": "squat",
    "Skijet": "squat",
    "SoccerJuggling": "kick",
    "Surfing": "squat",
    "TennisSwing": "swing",
    "TrampolineJumping": "jump",
    "VolleyballSpiking": "punch",
    "WalkingWithDog": "march",
}
# Mean period in frames of each motion's cycle (each instance draws +-15%).
_PERIODS = {
    "wave": 14.0,
    "clap": 10.0,
    "jump": 21.0,
    "squat": 32.0,
    "spin": 19.0,
    "kick": 15.0,
    "punch": 14.0,
    "swing": 26.0,
    "march": 17.0,
    "raise": 28.0,
}

#: Per-frame phase codes of :attr:`FigureTruth.phase`.
PHASE_IDLE, PHASE_WALK, PHASE_ONSET, PHASE_MIDDLE, PHASE_OFFSET, PHASE_FIDGET = range(6)
PHASE_NAMES = ("idle", "walk", "onset", "middle", "offset", "fidget")
ONSET_FRACTION = OFFSET_FRACTION = 0.25
# A non-acting figure's box never overlaps an acting one's more than this (labels stay exact
# under the IoU > 0.3 rule, with a margin for jitter).
CONFLICT_IOU = 0.2
# A figure is in the tracks where at least this share of its box is inside the frame.
VISIBLE_FRACTION = 0.2
# IoU from which two figures count as overlapping for an id switch.
SWITCH_IOU = 0.1
# Jitter's frame-to-frame correlation (a tracker's error drifts, it is not white).
JITTER_RHO = 0.85

# ------------------------------------------------------------------ pose model
# A pose is a vector of 18 numbers; angles in radians measured from straight down,
# positive towards +x in the image; lengths in figure heights (the figure's rest
# height is about 1). Side A is the figure's image-left side, B its image-right.
(
    LIFT,  # vertical offset of the whole body (jumping)
    LEAN,  # torso angle from vertical
    HS,  # horizontal scale of the whole figure (turning: cos of the turn angle)
    WIDTHF,  # lateral spacing of shoulders and hips (1 front view, ~0.3 side view)
    FACE_C,  # facing: cos (1 towards the camera, -1 away) ...
    FACE_S,  # ... and sin (+-1: facing +-x) of the facing angle
    AU_A,
    AL_A,
    AU_B,
    AL_B,  # upper / lower arm angles
    ALEN_A,
    ALEN_B,  # arm foreshortening (pointing at the camera)
    LU_A,
    LL_A,
    LU_B,
    LL_B,  # thigh / shin angles
    LLEN_A,
    LLEN_B,  # thigh foreshortening (knee towards the camera)
) = range(18)
NUM_POSE = 18
REST_POSE = np.array(
    [0, 0, 1, 1, 1, 0, -0.15, -0.08, 0.15, 0.08, 1, 1, -0.06, -0.03, 0.06, 0.03, 1, 1],
    dtype=np.float64,
)
_SWAP = [(AU_A, AU_B), (AL_A, AL_B), (ALEN_A, ALEN_B), (LU_A, LU_B), (LL_A, LL_B), (LLEN_A, LLEN_B)]
_NEGATE = [LEAN, FACE_S, AU_A, AL_A, AU_B, AL_B, LU_A, LL_A, LU_B, LL_B]

# Body proportions (figure heights).
_THIGH = _SHIN = 0.25
_UPPER_ARM, _FOREARM = 0.16, 0.15
_TORSO, _NECK_HEAD = 0.32, 0.105
_SHOULDER, _HIP = 0.1, 0.055
_HEAD_R, _FOOT_R, _HAND_R = 0.075, 0.035, 0.032
_ARM_T, _LEG_T, _TORSO_T = 0.065, 0.075, 0.03


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _mirror(pose: np.ndarray) -> np.ndarray:
    """The same pose with sides A and B exchanged (the action done with the other arm/leg)."""
    out = pose.copy()
    for a, b in _SWAP:
        out[..., a], out[..., b] = pose[..., b], pose[..., a]
    out[..., _NEGATE] *= -1.0
    return out


def _symmetric(p: np.ndarray) -> None:
    """Side A := mirror image of side B (in place), for two-sided motions."""
    for a, b in _SWAP:
        p[:, a] = p[:, b]
    for a in (AU_A, AL_A, LU_A, LL_A):
        p[:, a] *= -1.0


def _crouch(p: np.ndarray, c: np.ndarray) -> None:
    """Knees bent outwards by ``c`` in [0, 1] (front view); the body drops by itself."""
    p[:, LU_B] = 0.06 + 0.8 * c
    p[:, LL_B] = 0.03 - 0.45 * c
    p[:, LLEN_B] = 1.0 - 0.4 * c


def motion_pose(motion: str, t: np.ndarray, period: float) -> np.ndarray:
    """The full-strength pose of a motion pattern at local times ``t`` (side B active).

    Parameters
    ----------
    motion : str
        One of :data:`MOTIONS`.
    t : np.ndarray
        float ``[T]`` frames since the action's first frame.
    period : float
        Frames per cycle.

    Returns
    -------
    np.ndarray
        float64 ``[T, 18]`` poses (see the pose constants of this module).
    """
    if motion not in _PERIODS:
        raise ValueError(f"unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
    t = np.asarray(t, dtype=np.float64)
    u = 2.0 * np.pi * t / period
    phi = np.mod(t / period, 1.0)
    p = np.tile(REST_POSE, (len(t), 1))
    if motion == "wave":
        # The whole arm swings and the body sways with it (a wave seen from afar).
        p[:, AU_B] = 2.3 + 0.6 * np.sin(u)
        p[:, AL_B] = 2.8 + 1.1 * np.sin(u + 0.4)
        p[:, LEAN] = 0.06 * np.sin(u)
    elif motion == "clap":
        p[:, AU_B] = 0.35 + 0.4 * (0.5 + 0.5 * np.cos(u))
        p[:, AL_B] = 3.25 - 1.0 * np.cos(u)
        _symmetric(p)
    elif motion == "jump":
        crouch = np.select(
            [phi < 0.3, phi < 0.4, phi < 0.8],
            [_smooth(phi / 0.3), 1.0 - _smooth((phi - 0.3) / 0.1), 0.0],
            0.6 * np.sin(np.pi * (phi - 0.8) / 0.2),
        )
        air = np.where((phi >= 0.4) & (phi < 0.8), np.sin(np.pi * (phi - 0.4) / 0.4), 0.0)
        p[:, LIFT] = 0.2 * air
        _crouch(p, crouch)
        p[:, AU_B] = 0.15 + 0.35 * crouch + 2.4 * air
        p[:, AL_B] = 0.08 + 0.3 * crouch + 2.5 * air
        _symmetric(p)
    elif motion == "squat":
        c = 0.5 - 0.5 * np.cos(u)
        _crouch(p, 1.1 * c)
        p[:, AU_B] = 0.15 + 1.35 * c
        p[:, AL_B] = 0.08 + 1.45 * c
        p[:, ALEN_B] = 1.0 - 0.5 * c
        _symmetric(p)
    elif motion == "spin":
        p[:, HS] = np.cos(u)
        p[:, FACE_C] = np.cos(u)
        p[:, FACE_S] = np.sin(u)
        p[:, AU_B], p[:, AL_B] = 1.45, 1.55
        _symmetric(p)
    elif motion == "kick":
        k = np.maximum(0.0, np.sin(u)) ** 1.5
        p[:, LU_B] = 0.06 + 1.3 * k
        p[:, LL_B] = 0.03 + 1.25 * k
        p[:, AU_B] = 0.15 + 0.7 * k
        p[:, AL_B] = 0.08 + 0.8 * k
        p[:, AU_A] = -0.15 - 0.7 * k
        p[:, AL_A] = -0.08 - 0.8 * k
        p[:, LEAN] = -0.15 * k
    elif motion == "punch":
        pb = np.maximum(0.0, np.sin(u)) ** 0.7
        pa = np.maximum(0.0, -np.sin(u)) ** 0.7
        p[:, AU_B] = 0.35 + 1.25 * pb
        p[:, AL_B] = 2.7 - 1.15 * pb
        p[:, AU_A] = -(0.35 + 1.25 * pa)
        p[:, AL_A] = -(2.7 - 1.15 * pa)
        p[:, LEAN] = 0.1 * (pb - pa)
        p[:, LU_B] = 0.06 + 0.25 * pa  # stepping into the punch
        p[:, LU_A] = -(0.06 + 0.25 * pb)
    elif motion == "swing":
        alpha = np.select(
            [phi < 0.45, phi < 0.65],
            [-2.0 * _smooth(phi / 0.45), -2.0 + 4.3 * _smooth((phi - 0.45) / 0.2)],
            2.3 * (1.0 - _smooth((phi - 0.65) / 0.35)),
        )
        for a in (AU_A, AL_A, AU_B, AL_B):
            p[:, a] = alpha
        p[:, LEAN] = 0.12 * alpha / 2.3
        p[:, FACE_S] = 0.3 * alpha / 2.3
        p[:, HS] = 1.0 - 0.15 * np.abs(alpha) / 2.3
    elif motion == "march":
        mb = np.maximum(0.0, np.sin(u))
        ma = np.maximum(0.0, -np.sin(u))
        p[:, LLEN_B] = 1.0 - 0.9 * mb
        p[:, LU_B] = 0.06 + 0.25 * mb
        p[:, LLEN_A] = 1.0 - 0.9 * ma
        p[:, LU_A] = -(0.06 + 0.25 * ma)
        p[:, ALEN_A] = 1.0 - 0.5 * mb
        p[:, AL_A] = -0.08 - 1.2 * mb
        p[:, ALEN_B] = 1.0 - 0.5 * ma
        p[:, AL_B] = 0.08 + 1.2 * ma
    else:  # raise
        r = 0.5 - 0.5 * np.cos(u)
        p[:, AU_B] = 0.15 + 2.85 * r
        p[:, AL_B] = 0.08 + 2.97 * r
        p[:, LIFT] = 0.04 * r
        _symmetric(p)
    return p


def _walk_pose(psi: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Side-view walking poses at stride phases ``psi`` moving towards ``direction`` (+-1)."""
    p = np.tile(REST_POSE, (len(psi), 1))
    swing = 0.42 * np.sin(psi)
    p[:, WIDTHF] = 0.3
    p[:, FACE_C] = 0.0
    p[:, FACE_S] = direction
    p[:, LU_A], p[:, LU_B] = swing, -swing
    # The shin trails behind the knee on the forward swing.
    p[:, LL_A] = swing - direction * 0.3 * np.maximum(0.0, np.cos(psi))
    p[:, LL_B] = -swing - direction * 0.3 * np.maximum(0.0, -np.cos(psi))
    p[:, AU_A], p[:, AU_B] = -0.8 * swing, 0.8 * swing
    p[:, AL_A] = p[:, AU_A] + direction * 0.3
    p[:, AL_B] = p[:, AU_B] + direction * 0.3
    return p


def _action_weight(t: np.ndarray, duration: int) -> tuple[np.ndarray, np.ndarray]:
    """Blend weight of an action's pose and the phase code at local frames ``t``."""
    onset = max(1, int(round(ONSET_FRACTION * duration)))
    offset = max(1, int(round(OFFSET_FRACTION * duration)))
    if onset + offset > duration:
        onset = duration // 2
        offset = duration - onset
    w = np.ones(len(t))
    phase = np.full(len(t), PHASE_MIDDLE, np.int8)
    on = t < onset
    w[on] = _smooth((t[on] + 1.0) / (onset + 1.0))
    phase[on] = PHASE_ONSET
    off = t >= duration - offset
    w[off] = _smooth((duration - t[off]) / (offset + 1.0))
    phase[off] = PHASE_OFFSET
    return w, phase


# ------------------------------------------------------------------ skeleton geometry
# Point indices of the skeleton arrays.
(
    SH_A,
    EL_A,
    WR_A,
    SH_B,
    EL_B,
    WR_B,
    HIP_A,
    KN_A,
    AN_A,
    HIP_B,
    KN_B,
    AN_B,
    HEAD,
    NECK,
    T0,
    T1,
    T2,
    T3,
    CHEST,
) = range(19)
NUM_POINTS = 19
# Drawn extent around each point (figure heights): what the true box covers.
_POINT_RADIUS = np.array(
    [
        _ARM_T / 2,
        _ARM_T / 2,
        _HAND_R,
        _ARM_T / 2,
        _ARM_T / 2,
        _HAND_R,
        _LEG_T / 2,
        _LEG_T / 2,
        _FOOT_R,
        _LEG_T / 2,
        _LEG_T / 2,
        _FOOT_R,
        _HEAD_R,
        0.0,
        _TORSO_T / 2,
        _TORSO_T / 2,
        _TORSO_T / 2,
        _TORSO_T / 2,
        0.0,
    ]
)


def _limb(angle: np.ndarray, length: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(angle), -np.cos(angle)], axis=-1) * np.asarray(length)[..., None]


def _skeleton_local(pose: np.ndarray) -> np.ndarray:
    """float64 ``[T, 19, 2]`` points in figure heights, y up, lowest foot's bottom at y = LIFT."""
    n = len(pose)
    w = pose[:, WIDTHF]
    pts = np.zeros((n, NUM_POINTS, 2))
    pts[:, HIP_A, 0] = -_HIP * w
    pts[:, HIP_B, 0] = _HIP * w
    pts[:, KN_A] = pts[:, HIP_A] + _limb(pose[:, LU_A], _THIGH * pose[:, LLEN_A])
    pts[:, AN_A] = pts[:, KN_A] + _limb(pose[:, LL_A], np.full(n, _SHIN))
    pts[:, KN_B] = pts[:, HIP_B] + _limb(pose[:, LU_B], _THIGH * pose[:, LLEN_B])
    pts[:, AN_B] = pts[:, KN_B] + _limb(pose[:, LL_B], np.full(n, _SHIN))
    lowest = np.minimum(pts[:, AN_A, 1], pts[:, AN_B, 1]) - _FOOT_R
    pts[:, :, 1] += (pose[:, LIFT] - lowest)[:, None]  # legs only so far; the rest follows
    hip = (pts[:, HIP_A] + pts[:, HIP_B]) / 2
    axis = np.stack([np.sin(pose[:, LEAN]), np.cos(pose[:, LEAN])], axis=1)
    perp = np.stack([axis[:, 1], -axis[:, 0]], axis=1)
    neck = hip + _TORSO * axis
    pts[:, NECK] = neck
    pts[:, HEAD] = neck + _NECK_HEAD * axis
    top = neck - 0.025 * axis
    pts[:, SH_A] = top - (_SHOULDER * w)[:, None] * perp
    pts[:, SH_B] = top + (_SHOULDER * w)[:, None] * perp
    alen_a, alen_b = pose[:, ALEN_A], pose[:, ALEN_B]
    pts[:, EL_A] = pts[:, SH_A] + _limb(pose[:, AU_A], _UPPER_ARM * alen_a)
    pts[:, WR_A] = pts[:, EL_A] + _limb(pose[:, AL_A], _FOREARM * alen_a)
    pts[:, EL_B] = pts[:, SH_B] + _limb(pose[:, AU_B], _UPPER_ARM * alen_b)
    pts[:, WR_B] = pts[:, EL_B] + _limb(pose[:, AL_B], _FOREARM * alen_b)
    hw_top = (0.11 * w)[:, None] * perp
    hw_bot = (0.075 * w)[:, None] * perp
    pts[:, T0] = top - hw_top
    pts[:, T1] = top + hw_top
    pts[:, T2] = hip + hw_bot
    pts[:, T3] = hip - hw_bot
    pts[:, CHEST] = neck + 0.35 * (hip - neck)
    pts[:, CHEST, 0] += 0.06 * pose[:, FACE_S]
    return pts


def _skeleton_pixels(
    pose: np.ndarray, gx: np.ndarray, gy: np.ndarray, height: np.ndarray, stretch: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel points ``[T, 19, 2]`` and unclipped true boxes ``[T, 4]`` of a figure."""
    local = _skeleton_local(pose)
    scale_x = (pose[:, HS] * stretch)[:, None]
    h = height[:, None]
    px = np.empty_like(local)
    px[:, :, 0] = gx[:, None] + local[:, :, 0] * scale_x * h
    px[:, :, 1] = gy[:, None] - local[:, :, 1] * h
    r = _POINT_RADIUS[None, :] * h
    boxes = np.stack(
        [
            (px[:, :, 0] - r).min(1),
            (px[:, :, 1] - r).min(1),
            (px[:, :, 0] + r).max(1),
            (px[:, :, 1] + r).max(1),
        ],
        axis=1,
    )
    return px, boxes


_REST_LOCAL = _skeleton_local(REST_POSE[None])[0]
_REST_EXTENT = np.array(
    [
        (_REST_LOCAL[:, 0] - _POINT_RADIUS).min(),
        (_REST_LOCAL[:, 1] - _POINT_RADIUS).min(),
        (_REST_LOCAL[:, 0] + _POINT_RADIUS).max(),
        (_REST_LOCAL[:, 1] + _POINT_RADIUS).max(),
    ]
)
#: Height and width of the rest pose's box, in figure heights.
REST_HEIGHT = float(_REST_EXTENT[3] - _REST_EXTENT[1])
REST_WIDTH = float(_REST_EXTENT[2] - _REST_EXTENT[0])


def _clip_boxes(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, WIDTH)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, HEIGHT)
    return out


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = _area(a) + _area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


# ------------------------------------------------------------------ figure plans
@dataclass
class _Action:
    label: int
    motion: str
    start: int
    stop: int  # exclusive
    period: float
    mirror: bool
    amplitude: float = 1.0  # < 1: a fidget (background)


@dataclass
class _Figure:
    """A figure's plan: per-frame ground point, size and mode, plus its actions."""

    n: int
    stretch: float
    colors: dict[str, tuple[float, float, float]]
    gx: np.ndarray = field(init=False)
    gy: np.ndarray = field(init=False)
    height: np.ndarray = field(init=False)
    walking: np.ndarray = field(init=False)
    shown: np.ndarray = field(init=False)  # drawn and tracked (False: hidden by a conflict)
    actions: list[_Action] = field(default_factory=list)
    fidgets: list[_Action] = field(default_factory=list)
    sway: float = 0.0
    # Filled by _finish: poses, pixel points, clipped boxes, visibility, labels, phases.
    pose: np.ndarray | None = None
    points: np.ndarray | None = None
    boxes: np.ndarray | None = None
    visible: np.ndarray | None = None
    acting: np.ndarray | None = None
    labels: np.ndarray | None = None
    phase: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.gx = np.zeros(self.n)
        self.gy = np.zeros(self.n)
        self.height = np.zeros(self.n)
        self.walking = np.zeros(self.n, bool)
        self.shown = np.ones(self.n, bool)


def _colors(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
        px = np.uint8([[[h * 179, s * 255, v * 255]]])
        b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
        return float(b), float(g), float(r)

    skins = [(60, 90, 140), (80, 120, 180), (110, 150, 210), (140, 180, 230), (45, 65, 100)]
    skin = skins[int(rng.integers(len(skins)))]
    return {
        "skin": tuple(float(c) for c in skin),
        "shirt": hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.45, 1.0)),
        "pants": hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.6)),
        "logo": hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0)),
        "hair": hsv(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.9), rng.uniform(0.05, 0.45)),
        "shoe": tuple(float(c) for c in rng.uniform(10, 70, 3)),
    }


def _fill_walk(a: np.ndarray, f0: int, f1: int, start: float, end: float) -> None:
    """Linear motion from ``start`` (before f0) to ``end`` (reached at frame f1 - 1)."""
    if f1 <= f0:
        return
    u = (np.arange(f0, f1) - f0 + 1.0) / (f1 - f0)
    a[f0:f1] = start + (end - start) * u


def _height_at(gy: float, build: float) -> float:
    """Perspective: a figure standing lower in the frame is nearer, hence bigger."""
    return 0.8 * (gy - 60.0) * build


def _timeline(
    rng: np.random.Generator,
    fig: _Figure,
    f0: int,
    f1: int,
    x: float,
    gy: float,
    build: float,
    xlim: tuple[float, float],
    final: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Fill frames [f0, f1) with idle and walking stretches starting at ``(x, gy)``.

    With ``final`` the figure ends exactly there (walking to it); otherwise it
    wanders inside ``xlim``. Returns the position at frame f1 - 1.
    """
    if final is not None:
        gap = f1 - f0
        fx, fgy = final
        dist = abs(fx - x) + abs(fgy - gy)
        if gap <= 0:
            return x, gy
        if dist < 1.0:
            fig.gx[f0:f1], fig.gy[f0:f1] = x, gy
        else:
            speed = 0.018 * _height_at(max(gy, fgy), build)
            walk = int(min(gap, max(4, math.ceil(dist / speed))))
            idle1 = int(rng.integers(0, gap - walk + 1))
            s = f0 + idle1
            fig.gx[f0:s], fig.gy[f0:s] = x, gy
            _fill_walk(fig.gx, s, s + walk, x, fx)
            _fill_walk(fig.gy, s, s + walk, gy, fgy)
            fig.walking[s : s + walk] = True
            fig.gx[s + walk : f1], fig.gy[s + walk : f1] = fx, fgy
        fig.height[f0:f1] = _height_at(fig.gy[f0:f1], build)
        return fx, fgy
    f = f0
    while f < f1:
        if rng.random() < 0.45:
            length = int(min(f1 - f, rng.integers(10, 41)))
            fig.gx[f : f + length], fig.gy[f : f + length] = x, gy
        else:
            length = int(min(f1 - f, rng.integers(15, 61)))
            speed = rng.uniform(0.012, 0.022) * _height_at(gy, build)
            tx = float(np.clip(x + rng.uniform(-1, 1) * speed * length, *xlim))
            tgy = float(np.clip(gy + rng.uniform(-15, 15), 150.0, 232.0))
            _fill_walk(fig.gx, f, f + length, x, tx)
            _fill_walk(fig.gy, f, f + length, gy, tgy)
            fig.walking[f : f + length] = True
            x, gy = tx, tgy
        f += length
    fig.height[f0:f1] = _height_at(fig.gy[f0:f1], build)
    return x, gy


def _add_fidgets(rng: np.random.Generator, fig: _Figure, motions: Sequence[str]) -> None:
    """Short weak gestures in idle stretches: background frames that look like action frames."""
    idle = ~fig.walking
    for a in fig.actions:
        idle[max(0, a.start - 3) : a.stop + 3] = False
    f = 0
    while f < fig.n:
        if not idle[f]:
            f += 1
            continue
        g = f
        while g < fig.n and idle[g]:
            g += 1
        if g - f >= 14 and rng.random() < 0.4:
            length = int(rng.integers(6, 13))
            s = int(rng.integers(f, g - length + 1))
            motion = motions[int(rng.integers(len(motions)))]
            fig.fidgets.append(
                _Action(
                    -1,
                    motion,
                    s,
                    s + length,
                    _PERIODS[motion] * rng.uniform(0.85, 1.15),
                    bool(rng.random() < 0.5),
                    float(rng.uniform(0.25, 0.45)),
                )
            )
        f = g


def _builtin_figure(
    rng: np.random.Generator, n: int, classes: Sequence[str], actor: bool
) -> _Figure:
    """A random figure of a built-in video: an actor (1-2 actions) or a wanderer."""
    build = rng.uniform(0.9, 1.1)
    fig = _Figure(n, float(rng.uniform(0.85, 1.15)), _colors(rng), sway=float(rng.uniform(0, 6.3)))
    gy = float(rng.uniform(150.0, 232.0))
    h = _height_at(gy, build)
    if not actor:
        half = 0.3 * h * fig.stretch
        xlim = (half, WIDTH - half)
        x = float(rng.uniform(*xlim))
        start = 0
        if rng.random() < 0.3:  # walks in from a side at some point
            length = int(rng.integers(25, 50))
            start = int(rng.integers(0, max(1, min(n // 2, n - length))))
            side = rng.random() < 0.5
            out_x = -0.5 * h if side else WIDTH + 0.5 * h
            fig.gx[:start], fig.gy[:start] = out_x, gy
            _fill_walk(fig.gx, start, start + length, out_x, x)
            fig.gy[start : start + length] = gy
            fig.walking[start : start + length] = True
            fig.height[: start + length] = h
            start = min(n, start + length)
        stop = n
        if rng.random() < 0.3 and n - start > 60:  # walks out at the end
            length = int(rng.integers(25, 50))
            stop = n - length
        x, gy = _timeline(rng, fig, start, stop, x, gy, build, xlim)
        if stop < n:
            out_x = -0.6 * h if x < WIDTH / 2 else WIDTH + 0.6 * h
            _fill_walk(fig.gx, stop, n, x, out_x)
            fig.gy[stop:], fig.height[stop:] = gy, _height_at(gy, build)
            fig.walking[stop:] = True
        _add_fidgets(rng, fig, classes)
        return fig
    # An actor: actions of 24-64 frames with at least 8 frames of idling or walking around.
    k = 2 if (n >= 130 and rng.random() < 0.4) else 1
    durations = rng.integers(24, 65, size=k)
    free = n - int(durations.sum()) - 8 * (k + 1)
    if free < 0:
        durations = np.maximum(8, (durations * (n - 8 * (k + 1)) / durations.sum()).astype(int))
        free = max(0, n - int(durations.sum()) - 8 * (k + 1))
    gaps = 8 + np.floor(rng.dirichlet(np.ones(k + 1)) * free).astype(int)
    half = 0.55 * h * fig.stretch
    xlim = (half, WIDTH - half)
    x = float(rng.uniform(*xlim))
    f = 0
    for i in range(k):
        gap_end = f + int(gaps[i])
        tx = float(np.clip(x + rng.uniform(-90, 90), *xlim))
        tgy = float(np.clip(gy + rng.uniform(-20, 20), 150.0, 232.0))
        # Keep the whole action inside the frame at the new depth, too.
        th = _height_at(tgy, build)
        tx = float(np.clip(tx, 0.55 * th * fig.stretch, WIDTH - 0.55 * th * fig.stretch))
        x, gy = _timeline(rng, fig, f, gap_end, x, gy, build, xlim, final=(tx, tgy))
        d = int(durations[i])
        fig.gx[gap_end : gap_end + d], fig.gy[gap_end : gap_end + d] = x, gy
        fig.height[gap_end : gap_end + d] = _height_at(gy, build)
        label = int(rng.integers(len(classes)))
        motion = classes[label]
        fig.actions.append(
            _Action(
                label,
                motion,
                gap_end,
                gap_end + d,
                _PERIODS[motion] * rng.uniform(0.85, 1.15),
                bool(rng.random() < 0.5),
            )
        )
        f = gap_end + d
    h = _height_at(gy, build)
    _timeline(rng, fig, f, n, x, gy, build, (0.3 * h, WIDTH - 0.3 * h))
    _add_fidgets(rng, fig, classes)
    return fig


def _finish(fig: _Figure, num_actions: int, shake: np.ndarray) -> None:
    """Poses, pixel skeleton, clipped true boxes, visibility, labels and phases of a plan."""
    n = fig.n
    t = np.arange(n, dtype=np.float64)
    pose = np.tile(REST_POSE, (n, 1))
    breath = np.sin(2 * np.pi * t / 70.0 + fig.sway)
    pose[:, LEAN] += 0.015 * breath
    pose[:, AU_A] -= 0.03 * breath
    pose[:, AU_B] += 0.03 * breath
    phase = np.full(n, PHASE_IDLE, np.int8)
    # Walking: stride phase from the distance covered, blended in over 4 frames.
    if fig.walking.any():
        dx = np.diff(fig.gx, prepend=fig.gx[0])
        direction = np.sign(dx)
        direction[direction == 0] = 1.0
        # Hold the last direction through the still frames (turning only when moving).
        for i in range(1, n):
            if dx[i] == 0:
                direction[i] = direction[i - 1]
        stride = 0.6 * np.maximum(fig.height, 1.0) * fig.stretch
        psi = np.cumsum(2 * np.pi * np.abs(dx) / stride)
        weight = np.zeros(n)
        w = fig.walking
        edges = np.flatnonzero(np.diff(np.concatenate([[0], w.astype(int), [0]])))
        for s, e in zip(edges[::2], edges[1::2], strict=True):
            pos = np.arange(e - s)
            weight[s:e] = np.minimum(1.0, np.minimum((pos + 1) / 4.0, (e - s - pos) / 4.0))
        walk = _walk_pose(psi, direction)
        pose = pose + weight[:, None] * (walk - pose)
        phase[w] = PHASE_WALK
    labels = np.full(n, num_actions, np.int64)
    acting = np.zeros(n, bool)
    for a in (*fig.fidgets, *fig.actions):
        lt = np.arange(a.stop - a.start, dtype=np.float64)
        target = motion_pose(a.motion, lt, a.period)
        if a.mirror:
            target = _mirror(target)
        w, ph = _action_weight(lt, a.stop - a.start)
        sl = slice(a.start, a.stop)
        pose[sl] = pose[sl] + (a.amplitude * w)[:, None] * (target - pose[sl])
        if a.label >= 0:
            labels[sl] = a.label
            acting[sl] = True
            phase[sl] = ph
        else:
            phase[sl] = PHASE_FIDGET
    points, boxes = _skeleton_pixels(
        pose, fig.gx + shake[:, 0], fig.gy + shake[:, 1], fig.height, fig.stretch
    )
    clipped = _clip_boxes(boxes)
    inside = _area(clipped) >= VISIBLE_FRACTION * np.maximum(_area(boxes), 1e-9)
    inside &= (clipped[:, 2] - clipped[:, 0] >= 2) & (clipped[:, 3] - clipped[:, 1] >= 2)
    fig.pose, fig.points, fig.boxes = pose, points, clipped
    fig.acting, fig.labels, fig.phase = acting, labels, phase
    fig.visible = fig.shown & (inside | acting)


def _conflicts(a: _Figure, b: _Figure, *, both_acting: bool) -> np.ndarray:
    """Frames where one figure acts and the other overlaps it with IoU > CONFLICT_IOU."""
    both = a.visible & b.visible
    one = a.acting | b.acting if both_acting else a.acting ^ b.acting
    return both & one & (_iou(a.boxes, b.boxes) > CONFLICT_IOU)


def _shake(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 ``[n, 2]`` slow sub-pixel camera drift (a handheld or swaying camera)."""
    t = np.arange(n)[:, None]
    amp = rng.uniform(0.0, 0.8)
    f = rng.uniform(0.005, 0.03, size=(2, 2))
    ph = rng.uniform(0, 2 * np.pi, size=(2, 2))
    return amp * (
        0.6 * np.sin(2 * np.pi * f[0] * t + ph[0]) + 0.4 * np.sin(2 * np.pi * f[1] * t + ph[1])
    )


def _builtin_plan(
    rng: np.random.Generator, n: int, classes: Sequence[str], num_actions: int
) -> tuple[list[_Figure], np.ndarray]:
    shake = _shake(rng, n)
    figures: list[_Figure] = []
    wanted = int(rng.integers(2, 5))
    for i in range(wanted):
        actor = i == 0 or rng.random() < 0.5
        for _ in range(40):
            fig = _builtin_figure(rng, n, classes, actor)
            _finish(fig, num_actions, shake)
            if not any(_conflicts(fig, o, both_acting=True).any() for o in figures):
                figures.append(fig)
                break
    return figures, shake


# ------------------------------------------------------------------ UCF101-24 timing
@dataclass
class _UcfTube:
    sf: int
    ef: int
    label: int  # UCF class index
    gx: np.ndarray
    gy: np.ndarray
    height: np.ndarray
    stretch: float


def _ucf_tubes(entry: dict) -> list[_UcfTube]:
    out = []
    for a in entry["annotations"]:
        sf = int(a["sf"])
        # Boxes are stored as uint8/uint16: cast before adding (x + w overflows otherwise).
        xywh = np.asarray(a["boxes"], dtype=np.float64).reshape(-1, 4)[: int(a["ef"]) - sf]
        if xywh.shape[0] == 0:
            continue
        w = np.clip(xywh[:, 2], 4.0, None)
        h = np.clip(xywh[:, 3], 4.0, None)
        gx = np.clip(xywh[:, 0] + w / 2, 0.0, WIDTH)
        gy = np.clip(xywh[:, 1] + h, 12.0, HEIGHT + 4.0)
        height = np.clip(h / REST_HEIGHT, 20.0, 225.0)
        ratio = float(np.median(w / h)) / (REST_WIDTH / REST_HEIGHT)
        out.append(
            _UcfTube(
                sf, sf + len(xywh), int(a["label"]), gx, gy, height, float(np.clip(ratio, 0.7, 1.8))
            )
        )
    return sorted(out, key=lambda t: (t.sf, t.ef))


def _ucf_plan(
    rng: np.random.Generator,
    entry: dict,
    n: int,
    ucf_classes: Sequence[str],
    classes: Sequence[str],
) -> tuple[list[_Figure], np.ndarray]:
    shake = _shake(rng, n)
    tubes = _ucf_tubes(entry)
    # Chain tubes following one another in time and place into one figure.
    chains: list[list[_UcfTube]] = []
    for tube in tubes:
        best, best_d = None, math.inf
        for chain in chains:
            last = chain[-1]
            gap = tube.sf - last.ef
            d = abs(tube.gx[0] - last.gx[-1]) + abs(tube.gy[0] - last.gy[-1])
            if gap >= 0 and d <= 2.5 * gap + 0.5 * last.height[-1] and d < best_d:
                best, best_d = chain, d
        if best is None:
            chains.append([tube])
        else:
            best.append(tube)
    figures: list[_Figure] = []
    for chain in chains:
        fig = _Figure(n, chain[0].stretch, _colors(rng), sway=float(rng.uniform(0, 6.3)))
        for tube in chain:
            sl = slice(tube.sf, tube.ef)
            fig.gx[sl], fig.gy[sl], fig.height[sl] = tube.gx, tube.gy, tube.height
            motion = UCF_MOTIONS[ucf_classes[tube.label]]
            fig.actions.append(
                _Action(
                    classes.index(motion),
                    motion,
                    tube.sf,
                    tube.ef,
                    _PERIODS[motion] * rng.uniform(0.85, 1.15),
                    bool(rng.random() < 0.5),
                )
            )
        # Between chained actions: idle, walk to the next start, idle.
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            _ucf_walk(rng, fig, a.ef, b.sf, a, b)
        _ucf_end(rng, fig, chain[0], before=True)
        _ucf_end(rng, fig, chain[-1], before=False)
        figures.append(fig)
    for fig in figures:
        _add_fidgets(rng, fig, classes)
        _finish(fig, len(classes), shake)
    # A non-acting stretch overlapping someone's action is not drawn; before the first
    # action (after the last) the figure appears (disappears) there instead.
    for fig in figures:
        hidden = np.zeros(n, bool)
        for other in figures:
            if other is not fig:
                hidden |= (
                    fig.visible
                    & other.acting
                    & ~fig.acting
                    & (_iou(fig.boxes, other.boxes) > CONFLICT_IOU)
                )
        if hidden.any():
            first, last = fig.actions[0].start, fig.actions[-1].stop
            idx = np.flatnonzero(hidden)
            pre = idx[idx < first]
            post = idx[idx >= last]
            if pre.size:
                hidden[: pre.max() + 1] = True
            if post.size:
                hidden[post.min() :] = True
            fig.shown &= ~hidden
            fig.visible &= ~hidden
    for _ in range(int(rng.poisson(0.8))):
        for _ in range(20):
            d = _builtin_figure(rng, n, classes, actor=False)
            _finish(d, len(classes), shake)
            if not any(_conflicts(d, o, both_acting=False).any() for o in figures):
                figures.append(d)
                break
    return figures, shake


def _ucf_walk(
    rng: np.random.Generator, fig: _Figure, f0: int, f1: int, a: _UcfTube, b: _UcfTube
) -> None:
    gap = f1 - f0
    if gap <= 0:  # back-to-back actions
        return
    walk = max(1, int(gap * rng.uniform(0.4, 0.9)))
    s = f0 + int(rng.integers(0, gap - walk + 1))
    for arr, end_a, start_b in (
        (fig.gx, a.gx[-1], b.gx[0]),
        (fig.gy, a.gy[-1], b.gy[0]),
        (fig.height, a.height[-1], b.height[0]),
    ):
        arr[f0:s] = end_a
        _fill_walk(arr, s, s + walk, end_a, start_b)
        arr[s + walk : f1] = start_b
    fig.walking[s : s + walk] = abs(b.gx[0] - a.gx[-1]) > 2.0


def _ucf_end(rng: np.random.Generator, fig: _Figure, tube: _UcfTube, *, before: bool) -> None:
    """Idle at the tube's first (last) box, with a walk from (to) somewhere near before (after)."""
    if before:
        f0, f1 = 0, tube.sf
        x, gy, h = tube.gx[0], tube.gy[0], tube.height[0]
    else:
        f0, f1 = tube.ef, fig.n
        x, gy, h = tube.gx[-1], tube.gy[-1], tube.height[-1]
    length = f1 - f0
    if length <= 0:
        return
    fig.gy[f0:f1], fig.height[f0:f1] = gy, h
    fig.gx[f0:f1] = x
    if length < 12 or rng.random() < 0.4:
        return
    walk = int(min(length - 4, rng.integers(12, 50)))
    speed = rng.uniform(0.012, 0.022) * h
    half = 0.3 * h * fig.stretch
    far = float(np.clip(x + rng.choice([-1.0, 1.0]) * speed * walk, half, WIDTH - half))
    idle = int(rng.integers(2, length - walk + 1))
    if before:  # idle far away, walk to the action's place, idle there
        s = f1 - idle - walk
        fig.gx[f0:s] = far
        _fill_walk(fig.gx, s, s + walk, far, x)
    else:
        s = f0 + idle
        _fill_walk(fig.gx, s, s + walk, x, far)
        fig.gx[s + walk : f1] = far
    fig.walking[s : s + walk] = abs(far - x) > 2.0


# ------------------------------------------------------------------ pixels
def _background(rng: np.random.Generator, margin: int) -> np.ndarray:
    """uint8 ``[H + 2m, W + 2m, 3]`` static scene: wall, floor, furniture, texture."""
    h2, w2 = HEIGHT + 2 * margin, WIDTH + 2 * margin
    img = np.empty((h2, w2, 3), np.float32)
    horizon = int(rng.uniform(0.3, 0.5) * HEIGHT) + margin
    img[:horizon] = rng.uniform(70, 190, 3)
    floor = rng.uniform(50, 150, 3)
    shade = np.linspace(1.0, 0.75, h2 - horizon)[:, None, None]
    img[horizon:] = floor * shade
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, w2)), int(rng.integers(0, horizon + 40))
        x1 = x0 + int(rng.integers(15, 90))
        y1 = y0 + int(rng.integers(15, 90))
        color = tuple(float(c) for c in rng.uniform(30, 230, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), color, -1 if rng.random() < 0.7 else 3)
    for _ in range(int(rng.integers(0, 5))):  # floor seams
        y = int(rng.integers(horizon, h2))
        cv2.line(img, (0, y), (w2, y + int(rng.integers(-20, 21))), tuple(floor * 0.7), 1)
    # Blotches: mostly brightness, a little colour (a real room, not a rainbow).
    low = cv2.resize(
        rng.standard_normal((5, 7, 4)).astype(np.float32), (w2, h2), interpolation=cv2.INTER_CUBIC
    )
    low = 0.35 * low[:, :, :3] + low[:, :, 3:]
    mid = cv2.resize(
        rng.standard_normal((h2 // 6, w2 // 6)).astype(np.float32),
        (w2, h2),
        interpolation=cv2.INTER_LINEAR,
    )
    fine = cv2.GaussianBlur(rng.standard_normal((h2, w2)).astype(np.float32), (0, 0), 0.7)
    img += 22.0 * low + (12.0 * mid + 14.0 * fine)[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _pt(p: np.ndarray) -> tuple[int, int]:
    # Fixed point with 4 fractional bits: sub-pixel positions, so motion is smooth.
    return int(round(float(p[0]) * 16)), int(round(float(p[1]) * 16))


def _draw_figure(img: np.ndarray, fig: _Figure, f: int) -> None:
    p = fig.points[f]
    pose = fig.pose[f]
    h = float(fig.height[f])
    c = fig.colors
    aa, sh = cv2.LINE_AA, 4
    ta = max(2, int(round(_ARM_T * h)))
    tl = max(2, int(round(_LEG_T * h)))
    for hip, knee, ankle in ((HIP_A, KN_A, AN_A), (HIP_B, KN_B, AN_B)):
        cv2.line(img, _pt(p[hip]), _pt(p[knee]), c["pants"], tl, aa, sh)
        cv2.line(img, _pt(p[knee]), _pt(p[ankle]), c["pants"], tl, aa, sh)
        cv2.circle(img, _pt(p[ankle]), max(1, int(round(_FOOT_R * h * 16))), c["shoe"], -1, aa, sh)
    torso = np.array([_pt(p[i]) for i in (T0, T1, T2, T3)], np.int32)
    cv2.fillConvexPoly(img, torso, c["shirt"], aa, sh)
    cv2.polylines(img, [torso], True, c["shirt"], max(1, int(round(_TORSO_T * h))), aa, sh)
    if pose[FACE_C] > 0.15:
        cv2.circle(img, _pt(p[CHEST]), max(1, int(round(0.03 * h * 16))), c["logo"], -1, aa, sh)
    for shoulder, elbow, wrist in ((SH_A, EL_A, WR_A), (SH_B, EL_B, WR_B)):
        cv2.line(img, _pt(p[shoulder]), _pt(p[elbow]), c["shirt"], ta, aa, sh)
        cv2.line(img, _pt(p[elbow]), _pt(p[wrist]), c["skin"], ta, aa, sh)
        cv2.circle(img, _pt(p[wrist]), max(1, int(round(_HAND_R * h * 16))), c["skin"], -1, aa, sh)
    r = _HEAD_R * h
    head = p[HEAD]
    cv2.circle(img, _pt(head - [0, 0.012 * h]), int(round(r * 1.04 * 16)), c["hair"], -1, aa, sh)
    if pose[FACE_C] > -0.1:
        cv2.circle(img, _pt(head + [0, 0.01 * h]), int(round(r * 0.93 * 16)), c["skin"], -1, aa, sh)
        off = float(pose[FACE_S]) * 0.45 * r * float(np.sign(pose[HS]) or 1.0)
        spread = 0.3 * r * max(0.0, float(pose[FACE_C]))
        for side in (-1.0, 1.0):
            eye = head + [off + side * spread, 0.05 * r]
            cv2.circle(img, _pt(eye), max(16, int(round(0.12 * r * 16))), (25, 25, 25), -1, aa, sh)


_NORMAL = NormalDist()


class _Camera:
    """Per-frame camera effects on a drawn frame: drift of the background, blur, flicker, noise."""

    MARGIN = 4

    def __init__(self, rng: np.random.Generator, n: int, shake: np.ndarray) -> None:
        self.rng = rng
        self.background = _background(rng, self.MARGIN)
        self.shake = shake
        sigma = rng.uniform(2.0, 4.0)
        # Gaussian noise from random bytes through a quantile table: ~10x cheaper than
        # drawing normals, and exact in distribution up to the 256 levels.
        z = np.array([_NORMAL.inv_cdf((i + 0.5) / 256.0) for i in range(256)])
        self.noise_lut = np.clip(np.rint(128.0 + sigma * z), 0, 255).astype(np.uint8)
        t = np.arange(n)
        self.gain = 1.0 + 0.02 * np.sin(2 * np.pi * t / rng.uniform(40, 120) + rng.uniform(0, 6.3))
        self.gain += rng.normal(0.0, 0.004, size=n)

    def scene(self, f: int) -> np.ndarray:
        m = self.MARGIN
        sx, sy = self.shake[f]
        warp = np.float32([[1, 0, sx - m], [0, 1, sy - m]])
        return cv2.warpAffine(
            self.background,
            warp,
            (WIDTH, HEIGHT),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )

    def finish(self, img: np.ndarray, f: int) -> np.ndarray:
        img = cv2.GaussianBlur(img, (3, 3), 0.6)
        raw = np.frombuffer(self.rng.bytes(img.size), np.uint8).reshape(img.shape)
        noise = cv2.LUT(raw, self.noise_lut)
        return cv2.addWeighted(img, float(self.gain[f]), noise, 1.0, -128.0)


# ------------------------------------------------------------------ tracks
def _tracker_rows(
    figures: Sequence[_Figure], jitter: float, id_switches: float, rng_jitter, rng_switch
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """MOT rows (frames, ids, boxes, figure index), sorted by (frame, id), and the switch count."""
    n = figures[0].n if figures else 0
    k = len(figures)
    events: dict[int, list[tuple[str, int, int]]] = {}
    switches = 0
    if id_switches > 0:
        for i in range(k):
            for j in range(i + 1, k):
                a, b = figures[i], figures[j]
                close = a.visible & b.visible & (_iou(a.boxes, b.boxes) > SWITCH_IOU)
                edges = np.flatnonzero(np.diff(np.concatenate([[0], close.astype(int), [0]])))
                for end in edges[1::2]:
                    if rng_switch.random() < id_switches and end < n:
                        events.setdefault(int(end), []).append(("swap", i, j))
        for i, fig in enumerate(figures):
            frames = np.flatnonzero(fig.visible)
            if len(frames) > 1 and rng_switch.random() < id_switches / 2:
                f = int(frames[rng_switch.integers(1, len(frames))])
                events.setdefault(f, []).append(("new", i, -1))
    boxes = [f.boxes.copy() for f in figures]
    if jitter > 0:
        for b in boxes:
            e = np.empty((n, 4))
            z = rng_jitter.standard_normal((n, 4))
            e[0] = z[0]
            s = math.sqrt(1 - JITTER_RHO**2)
            for f in range(1, n):
                e[f] = JITTER_RHO * e[f - 1] + s * z[f]
            w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            cx = (b[:, 0] + b[:, 2]) / 2 + jitter * w * e[:, 0]
            cy = (b[:, 1] + b[:, 3]) / 2 + jitter * h * e[:, 1]
            w2 = w * np.exp(jitter * e[:, 2]) / 2
            h2 = h * np.exp(jitter * e[:, 3]) / 2
            jb = np.stack([cx - w2, cy - h2, cx + w2, cy + h2], axis=1)
            jb = _clip_boxes(jb)
            # Keep at least 2 px inside the frame (a tracker reports visible people).
            jb[:, 0] = np.minimum(jb[:, 0], WIDTH - 2.0)
            jb[:, 1] = np.minimum(jb[:, 1], HEIGHT - 2.0)
            jb[:, 2] = np.maximum(jb[:, 2], jb[:, 0] + 2.0)
            jb[:, 3] = np.maximum(jb[:, 3], jb[:, 1] + 2.0)
            b[:] = jb
    cur = list(range(1, k + 1))
    next_id = k + 1
    rows_f, rows_id, rows_b, rows_fig = [], [], [], []
    for f in range(n):
        for kind, i, j in events.get(f, ()):
            if kind == "swap":
                cur[i], cur[j] = cur[j], cur[i]
            else:
                cur[i] = next_id
                next_id += 1
            switches += 1
        for i, fig in enumerate(figures):
            if fig.visible[f]:
                rows_f.append(f)
                rows_id.append(cur[i])
                rows_b.append(boxes[i][f])
                rows_fig.append(i)
    frames = np.asarray(rows_f, np.int64)
    ids = np.asarray(rows_id, np.int64)
    order = np.lexsort((ids, frames))
    out_boxes = np.asarray(rows_b, np.float64).reshape(-1, 4)[order]
    # What the file holds (2 decimals): the truth compares against the same numbers.
    out_boxes = np.round(out_boxes, 2)
    return frames[order], ids[order], out_boxes, np.asarray(rows_fig, np.int64)[order], switches


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class FigureTruth:
    """One figure's rendered ground truth over its visible life.

    Attributes
    ----------
    frames : np.ndarray
        int64 ``[T]`` frames where the figure is visible (in the tracks).
    boxes : np.ndarray
        float32 ``[T, 4]`` true boxes ``x1 y1 x2 y2`` (clipped to the frame).
    labels : np.ndarray
        int64 ``[T]``: the class on action frames, ``num_actions`` (background) otherwise.
    phase : np.ndarray
        int8 ``[T]``: :data:`PHASE_NAMES` index (idle, walk, onset, middle, offset, fidget).
    """

    frames: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    phase: np.ndarray


@dataclass(frozen=True)
class VideoTruth:
    """What one rendered video holds, as written.

    Attributes
    ----------
    name : str
        Video name (the tubes' ``video``; the files are ``videos/<name>.mp4`` and
        ``tracks/<name>.txt``).
    num_frames : int
    split : str
        ``"train"`` or ``"test"`` (ucf101-24: the UCF101-24 split-1 membership).
    tubes : list[Tube]
        Ground-truth tubes.
    figures : list[FigureTruth]
    mot_frames, mot_ids : np.ndarray
        int64 ``[R]`` the MOT rows (0-based frames), sorted by (frame, id).
    mot_boxes : np.ndarray
        float64 ``[R, 4]`` the rows' boxes as written (jitter included).
    mot_figures : np.ndarray
        int64 ``[R]`` which figure each row is (index into ``figures``).
    mot_labels : np.ndarray
        int64 ``[R]`` the rendered label of each row (its figure's label at that frame).
    id_switches : int
        Number of id changes the tracker model made.
    ucf_classes : list[str]
        ucf101-24: the UCF101-24 class names of the video's tubes (else empty).
    """

    name: str
    num_frames: int
    split: str
    tubes: list[Tube]
    figures: list[FigureTruth]
    mot_frames: np.ndarray
    mot_ids: np.ndarray
    mot_boxes: np.ndarray
    mot_figures: np.ndarray
    mot_labels: np.ndarray
    id_switches: int
    ucf_classes: list[str]


@dataclass(frozen=True)
class RenderedSet:
    """A written rendered set.

    Attributes
    ----------
    root : Path
        The output folder.
    classes : list[str]
        Class names (motion patterns), the tubes' labels index them.
    videos : list[VideoTruth]
    manifest : dict
        The content of ``manifest.json``.
    """

    root: Path
    classes: list[str]
    videos: list[VideoTruth]
    manifest: dict


def _video_files(root: Path, name: str) -> tuple[Path, Path]:
    return root / "videos" / f"{name}.mp4", root / "tracks" / f"{name}.txt"


def _write_video(path: Path, figures: Sequence[_Figure], camera: _Camera, n: int) -> None:
    """Draw and encode the frames, atomically (a finished file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    try:
        # One encoder thread: x264's output depends on its thread count, and the
        # files must not depend on the machine's number of cores.
        with VideoWriter(tmp, FPS, WIDTH, HEIGHT, threads=1) as writer:
            for f in range(n):
                img = camera.scene(f)
                for fig in sorted((g for g in figures if g.shown[f]), key=lambda g: g.gy[f]):
                    _draw_figure(img, fig, f)
                writer.write(camera.finish(img, f))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _render_one(
    root: Path,
    name: str,
    n: int,
    split: str,
    key: int,
    seed: int,
    plan: Callable[[np.random.Generator], tuple[list[_Figure], np.ndarray]],
    num_actions: int,
    jitter: float,
    id_switches: float,
    ucf_classes: list[str],
) -> VideoTruth:
    plan_ss, pixel_ss, jitter_ss, switch_ss = np.random.SeedSequence([seed, key]).spawn(4)
    figures, shake = plan(np.random.default_rng(plan_ss))
    camera = _Camera(np.random.default_rng(pixel_ss), n, shake)
    video_path, tracks_path = _video_files(root, name)
    _write_video(video_path, figures, camera, n)
    tubes = []
    for fig in figures:
        for a in fig.actions:
            tubes.append(
                Tube(
                    name,
                    a.label,
                    np.arange(a.start, a.stop, dtype=np.int64),
                    fig.boxes[a.start : a.stop].astype(np.float32),
                )
            )
    tubes.sort(key=lambda t: (int(t.frames[0]), t.label))
    frames, ids, boxes, fig_idx, switches = _tracker_rows(
        figures,
        jitter,
        id_switches,
        np.random.default_rng(jitter_ss),
        np.random.default_rng(switch_ss),
    )
    tracks_path.parent.mkdir(parents=True, exist_ok=True)
    write_mot(tracks_path, frames, ids, boxes)
    truths = []
    for fig in figures:
        v = np.flatnonzero(fig.visible)
        truths.append(
            FigureTruth(
                v.astype(np.int64), fig.boxes[v].astype(np.float32), fig.labels[v], fig.phase[v]
            )
        )
    labels = np.array(
        [figures[i].labels[f] for f, i in zip(frames, fig_idx, strict=True)], np.int64
    )
    return VideoTruth(
        name, n, split, tubes, truths, frames, ids, boxes, fig_idx, labels, switches, ucf_classes
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_set(
    out: str | os.PathLike,
    *,
    videos: int = 80,
    timing: str = "builtin",
    ucf_root: str | os.PathLike | None = None,
    actions: Sequence[str] | None = None,
    frames: tuple[int, int] = (90, 150),
    seed: int = 0,
    jitter: float = 0.0,
    id_switches: float = 0.0,
    test_fraction: float = 0.25,
    names: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> RenderedSet:
    """Render and write a set of action videos with their tracks and tubes (see module docstring).

    Parameters
    ----------
    out : path-like
        Output folder: created; must be empty or absent.
    videos : int
        Number of videos (ucf101-24: a seeded random subset of the annotated videos;
        all of them when ``videos`` is at least their number).
    timing : str
        ``"builtin"`` or ``"ucf101-24"``.
    ucf_root : path-like, optional
        ucf101-24: folder of ``pyannot_with_class_names.pkl`` (default
        :func:`reclnet.train.synthetic.default_ucf_root`).
    actions : sequence of str, optional
        builtin: the classes, motion patterns of :data:`MOTIONS` (default
        :data:`DEFAULT_ACTIONS`). Not allowed with ucf101-24 (its classes are fixed).
    frames : (int, int)
        builtin: range of video lengths (inclusive), at least 40 frames.
    seed : int
        Everything is drawn from it.
    jitter : float
        Tracker box noise std, in box sizes (0: exact boxes).
    id_switches : float
        Probability in [0, 1] of an id switch per overlap of two figures (0: none).
    test_fraction : float
        builtin: share of videos (the last ones) tagged ``"test"``.
    names : sequence of str, optional
        ucf101-24: render exactly these annotated videos (instead of a random subset).
    progress : callable, optional
        Called as ``progress(done, total, name)`` after each video.

    Returns
    -------
    RenderedSet

    Raises
    ------
    ValueError
        A bad argument (named in the message), or ``out`` is not empty.
    FileNotFoundError, reclnet.runtime.offline.safe_pickle.SafePickleError
        ucf101-24: missing or refused annotations.
    """
    if timing not in ("builtin", "ucf101-24"):
        raise ValueError(f"timing must be 'builtin' or 'ucf101-24', got {timing!r}")
    if int(videos) < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    if not (math.isfinite(jitter) and 0.0 <= jitter <= 1.0):
        raise ValueError(f"jitter must be in [0, 1] (box sizes), got {jitter}")
    if not (math.isfinite(id_switches) and 0.0 <= id_switches <= 1.0):
        raise ValueError(f"id_switches must be a probability in [0, 1], got {id_switches}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    lo, hi = (int(v) for v in frames)
    if lo < 40 or hi < lo:
        raise ValueError(f"frames must be a range (min, max) with 40 <= min <= max, got {frames}")
    if names is not None and timing != "ucf101-24":
        raise ValueError("names apply to ucf101-24 timing only")
    if timing == "ucf101-24":
        if actions is not None:
            raise ValueError(
                "actions cannot be chosen with ucf101-24 timing (its classes are fixed)"
            )
        classes = [m for m in MOTIONS if m in set(UCF_MOTIONS.values())]
    else:
        classes = list(DEFAULT_ACTIONS if actions is None else actions)
        unknown = [a for a in classes if a not in MOTIONS]
        if unknown or not classes:
            raise ValueError(
                f"unknown action(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"choose from {', '.join(MOTIONS)}"
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"actions repeat a name: {', '.join(classes)}")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"output folder {root} is not empty (or not a folder): choose a new one")
    num_actions = len(classes)
    jobs: list[tuple[str, int, str, int, Callable, list[str]]] = []
    timing_source: dict = {"kind": timing}
    if timing == "builtin":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB17]))
        lengths = rng.integers(lo, hi + 1, size=int(videos))
        n_test = int(round(test_fraction * int(videos)))
        for v in range(int(videos)):
            n = int(lengths[v])
            jobs.append(
                (
                    f"video_{v:05d}",
                    n,
                    "test" if v >= int(videos) - n_test else "train",
                    v,
                    lambda r, n=n: _builtin_plan(r, n, classes, num_actions),
                    [],
                )
            )
    else:
        from reclnet.train.synthetic import _load_ucf, default_ucf_root

        pkl_root = Path(ucf_root) if ucf_root is not None else default_ucf_root()
        data, test_names = _load_ucf(pkl_root)
        ucf_classes = [str(c) for c in data["classes"]]
        missing = [c for c in ucf_classes if c not in UCF_MOTIONS]
        if missing:
            raise ValueError(f"{pkl_root}: unknown UCF101-24 classes {missing}")
        db = data["db"]
        train = set(data["trainvideos"])
        annotated = sorted(k for k, e in db.items() if e.get("annotations"))
        if names is not None:
            unknown = [k for k in names if k not in db or not db[k].get("annotations")]
            if unknown or not names:
                raise ValueError(
                    f"{pkl_root}: no annotated video named {', '.join(map(repr, unknown))}"
                    if unknown
                    else "names: empty list"
                )
            names = list(dict.fromkeys(names))
        elif int(videos) < len(annotated):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0CF]))
            names = sorted(rng.choice(annotated, size=int(videos), replace=False).tolist())
        else:
            names = annotated
        timing_source.update(
            annotations="pyannot_with_class_names.pkl",
            sha256=_sha256(pkl_root / "pyannot_with_class_names.pkl"),
            ucf_motions=UCF_MOTIONS,
        )
        for name in names:
            entry = db[name]
            n = max(int(entry["numf"]), max(int(a["ef"]) for a in entry["annotations"]))
            split = "train" if name in train else "test" if name in test_names else "other"
            tube_classes = [ucf_classes[int(a["label"])] for a in entry["annotations"]]
            jobs.append(
                (
                    name,
                    n,
                    split,
                    zlib.crc32(name.encode("utf-8")),
                    lambda r, e=entry, n=n: _ucf_plan(r, e, n, ucf_classes, classes),
                    tube_classes,
                )
            )
    root.mkdir(parents=True, exist_ok=True)
    results: list[VideoTruth] = []
    for done, (name, n, split, key, plan, tube_classes) in enumerate(jobs, start=1):
        results.append(
            _render_one(
                root,
                name,
                n,
                split,
                key,
                int(seed),
                plan,
                num_actions,
                jitter,
                id_switches,
                tube_classes,
            )
        )
        if progress is not None:
            progress(done, len(jobs), name)
    write_tubes(root / "tubes.jsonl", [t for v in results for t in v.tubes])
    manifest = {
        "format": MANIFEST_FORMAT,
        "classes": classes,
        "fps": FPS,
        "size": [WIDTH, HEIGHT],
        "seed": int(seed),
        "timing": timing_source,
        "jitter": float(jitter),
        "id_switches": float(id_switches),
        "tubes": "tubes.jsonl",
        "videos": [
            {
                "name": v.name,
                "video": f"videos/{v.name}.mp4",
                "tracks": f"tracks/{v.name}.txt",
                "frames": v.num_frames,
                "split": v.split,
                "figures": len(v.figures),
                "tubes": len(v.tubes),
                "id_switches": v.id_switches,
                **({"ucf_classes": v.ucf_classes} if timing == "ucf101-24" else {}),
            }
            for v in results
        ],
    }
    tmp = root / "manifest.json.partial"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    # Last and atomic: a folder with a manifest is a finished set.
    os.replace(tmp, root / "manifest.json")
    return RenderedSet(root, classes, results, manifest)
