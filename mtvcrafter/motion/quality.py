"""Does a motion look like a person? Plausibility checks run on every motion a user loads. numpy only.

A motion can be read without error and still be wrong: a mocap file read with the wrong up axis or unit, a bone
map that swaps left and right, a foot mapped to the wrong bone. :func:`check_quality` measures what gives such
mistakes away and says, in plain words, what to try. Warnings, never refusals: a handstand is upside down, a
dancer may stand on one leg.

The checks, on ``(T, 24, 3)`` joints in millimetres, camera space (x right, y down, z forward):

- **stature**: the ankle-to-head chain of bone lengths (:func:`~mtvcrafter.motion.units.skeleton_size`:
  shin, thigh, hip to pelvis, the spine, neck and head, median over frames, so any pose measures the same)
  scaled by :data:`STATURE_PER_CHAIN` so that the neutral SMPL body measures its 1.70 m (the scale adds the
  sole below the ankle and the top of the head above the head joint). Plausible: :data:`PLAUSIBLE_STATURE_M`.
- **upright**: per frame the angle between the body's up (pelvis → neck) and the image's up (−y). The camera
  may be tilted, so the bound is generous: a frame is upside down beyond :data:`UPSIDE_DOWN_DEG`, and the body
  lies sideways when the median angle is beyond :data:`UPRIGHT_DEG`.
- **left/right**: per frame whether the legs' left (right hip → left hip) and the arms' (right shoulder →
  left shoulder) point the same way (positive dot product): a spine does not turn by 90°.
- **handedness**: per frame whether the toes (ankle → ball of the foot, both feet) point forward, forward
  being ``cross(left, up)`` with the legs' left and the body's up; a mirrored skeleton has them point back.
  With left/right inconsistent this tells which half is swapped: the legs when they are mirrored, else the arms.
- **feet**: heights along the clip's up (the mean body up); each foot's ground is the 5th percentile of its
  lowest point (ankle or ball). A foot whose ground lies more than :data:`FLOATING_LEGS` leg lengths above the
  other's never comes down to the ground the other stands on; and another joint (a hand, the head) should not
  be the body's lowest point, by :data:`LOWEST_TOLERANCE_LEGS` leg lengths, in most frames.
- **unit**: the median bone length against :data:`HUMAN_BONE_MM` (a person in millimetres).

Where the reader chose an up axis or a unit (its notes say "axes: Y up …", "unit: cm …": BVH, SMPL parameters,
joint positions), a warning names the ``--up`` or ``--unit`` to try; otherwise what camera-space millimetres need.

Frames whose geometry cannot decide a check (the toes straight down, the shoulders along the body's up) are
left out of its share. Long clips are checked on at most :data:`MAX_FRAMES_CHECKED` evenly spaced frames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MotionError
from .rotations import vector_norm
from .skeleton import JOINT_INDEX, NEUTRAL_REST_JOINTS_M, bone_lengths
from .units import TYPICAL_BONE_MM, UNITS, millimetre_hint, skeleton_size, unit_scale

if TYPE_CHECKING:
    from .motion import Motion

#: The neutral SMPL body's stature, metres.
NEUTRAL_STATURE_M = 1.70
#: Stature per length of the ankle-to-head chain (1.13: the neutral body's chain is 1.51 m).
STATURE_PER_CHAIN = NEUTRAL_STATURE_M * 1000.0 / skeleton_size(NEUTRAL_REST_JOINTS_M * 1000.0)
#: A person's stature, metres (a child of four to the tallest adults).
PLAUSIBLE_STATURE_M = (1.0, 2.3)
#: A person's median bone length in millimetres lies within a factor of 3 of a typical adult's.
HUMAN_BONE_MM = (TYPICAL_BONE_MM / 3.0, TYPICAL_BONE_MM * 3.0)
#: Median angle between the body's up and the image's up beyond which the body lies sideways, degrees.
UPRIGHT_DEG = 60.0
#: Angle beyond which a frame's body is upside down, degrees (30° below the image's horizontal).
UPSIDE_DOWN_DEG = 120.0
#: Share of the frames above which a problem seen in some frames only is warned about.
WARN_SHARE = 0.1
#: Smallest |cosine| that decides a frame's left/right and handedness (about 12° off the undecided plane).
DECIDING_COSINE = 0.2
#: A foot whose ground lies this many leg lengths (hip-knee-ankle) above the other's floats.
FLOATING_LEGS = 0.2
#: Another joint counts as lower than the feet when it is this many leg lengths below the lowest foot joint.
LOWEST_TOLERANCE_LEGS = 0.1
#: Percentile of a foot's height taken as its ground.
GROUND_PERCENTILE = 5.0
#: Longest run of frames checked; longer clips are checked on evenly spaced frames.
MAX_FRAMES_CHECKED = 20_000

_J = JOINT_INDEX
_FEET = {"left": (_J["left_ankle"], _J["left_foot"]), "right": (_J["right_ankle"], _J["right_foot"])}
_FOOT_JOINTS = [j for pair in _FEET.values() for j in pair]
_OTHER_JOINTS = [j for j in range(len(JOINT_INDEX)) if j not in _FOOT_JOINTS]
_LEGS = ((_J["left_hip"], _J["left_knee"], _J["left_ankle"]), (_J["right_hip"], _J["right_knee"], _J["right_ankle"]))


@dataclass(frozen=True)
class QualityCheck:
    """One check of :func:`check_quality`.

    Attributes:
        name: ``"stature"``, ``"upright"``, ``"left_right"``, ``"handedness"``, ``"feet"`` or ``"unit"``.
        value: the measure (its unit in ``unit``).
        unit: ``"mm"``, ``"deg"`` or ``"share of frames"``.
        verdict: the verdict in words, as the summary shows it ("upright", "left foot floating").
        ok: whether the verdict looks right.
        details: further measures by name.
    """

    name: str
    value: float
    unit: str
    verdict: str
    ok: bool
    details: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityReport:
    """What :func:`check_quality` found: each check with its value and verdict, and warnings in plain words."""

    stature: QualityCheck
    upright: QualityCheck
    left_right: QualityCheck
    handedness: QualityCheck
    feet: QualityCheck
    unit: QualityCheck
    warnings: list[str]
    frames_checked: int

    @property
    def checks(self) -> tuple[QualityCheck, ...]:
        return (self.stature, self.upright, self.left_right, self.handedness, self.feet, self.unit)

    @property
    def ok(self) -> bool:
        """Whether every check looks right."""
        return all(check.ok for check in self.checks)

    @property
    def stature_m(self) -> float:
        return self.stature.value / 1000.0

    def summary(self) -> str:
        """One line: "stature 1.71 m, upright, left/right consistent, not mirrored, feet on the ground"."""
        parts = [f"stature {self.stature_m:.2f} m" + ("" if self.stature.ok else f" ({self.stature.verdict})")]
        parts.append(self.upright.verdict)
        parts.append(f"left/right {self.left_right.verdict}")
        if self.left_right.ok:  # otherwise the left/right verdict already says which half is swapped
            parts.append(self.handedness.verdict)
        parts.append(self.feet.verdict)
        if not self.unit.ok and self.stature.ok:
            parts.append(f"median bone {self.unit.value:.0f} mm ({self.unit.verdict})")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the summary, the warnings, the frames checked and every check by name."""
        return {
            "summary": self.summary(),
            "ok": self.ok,
            "warnings": list(self.warnings),
            "frames_checked": self.frames_checked,
            "checks": {check.name: {k: v for k, v in asdict(check).items() if k != "name"} for check in self.checks},
        }


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def _unit_vectors(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(vector_norm(v, keepdims=True), 1e-9)


def _share(bad: np.ndarray, decided: np.ndarray) -> tuple[float, float]:
    """The share of decided frames that are bad, and the share of frames decided."""
    count = int(decided.sum())
    return (float((bad & decided).sum()) / count if count else 0.0), count / max(len(decided), 1)


def _note(notes: Sequence[str], pattern: str) -> str | None:
    for note in notes:
        found = re.match(pattern, note)
        if found:
            return found.group(1)
    return None


def _up_hint(motion: Motion, upside_down: bool) -> str:
    """What to try when the body does not stand along the image's up: another up axis where the reader chose one
    (its note says "axes: Y up …": BVH, SMPL parameters, joint positions), else camera-space axes."""
    used = _note(motion.notes, r"axes: (-?[XYZ]) up")
    if used is None:
        return "the joints must be in camera space with y pointing down (OpenCV axes)"
    axis = used.lstrip("-")
    if upside_down:
        tries = [axis if used.startswith("-") else f"-{axis}"]
    else:
        tries = {"Y": ["Z"], "Z": ["Y"], "X": ["Y", "Z"]}[axis]
    listed = " or ".join(f"--up {t}" for t in tries)
    return f"is the file's up axis right? try {listed} (Up in Blender's import)"


def _unit_hint(motion: Motion, stature_m: float, median_bone_mm: float) -> str:
    """What to try when the body is not a person's size: the unit that gives a person where the reader chose one
    (its note says "unit: cm …": BVH, joint positions), else the factor to millimetres."""
    used = _note(motion.notes, r"unit: ([^\s(]+) \(")
    if used is None:
        return f"is the unit right? millimetres expected: {millimetre_hint(median_bone_mm)}"
    try:
        used_scale = unit_scale(used)
    except MotionError:  # a unit this module cannot weigh: the general advice
        used_scale = None
    if used_scale is not None:
        wanted = used_scale * NEUTRAL_STATURE_M / stature_m  # metres per unit giving a typical person
        best = min(UNITS, key=lambda name: abs(math.log(UNITS[name] / wanted)))
        low, high = PLAUSIBLE_STATURE_M
        if best != used and low <= stature_m * UNITS[best] / used_scale <= high:
            return f"is the unit right? try --unit {best} (Unit in Blender's import)"
    return "is the unit right? pass the file's unit with --unit (Unit in Blender's import)"


def check_quality(motion: Motion, max_frames: int | None = MAX_FRAMES_CHECKED) -> QualityReport:
    """Plausibility checks of a motion (see the module's notes): stature, upright, left/right consistency,
    handedness, feet on the ground, unit — each with a value and a verdict — and warnings in plain words.
    A clip longer than ``max_frames`` is checked on that many evenly spaced frames (None: every frame)."""
    joints = motion.joints
    stride = max(1, math.ceil(len(joints) / max_frames)) if max_frames else 1
    x = np.asarray(joints[::stride], dtype=np.float64)  # (F, 24, 3)
    body_up = _unit_vectors(x[:, _J["neck"]] - x[:, _J["pelvis"]])  # (F, 3)
    warnings: list[str] = []
    stature, unit = size_checks(motion, x, warnings)
    upright = upright_check(motion, body_up, warnings)
    left_right, handedness = side_checks(motion, x, body_up, warnings)
    feet = feet_check(x, body_up, warnings)
    return QualityReport(stature, upright, left_right, handedness, feet, unit, warnings, len(x))


def size_checks(motion: Motion, x: np.ndarray, warnings: list[str]) -> tuple[QualityCheck, QualityCheck]:
    """Stature and unit of joints ``x`` ``(F, 24, 3)`` (mm): pose-independent lengths. One warning, naming the
    unit to try, when either looks wrong."""
    median_bone = float(np.median(bone_lengths(x[:: max(1, len(x) // 1000)])[:, 1:]))
    low_bone, high_bone = HUMAN_BONE_MM
    unit_ok = low_bone <= median_bone <= high_bone
    unit = QualityCheck(
        "unit",
        round(median_bone, 1),
        "mm",
        "millimetres" if unit_ok else f"too {'long' if median_bone > high_bone else 'short'} for millimetres",
        unit_ok,
    )
    stature_mm = skeleton_size(x) * STATURE_PER_CHAIN
    stature_m = stature_mm / 1000.0
    low, high = PLAUSIBLE_STATURE_M
    stature_ok = low <= stature_m <= high
    stature = QualityCheck(
        "stature",
        round(stature_mm, 1),
        "mm",
        "plausible" if stature_ok else ("too tall" if stature_m > high else "too short"),
        stature_ok,
    )
    if not (stature_ok and unit_ok):
        warnings.append(f"stature {stature_m:.2f} m: {_unit_hint(motion, stature_m, median_bone)}")
    return stature, unit


def upright_check(motion: Motion, body_up: np.ndarray, warnings: list[str]) -> QualityCheck:
    """The body's up ``(F, 3)`` (unit pelvis → neck) against the image's up (−y), with a generous bound for a
    tilted camera; a warning naming the axis to try when the body is upside down or lies sideways."""
    cos_up = -body_up[:, 1]
    median_deg = math.degrees(math.acos(float(np.clip(np.median(cos_up), -1.0, 1.0))))
    upside_down = float((cos_up < math.cos(math.radians(UPSIDE_DOWN_DEG))).mean())
    if upside_down > 0.5:
        verdict = "upside down"
    elif median_deg > UPRIGHT_DEG:
        verdict = "lying sideways"
    elif upside_down > WARN_SHARE:
        verdict = f"upside down in {_percent(upside_down)} of frames"
    else:
        verdict = "upright"
    if verdict == "lying sideways":
        warnings.append(
            f"the body lies sideways (its up {median_deg:.0f}° from the image's up over the clip): "
            f"{_up_hint(motion, upside_down=False)}"
        )
    elif verdict != "upright":
        warnings.append(
            f"the body is upside down in {_percent(upside_down)} of the frames: {_up_hint(motion, upside_down=True)}"
        )
    return QualityCheck(
        "upright",
        round(median_deg, 1),
        "deg",
        verdict,
        verdict == "upright",
        {"upside_down_share": round(upside_down, 4)},
    )


def side_checks(
    motion: Motion, x: np.ndarray, body_up: np.ndarray, warnings: list[str]
) -> tuple[QualityCheck, QualityCheck]:
    """Left/right consistency (the legs' left against the arms') and handedness (the toes against
    ``cross(left, up)``) of joints ``x`` ``(F, 24, 3)``; one warning saying which half is swapped, or that the
    skeleton is mirrored."""
    bvh = motion.source_format == "bvh"
    hips_left = x[:, _J["left_hip"]] - x[:, _J["right_hip"]]
    arms_left = x[:, _J["left_shoulder"]] - x[:, _J["right_shoulder"]]
    agree = np.sum(_unit_vectors(hips_left) * _unit_vectors(arms_left), axis=-1)
    swapped, lr_decided = _share(agree < 0, np.abs(agree) > DECIDING_COSINE)
    forward = _unit_vectors(np.cross(hips_left, body_up))
    toes = sum(x[:, ball] - x[:, ankle] for ankle, ball in _FEET.values())
    facing = np.sum(forward * _unit_vectors(toes), axis=-1)
    mirrored, hand_decided = _share(facing < 0, np.abs(facing) > DECIDING_COSINE)

    if lr_decided < WARN_SHARE:
        lr_verdict = "undetermined"
    elif swapped > 0.5:  # the half whose own geometry is mirrored is the swapped one
        half, other = ("legs", "arms") if mirrored > 0.5 else ("arms", "legs")
        lr_verdict = f"swapped on the {half}"
        warnings.append(
            f"left and right are inconsistent: the {half}' left and right are swapped against the {other}' "
            f"(the left hip is on the right shoulder's side in {_percent(swapped)} of the frames) — "
            + (f"check the bone map's {half}" if bvh else "are the joints in SMPL order?")
        )
    elif swapped > WARN_SHARE:
        lr_verdict = f"inconsistent in {_percent(swapped)} of frames"
        warnings.append(
            f"left and right are swapped between legs and arms in {_percent(swapped)} of the frames "
            "(the left hip is on the right shoulder's side) — "
            + ("check the bone map" if bvh else "are the joints in SMPL order?")
        )
    else:
        lr_verdict = "consistent"
    lr_ok = lr_verdict in ("consistent", "undetermined")

    if hand_decided < WARN_SHARE:
        hand_verdict = "handedness undetermined"
    elif mirrored > 0.5:
        hand_verdict = "mirrored"
    elif mirrored > WARN_SHARE:
        hand_verdict = f"mirrored in {_percent(mirrored)} of frames"
    else:
        hand_verdict = "not mirrored"
    hand_ok = hand_verdict in ("not mirrored", "handedness undetermined")
    if lr_ok and not hand_ok:
        share = "" if mirrored > 0.5 else f" in {_percent(mirrored)} of the frames"
        warnings.append(
            f"the skeleton is mirrored{share}: left and right are swapped (the toes point backwards from the "
            "body's front) — "
            + ("check the bone map" if bvh else "the joints must be in camera space with x to the image's right")
        )
    return (
        QualityCheck(
            "left_right",
            round(1.0 - swapped, 4),
            "share of frames",
            lr_verdict,
            lr_ok,
            {"decided": round(lr_decided, 4)},
        ),
        QualityCheck(
            "handedness",
            round(1.0 - mirrored, 4),
            "share of frames",
            hand_verdict,
            hand_ok,
            {"decided": round(hand_decided, 4)},
        ),
    )


def leg_length(x: np.ndarray) -> float:
    """Median hip-to-knee-to-ankle length of joints ``(F, 24, 3)`` over frames and both legs."""
    legs = [vector_norm(x[:, k] - x[:, h]) + vector_norm(x[:, a] - x[:, k]) for h, k, a in _LEGS]
    return float(np.median(np.concatenate(legs)))


def feet_check(x: np.ndarray, body_up: np.ndarray, warnings: list[str]) -> QualityCheck:
    """Whether both feet of joints ``x`` ``(F, 24, 3)`` come down to one ground, and are the body's lowest
    point, heights measured along the clip's up (the mean of ``body_up``, so a tilted camera changes nothing)."""
    clip_up = body_up.mean(axis=0)
    clip_up = clip_up / np.linalg.norm(clip_up) if np.linalg.norm(clip_up) > 0.1 else np.array([0.0, -1.0, 0.0])
    heights = x @ clip_up  # (F, 24)
    leg = leg_length(x)
    lowest = {side: heights[:, list(pair)].min(axis=1) for side, pair in _FEET.items()}
    level = {side: float(np.percentile(low_side, GROUND_PERCENTILE)) for side, low_side in lowest.items()}
    ground = min(level.values())
    lift = {side: value - ground for side, value in level.items()}
    higher = max(lift, key=lift.__getitem__)
    other = "right" if higher == "left" else "left"
    feet_lowest = np.minimum(lowest["left"], lowest["right"])
    below_feet = float((heights[:, _OTHER_JOINTS].min(axis=1) < feet_lowest - LOWEST_TOLERANCE_LEGS * leg).mean())
    if lift[higher] > FLOATING_LEGS * leg:
        verdict = f"{higher} foot floating"
        warnings.append(
            f"the {higher} foot never comes down to the ground the {other} foot stands on (it stays "
            f"{lift[higher]:.0f} mm above it): is it floating, or mapped to the wrong bones?"
        )
    elif below_feet > 0.5:
        verdict = "feet not the lowest"
        warnings.append(
            f"in {_percent(below_feet)} of the frames another joint (a hand, the head) is lower than the feet: "
            "is the motion upside down, or are the feet mapped to the wrong bones?"
        )
    else:
        verdict = "feet on the ground"
    return QualityCheck(
        "feet",
        round(lift[higher], 1),
        "mm",
        verdict,
        verdict == "feet on the ground",
        {
            "left_foot_lift_mm": round(lift["left"], 1),
            "right_foot_lift_mm": round(lift["right"], 1),
            "lower_than_feet_share": round(below_feet, 4),
            "leg_mm": round(leg, 1),
        },
    )
