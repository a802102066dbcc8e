"""Clean motion: smoothing of the joints' jitter, and feet that stay planted while they touch the ground.

A pose estimator's joints shake from frame to frame and its feet slide while they should stand still; both
show in a rendered video. :func:`clean_motion` removes them from any motion (a video's, a mocap file's, a
Blender scene's) and reports how far it moved the joints. numpy only (this runs inside Blender).

Smoothing strength ``smooth`` (0 = none … 1 = strong) and what it does:

- ``method="savgol"``: Savitzky–Golay of order 2 over ``smooth × 2/3`` seconds, made an odd number of
  frames and at least 5 (the smallest window an order-2 fit smooths at all): 0.5 gives a third of a second
  (11 frames at 30 fps), 1 gives two thirds (21 frames). Zero phase: the motion keeps its timing.
- ``method="one-euro"``: the One-Euro filter run forward and backward (no lag) with
  ``min_cutoff = 4 ** (1 - 2 × smooth)`` Hz: 4 Hz at 0, 1 Hz at 0.5, 0.25 Hz at 1; ``beta`` 0.007 per mm/s.
  It smooths joints that hold still harder than moving ones.

Either way the bones keep their lengths: joint positions are smoothed, and so is each bone's length over
time, and the skeleton is rebuilt from the pelvis out with each bone along its smoothed direction at its
smoothed length. (Positions alone, smoothed through a fast swing of the forearm, cut the arc's corner and
shorten the bone; rebuilt, the bones vary less from frame to frame than the estimator's did.)

Foot contact (``feet=True``), on each foot's ankle and ball (SMPL ``*_ankle`` and ``*_foot``) separately:

1. "Up" and the ground come from the motion itself, so a tilted camera changes nothing: up is the average
   direction from the feet to the head; the ground is then refined to the plane through the slow foot
   positions (a least-squares plane, its tilt drawn towards up where the feet cover little ground, at most
   10° from it), and each joint's ground height is the 5th percentile of its height above that plane
   (ankles and balls apart, left and right together).
2. Sizes and speeds are in leg lengths (hip to knee to ankle, the median over the motion), times in
   seconds, so the same thresholds fit a child and an adult, 24 and 60 fps. A joint touches the ground
   where it is at most :data:`CONTACT_HEIGHT` leg lengths above its ground height and moves slower than
   :data:`CONTACT_SPEED` leg lengths per second (speed measured on a lightly smoothed copy); gaps of at
   most :data:`CONTACT_GAP_S` in a contact are closed, and contacts shorter than :data:`MIN_CONTACT_S`
   are ignored.
3. While in contact a joint is held at one position, the geometric median of its positions over the contact. A
   contact in which the joint strays more than :data:`MAX_SLIDE` leg lengths from that position is a
   deliberate slide (a dance glide, a pivot) and is left alone.
4. The hold fades in and out over :data:`BLEND_S` before and after each contact (a smoothstep), so nothing
   jumps; frames further from any contact are not touched by this step. A ball not held itself follows
   its ankle's correction, so the foot keeps its shape.
5. The knee follows the corrected ankle, the hip staying where it was: the leg turns about the hip by the
   smallest rotation taking the old hip-to-ankle direction to the new one, and a change in the hip-to-ankle
   distance is shared by thigh and shin in proportion to their length along that line. So a correction
   across the leg stretches no bone, one along it stretches both by the same small fraction (20 mm on an
   800 mm leg: 2.5 %) instead of the shin alone, and the knee keeps its bend and never moves further than
   the ankle. (Solving for exact bone lengths instead would make a nearly straight knee jump forward for
   a few millimetres of ankle correction.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import MotionError
from .filters import one_euro, savgol, savgol_window, true_runs
from .motion import Motion
from .skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS, bone_lengths

#: Smoothing methods of :func:`clean_motion`.
METHODS = ("savgol", "one-euro")
#: Savitzky–Golay window at full strength, seconds (a half strength gives the usual third of a second).
SAVGOL_SECONDS_AT_FULL = 2 / 3
#: The smallest Savitzky–Golay window used when smoothing at all (a 3-frame order-2 fit changes nothing).
MIN_SAVGOL_WINDOW = 5
#: Highest joint above its ground height that still counts as touching it, in leg lengths (~60 mm for an adult).
CONTACT_HEIGHT = 0.08
#: Highest speed that still counts as standing, leg lengths per second (~300 mm/s for an adult).
CONTACT_SPEED = 0.4
#: Shortest contact held, seconds.
MIN_CONTACT_S = 0.1
#: Longest break closed inside a contact, seconds (a frame or two of estimator noise).
CONTACT_GAP_S = 0.07
#: Fade in and out of a hold, seconds.
BLEND_S = 0.1
#: A contact whose joint strays further than this from its held position (leg lengths) is a slide, left alone.
MAX_SLIDE = 0.15
#: Window over which the contact speed is measured, seconds.
SPEED_WINDOW_S = 0.2
#: Most the ground plane may lean from the feet-to-head "up", degrees.
MAX_GROUND_TILT_DEG = 10.0
#: Percentile of a joint's height taken as its ground height.
GROUND_PERCENTILE = 5.0

#: The joints of each foot that touch the ground: (ankle, ball of the foot).
FEET: dict[str, tuple[int, int]] = {
    "left_foot": (JOINT_INDEX["left_ankle"], JOINT_INDEX["left_foot"]),
    "right_foot": (JOINT_INDEX["right_ankle"], JOINT_INDEX["right_foot"]),
}
#: Each leg's hip, knee and ankle.
LEGS: tuple[tuple[int, int, int], ...] = (
    (JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"], JOINT_INDEX["left_ankle"]),
    (JOINT_INDEX["right_hip"], JOINT_INDEX["right_knee"], JOINT_INDEX["right_ankle"]),
)
_HEAD = JOINT_INDEX["head"]
_ANKLES = tuple(ankle for ankle, _ in FEET.values())
_BALLS = tuple(ball for _, ball in FEET.values())


@dataclass
class CleanReport:
    """What :func:`clean_motion` did.

    Attributes:
        smoothed: the smoothing in words ("none", "Savitzky–Golay, 11 frames (0.37 s), order 2", …).
        mean_move_mm: mean distance a joint moved, over every joint and frame.
        max_move_mm: the largest distance any joint moved in any frame.
        per_joint_mm: joint name → mean distance it moved over the frames.
        planted_frames: ``"left_foot"`` / ``"right_foot"`` → frames in which its ankle or ball was held
            on the ground (0 for both when feet were not cleaned).
        per_joint_max_mm: joint name → the largest distance it moved in a frame.
        feet: whether foot contact was cleaned.
    """

    smoothed: str
    mean_move_mm: float
    max_move_mm: float
    per_joint_mm: dict[str, float]
    planted_frames: dict[str, int]
    per_joint_max_mm: dict[str, float] = field(default_factory=dict)
    feet: bool = True

    def summary(self) -> str:
        """One line: how far joints moved, how long the feet were planted, the smoothing."""
        feet = (
            f"feet planted in L {self.planted_frames.get('left_foot', 0)} / "
            f"R {self.planted_frames.get('right_foot', 0)} frames"
            if self.feet
            else "feet left as they were"
        )
        return (
            f"moved joints by {self.mean_move_mm:.1f} mm on average (at most {self.max_move_mm:.0f} mm); "
            f"{feet}; smoothing: {self.smoothed}"
        )


def smoothing_window(smooth: float, fps: float) -> int:
    """The Savitzky–Golay window (frames) :func:`clean_motion` uses for a strength (0 when it does not smooth)."""
    if smooth <= 0:
        return 0
    return max(MIN_SAVGOL_WINDOW, savgol_window(fps, smooth * SAVGOL_SECONDS_AT_FULL))


def one_euro_min_cutoff(smooth: float) -> float:
    """The One-Euro ``min_cutoff`` (Hz) :func:`clean_motion` uses for a strength in (0, 1]."""
    return 4.0 ** (1.0 - 2.0 * smooth)


def _keep_bones(raw: np.ndarray, smoothed: np.ndarray, smooth_lengths) -> np.ndarray:
    """``smoothed`` joints rebuilt from the pelvis out, each bone along its smoothed direction with its own
    length smoothed over time (``smooth_lengths`` of the ``(T, 23)`` lengths of ``raw``)."""
    lengths = smooth_lengths(bone_lengths(raw)[:, 1:])
    out = smoothed.copy()
    for child in range(1, len(PARENTS)):  # parents come before their children
        parent = PARENTS[child]
        direction = smoothed[:, child] - smoothed[:, parent]
        direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-9)
        out[:, child] = out[:, parent] + lengths[:, child - 1, None] * direction
    return out


def _smooth(joints: np.ndarray, fps: float, smooth: float, method: str) -> tuple[np.ndarray, str]:
    if smooth <= 0:
        return joints, "none"
    if method == "savgol":
        window = smoothing_window(smooth, fps)
        used = min(window, len(joints) - 1 + len(joints) % 2)
        if used < MIN_SAVGOL_WINDOW:
            return joints, f"none ({len(joints)} frames is too short to smooth)"

        def smooth_over_time(x: np.ndarray) -> np.ndarray:
            return savgol(x, used, 2)

        described = f"Savitzky–Golay, {used} frames ({used / fps:.2f} s), order 2"
    else:
        cutoff = one_euro_min_cutoff(smooth)

        def smooth_over_time(x: np.ndarray) -> np.ndarray:
            return one_euro(x, fps, min_cutoff=cutoff)

        described = f"One-Euro, zero phase, min cutoff {cutoff:.2g} Hz"
    return _keep_bones(joints, smooth_over_time(joints), smooth_over_time), described


@dataclass(frozen=True)
class Ground:
    """The ground the feet stand on, estimated from a motion in camera space.

    Attributes:
        up: ``(3,)`` unit normal of the ground, pointing from the feet to the head (camera space).
        levels: joint index → that joint's height along ``up`` when it stands on the ground, mm.
        leg_mm: the leg's length (hip to knee to ankle, median over frames and both legs), mm.
    """

    up: np.ndarray
    levels: dict[int, float]
    leg_mm: float

    def height(self, joints: np.ndarray, joint: int) -> np.ndarray:
        """``(T,)`` height of ``joint`` above its ground level, mm."""
        return joints[:, joint] @ self.up - self.levels[joint]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def leg_length(joints: np.ndarray) -> float:
    """Median hip-to-knee-to-ankle length of ``(T, 24, 3)`` joints over frames and both legs (mm)."""
    lengths = [
        np.linalg.norm(joints[:, k] - joints[:, h], axis=-1) + np.linalg.norm(joints[:, a] - joints[:, k], axis=-1)
        for h, k, a in LEGS
    ]
    return float(np.median(np.concatenate(lengths)))


def _speeds(joints: np.ndarray, fps: float) -> np.ndarray:
    """``(T, 24)`` speed of every joint, mm/s, from a lightly smoothed copy."""
    if len(joints) < 2:
        return np.zeros(joints.shape[:2])
    steady = savgol(joints, max(MIN_SAVGOL_WINDOW, savgol_window(fps, SPEED_WINDOW_S)), 2)
    return np.linalg.norm(np.gradient(steady, axis=0), axis=-1) * fps


def estimate_ground(joints: np.ndarray, fps: float) -> Ground:
    """The ground under ``(T, 24, 3)`` joints (mm, camera space, any camera orientation); see the module's notes."""
    joints = np.asarray(joints, dtype=np.float64)
    leg = leg_length(joints)
    feet = joints[:, _ANKLES + _BALLS].mean(axis=1)
    up = _unit(_unit(joints[:, _HEAD] - feet).mean(axis=0))
    # the plane through the balls of the feet where they are slow: fitted as height over the two directions
    # across "up", its tilt held back by a ridge term where the feet do not spread over the ground
    slow = _speeds(joints, fps)[:, _BALLS] < CONTACT_SPEED * leg
    points = joints[:, _BALLS][slow]
    if len(points) >= 10:
        helper = np.eye(3)[int(np.argmin(np.abs(up)))]
        across = np.stack([_unit(np.cross(up, helper)), np.zeros(3)])
        across[1] = np.cross(up, across[0])
        plane = np.ones(len(points), bool)
        for _ in range(3):  # fit, then again without the points well above the plane (a raised foot)
            flat, height = points[plane] @ across.T, points[plane] @ up
            flat, height = flat - flat.mean(axis=0), height - height.mean()
            ridge = len(flat) * (0.5 * leg) ** 2
            slope = np.linalg.solve(flat.T @ flat + ridge * np.eye(2), flat.T @ height)
            limit = math.tan(math.radians(MAX_GROUND_TILT_DEG))
            slope *= min(1.0, limit / max(float(np.linalg.norm(slope)), 1e-12))
            normal = _unit(up - slope @ across)
            residual = points @ normal
            residual -= np.percentile(residual, GROUND_PERCENTILE)
            plane = residual < CONTACT_HEIGHT * leg
            if plane.sum() < 10:
                break
        up = normal
    levels = {}
    for pair in (_ANKLES, _BALLS):
        level = float(np.percentile(joints[:, pair] @ up, GROUND_PERCENTILE))
        levels.update((j, level) for j in pair)
    return Ground(up=up, levels=levels, leg_mm=leg)


def geometric_median(points: np.ndarray, iterations: int = 100) -> np.ndarray:
    """The point of least summed distance to ``(N, 3)`` points (Weiszfeld's iteration): robust to a few
    outliers like a median, and turning with the points when the camera turns (a per-axis median does not)."""
    centre = points.mean(axis=0)
    for _ in range(iterations):
        distance = np.maximum(np.linalg.norm(points - centre, axis=-1), 1e-9)
        moved = (points / distance[:, None]).sum(axis=0) / (1.0 / distance).sum()
        if np.linalg.norm(moved - centre) < 1e-9:
            return moved
        centre = moved
    return centre


def _close_gaps(mask: np.ndarray, longest: int) -> np.ndarray:
    out = mask.copy()
    runs = true_runs(~mask)
    for start, stop in runs:
        if start > 0 and stop < len(mask) and stop - start <= longest:
            out[start:stop] = True
    return out


def find_contacts(joints: np.ndarray, fps: float, ground: Ground) -> dict[int, list[tuple[int, int]]]:
    """Foot joint index → ``[start, stop)`` frames of each contact with the ground, kept if held (see notes)."""
    joints = np.asarray(joints, dtype=np.float64)
    speeds = _speeds(joints, fps)
    shortest = max(2, round(MIN_CONTACT_S * fps))
    gap = max(1, round(CONTACT_GAP_S * fps))
    contacts: dict[int, list[tuple[int, int]]] = {}
    for joint in _ANKLES + _BALLS:
        touching = (ground.height(joints, joint) <= CONTACT_HEIGHT * ground.leg_mm) & (
            speeds[:, joint] <= CONTACT_SPEED * ground.leg_mm
        )
        kept = []
        for start, stop in true_runs(_close_gaps(touching, gap)):
            if stop - start < shortest:
                continue
            anchor = geometric_median(joints[start:stop, joint])
            if np.linalg.norm(joints[start:stop, joint] - anchor, axis=-1).max() <= MAX_SLIDE * ground.leg_mm:
                kept.append((start, stop))
        contacts[joint] = kept
    return contacts


def _hold(positions: np.ndarray, contacts: list[tuple[int, int]], blend: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 3)`` correction holding one joint at its contacts' positions, faded over ``blend`` frames, and
    ``(T,)`` how much of it is held (1 in a contact, 0 beyond the fades)."""
    n = len(positions)
    total = np.zeros((n, 3))
    weight = np.zeros(n)
    anchors = [geometric_median(positions[start:stop]) for start, stop in contacts]
    for (start, stop), anchor in zip(contacts, anchors, strict=True):
        frames = np.arange(max(0, start - blend), min(n, stop + blend))
        distance = np.maximum(start - frames, frames - (stop - 1)).clip(min=0)
        x = 1.0 - distance / (blend + 1)
        w = x * x * (3 - 2 * x)
        total[frames] += w[:, None] * (anchor - positions[frames])
        weight[frames] += w
    total /= np.maximum(weight, 1.0)[:, None]  # overlapping fades share the correction
    for (start, stop), anchor in zip(contacts, anchors, strict=True):  # inside a contact only its own position
        total[start:stop] = anchor - positions[start:stop]
        weight[start:stop] = 1.0
    return total, np.minimum(weight, 1.0)


def _follow_with_knees(joints: np.ndarray, before: np.ndarray, moved: np.ndarray) -> None:
    """Knees moved (in ``joints``) to follow the ankles' corrections in the frames ``moved[leg]``: the leg
    turns about the hip by the smallest rotation taking the old hip-to-ankle direction to the new one, and
    the change in the hip-to-ankle distance is shared by thigh and shin in proportion (the knee's offset
    along that line scales with it, its offset across it is kept)."""
    for leg, (hip, knee, ankle) in enumerate(LEGS):
        frames = moved[leg]
        if not frames.any():
            continue
        h, k = before[frames, hip], before[frames, knee]
        old, new = before[frames, ankle] - h, joints[frames, ankle] - h
        old_length = np.linalg.norm(old, axis=-1, keepdims=True)
        new_length = np.linalg.norm(new, axis=-1, keepdims=True)
        u, v = old / old_length, new / new_length
        offset = k - h
        along = np.sum(offset * u, axis=-1, keepdims=True)
        offset = offset + along * (new_length / old_length - 1.0) * u
        # Rodrigues without angles: R x = x + w × x + w × (w × x) / (1 + u·v), w = u × v
        w = np.cross(u, v)
        c = np.sum(u * v, axis=-1, keepdims=True)
        turned = offset + np.cross(w, offset) + np.cross(w, np.cross(w, offset)) / (1.0 + c)
        joints[frames, knee] = h + turned


def plant_feet(joints: np.ndarray, fps: float) -> tuple[np.ndarray, dict[str, int]]:
    """``(T, 24, 3)`` joints with the feet held while they touch the ground (see the module's notes), and
    the frames each foot was held in."""
    before = np.asarray(joints, dtype=np.float64)
    out = before.copy()
    if len(before) < max(2, round(MIN_CONTACT_S * fps)):
        return out, dict.fromkeys(FEET, 0)
    ground = estimate_ground(before, fps)
    contacts = find_contacts(before, fps, ground)
    blend = max(1, round(BLEND_S * fps))
    planted = {}
    moved = np.zeros((len(LEGS), len(before)), bool)
    for side, (name, (ankle, ball)) in enumerate(FEET.items()):
        ankle_shift, _ = _hold(before[:, ankle], contacts[ankle], blend)
        ball_shift, ball_weight = _hold(before[:, ball], contacts[ball], blend)
        out[:, ankle] += ankle_shift
        out[:, ball] += ball_shift + (1.0 - ball_weight)[:, None] * ankle_shift
        moved[side] = np.any(ankle_shift != 0, axis=-1)
        held = np.zeros(len(before), bool)
        for start, stop in contacts[ankle] + contacts[ball]:
            held[start:stop] = True
        planted[name] = int(held.sum())
    _follow_with_knees(out, before, moved)
    return out, planted


def clean_motion(
    motion: Motion, *, smooth: float = 0.5, feet: bool = True, method: str = "savgol"
) -> tuple[Motion, CleanReport]:
    """The motion with its jitter smoothed and its feet planted while they touch the ground, and a report.

    Args:
        motion: any motion (joints in mm, camera space; the camera may be tilted).
        smooth: smoothing strength, 0 (none) to 1 (strong); the module's notes give the window / cutoff.
        feet: hold the feet still while they touch the ground (see the module's notes).
        method: ``"savgol"`` (Savitzky–Golay) or ``"one-euro"`` (zero-phase One-Euro).

    The result keeps the motion's frame rate, camera, valid mask and uncertainties, and gains a note
    ``"cleaned: …"``. Rotations, which no longer match the moved joints, are dropped (unless no joint moved).
    """
    if method not in METHODS:
        raise MotionError(f"unknown smoothing method {method!r}; choose {' or '.join(METHODS)}", field="method")
    if not (0.0 <= smooth <= 1.0):
        raise MotionError(f"the smoothing strength is from 0 (none) to 1 (strong), got {smooth!r}", field="smooth")
    original = motion.joints.astype(np.float64)
    joints, smoothed = _smooth(original, motion.fps, float(smooth), method)
    planted = dict.fromkeys(FEET, 0)
    if feet:
        joints, planted = plant_feet(joints, motion.fps)
    result = joints.astype(np.float32)
    move = np.linalg.norm(result.astype(np.float64) - original, axis=-1)
    report = CleanReport(
        smoothed=smoothed,
        mean_move_mm=float(move.mean()),
        max_move_mm=float(move.max()),
        per_joint_mm={name: float(move[:, j].mean()) for j, name in enumerate(JOINT_NAMES)},
        planted_frames=planted,
        per_joint_max_mm={name: float(move[:, j].max()) for j, name in enumerate(JOINT_NAMES)},
        feet=feet,
    )
    notes = (*motion.notes, f"cleaned: {report.summary()}")
    if report.max_move_mm == 0.0:
        return replace(motion, notes=notes), report
    return motion.with_joints(result, notes=notes), report
