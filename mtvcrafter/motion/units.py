"""Length units: the units a rig or a mocap file may be in, and telling from a skeleton's size which one it is
— for rigs (:func:`choose_unit`) and for joints that should be millimetres (:func:`millimetre_hint`). numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import MotionError
from .skeleton import JOINT_INDEX

#: Metres per unit. ``cmu`` is the length unit of the CMU mocap database (1/0.45 inch), which its BVH
#: conversions (cgspeed's and others) keep.
UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}

#: Joint chain whose length measures a skeleton (ankle to head, through knee, hip, pelvis and spine):
#: 1.51 m for the neutral SMPL body (an adult of about 1.70 m), 1.38–1.60 m on the official sample clips.
HEIGHT_CHAIN = (
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("left_hip", "pelvis"),
    ("pelvis", "spine1"),
    ("spine1", "spine2"),
    ("spine2", "spine3"),
    ("spine3", "neck"),
    ("neck", "head"),
)
#: A human's chain length in metres: people of about 1.15–2.5 m; and the typical value, which decides
#: when two units both give a human.
HUMAN_CHAIN_M = (1.0, 2.2)
TYPICAL_CHAIN_M = 1.5
#: A person's median bone length lies well inside this range when joints are in millimetres.
PLAUSIBLE_BONE_MM = (20.0, 1500.0)
#: A typical adult's median SMPL bone length, for telling which unit wrong data is in.
TYPICAL_BONE_MM = 130.0
#: The unit of joints that are not millimetres, by the power of ten that turns them into millimetres.
_UNIT_OF_FACTOR = {
    1000.0: "metres",
    100.0: "decimetres",
    10.0: "centimetres",
    0.1: "tenths of a millimetre",
    0.001: "micrometres",
}


def unit_scale(unit: str | float) -> float:
    """Metres per unit, for a unit name (:data:`UNITS`) or a number (metres per unit)."""
    if isinstance(unit, str):
        if unit.lower() in UNITS:
            return UNITS[unit.lower()]
        try:
            value = float(unit)
        except ValueError:
            raise MotionError(
                f"unknown unit {unit!r}; use {', '.join(UNITS)}, auto, or metres per unit (e.g. 0.01)", field="unit"
            ) from None
    else:
        value = float(unit)
    if not (math.isfinite(value) and value > 0):
        raise MotionError(f"metres per unit must be a positive number, got {unit!r}", field="unit")
    return value


def skeleton_size(joints: np.ndarray) -> float:
    """Length of the :data:`HEIGHT_CHAIN` (ankle → head) of SMPL joints ``(F, 24, 3)``, median over
    frames, in the joints' unit: independent of the pose and of the axes."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim == 2:
        joints = joints[None]
    sample = joints[:: max(1, len(joints) // 500)]
    total = np.zeros(len(sample))
    for a, b in HEIGHT_CHAIN:
        total += np.linalg.norm(sample[:, JOINT_INDEX[a]] - sample[:, JOINT_INDEX[b]], axis=-1)
    return float(np.median(total))


def choose_unit(joints: np.ndarray, unit: str | float | None = None, preferred: str = "auto") -> tuple[float, str]:
    """The rig's unit, as metres per unit, and why (a note for the user).

    Rule: an explicit ``unit`` wins. Otherwise the skeleton's size (:func:`skeleton_size`, about
    1.5 m for an adult, 1.0–2.2 m taken as human) decides: the ``preferred`` unit (the bone map's)
    when it gives a human size; else the unit of :data:`UNITS` that does (the one nearest 1.5 m if
    several); else the preferred unit (metres for ``auto``) with a warning.
    """
    if unit is not None and not (isinstance(unit, str) and unit.lower() == "auto"):
        scale = unit_scale(unit)
        return scale, f"unit: {unit} (as given)"
    size = skeleton_size(joints)
    low, high = HUMAN_CHAIN_M
    preferred = (preferred or "auto").lower()

    def human(scale: float) -> bool:
        return low <= size * scale <= high

    if preferred != "auto" and human(UNITS[preferred]):
        metres = size * UNITS[preferred]
        return UNITS[preferred], f"unit: {preferred} (the bone map's; ankle-to-head chain {metres:.2f} m)"
    fitting = [name for name, scale in UNITS.items() if human(scale)]
    if fitting:
        best = min(fitting, key=lambda name: abs(math.log(size * UNITS[name] / TYPICAL_CHAIN_M)))
        said = f"; the bone map says {preferred}" if preferred != "auto" else ""
        return UNITS[best], (
            f"unit: {best} (detected from the skeleton's size: ankle-to-head chain {size:.4g} units = "
            f"{size * UNITS[best]:.2f} m{said})"
        )
    fallback = preferred if preferred != "auto" else "m"
    return UNITS[fallback], (
        f"warning: unit {fallback} assumed, but the ankle-to-head chain is then {size * UNITS[fallback]:.3g} m, not a "
        f"human's {low:g}–{high:g} m; pass the unit (--unit) if the size is wrong"
    )


def millimetre_hint(median_bone: float) -> str:
    """What to tell a user whose joints should be millimetres but whose median bone length is ``median_bone``
    (outside :data:`PLAUSIBLE_BONE_MM`): the unit they look like and the factor that fixes them."""
    if median_bone < 1e-6:
        return "the joints are (nearly) all at one point"
    factor = 10.0 ** round(math.log10(TYPICAL_BONE_MM / median_bone))
    unit = _UNIT_OF_FACTOR.get(factor)
    return f"the joints look like {unit}; multiply by {factor:g}" if unit else "check the unit of the data"
