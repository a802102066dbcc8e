"""Skeleton mapping: a rig's points → the 24 SMPL joints, a rig's axes and unit → Blender's world. numpy only.

:func:`map_points` places each joint at a bone's head, its end (a BVH End Site, a Blender bone's tail) or
on the line through two such points, as the bone map says. :func:`rig_to_world` then turns the joints into
Blender's world (Z up, metres): the rig's ``up`` axis goes to +Z and the axis it faces (``forward``) to −Y,
so a Y-up rig facing +Z maps as Blender's BVH importer maps it, ``(x, y, z) → (x, −z, y)``; the unit is
the one given, else detected from the skeleton's size (:func:`~mtvcrafter.motion.units.choose_unit`).
:func:`choose_axes` says which axes a rig stands and faces along.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bone_map_detection import missing_joints_message
from .bone_maps import AXES, BoneMap, add_unprefixed, bone_key, resolve_alternatives, shared_prefix, split_reference
from .errors import MotionError
from .skeleton import JOINT_INDEX, NUM_JOINTS
from .units import choose_unit, unit_scale


def map_points(
    names: Sequence[str] | None,
    points: np.ndarray | tuple[np.ndarray, Mapping[Any, np.ndarray]] | Mapping[str, np.ndarray],
    bone_map: BoneMap,
    ends: Mapping[Any, np.ndarray] | None = None,
) -> np.ndarray:
    """The 24 SMPL joints ``(F, 24, 3)`` from a rig's points, in the rig's unit and axes.

    Args:
        names: the rig's bone (joint) names, one per column of the heads (unused for a dict).
        points: the heads ``(F, J, 3)`` (or ``(J, 3)`` for one frame, giving ``(24, 3)``); or a tuple
            ``(heads, ends)``; or a dict name → ``(F, 3)`` head, where ``"Bone@end"`` keys give ends.
        bone_map: the map.
        ends: End Site / tail positions ``(F, 3)`` by bone name or by column index.

    Raises:
        MotionError: a joint has no source among these bones (the message lists them).
    """
    if isinstance(points, tuple):
        points, tuple_ends = points
        ends = {**(ends or {}), **tuple_ends}
    head_of: dict[str, np.ndarray] = {}
    end_of: dict[str, np.ndarray] = {}
    single = False
    if isinstance(points, Mapping):
        for name, value in points.items():
            bone, end = split_reference(str(name))
            (end_of if end else head_of).setdefault(bone_key(bone), np.asarray(value, dtype=np.float64))
        frames = {a.shape[0] for a in (*head_of.values(), *end_of.values()) if a.ndim == 2}
        single = not frames
        for table in (head_of, end_of):
            for key, value in table.items():
                table[key] = value[None] if value.ndim == 1 else value
        names = list(head_of)
    else:
        heads = np.asarray(points, dtype=np.float64)
        single = heads.ndim == 2
        if single:
            heads = heads[None]
        if names is None or heads.ndim != 3 or heads.shape[1:] != (len(names), 3):
            raise MotionError(
                f"heads must be (frames, {len(names) if names is not None else 'bones'}, 3), got {heads.shape}",
                field="points",
            )
        for j, name in enumerate(names):
            head_of.setdefault(bone_key(name), heads[:, j])
    for name, value in (ends or {}).items():
        key = bone_key(names[name]) if isinstance(name, int | np.integer) else bone_key(str(name))
        value = np.asarray(value, dtype=np.float64)
        end_of.setdefault(key, value[None] if value.ndim == 1 else value)
    # the rig's shared prefix (Bip01_, Character1_, DEF-, …) dropped too, as rig_lookup does
    prefix = shared_prefix(list(head_of))
    for table in (head_of, end_of):
        add_unprefixed(table, prefix)
    chosen, missing = resolve_alternatives(bone_map, head_of, end_of)
    if missing:
        raise MotionError(missing_joints_message(bone_map, missing), field="bone_map")
    frame_count = max(a.shape[0] for a in (*head_of.values(), *end_of.values()))
    out = np.zeros((frame_count, NUM_JOINTS, 3))
    for joint, alternative in chosen.items():
        j = JOINT_INDEX[joint]
        for ref, weight in alternative:
            if weight != 0.0:
                out[:, j] += weight * (end_of if ref.end else head_of)[ref.key]
    return out[0] if single else out


# --- axes ---------------------------------------------------------------------------------------------------


def axes_matrix(up: str, forward: str) -> np.ndarray:
    """``(3, 3)`` rotation taking rig coordinates to Blender's world: ``up`` → +Z, ``forward`` (the axis
    the character faces) → −Y. For ``up="Y", forward="Z"``: ``(x, y, z) → (x, −z, y)``, as Blender's
    BVH importer."""

    def axis(name: str) -> np.ndarray:
        name = name.upper()
        if name not in AXES:
            raise MotionError(f"an axis is one of {', '.join(AXES)}, got {name!r}", field="axes")
        v = np.zeros(3)
        v["XYZ".index(name[-1])] = -1.0 if name.startswith("-") else 1.0
        return v

    u, f = axis(up), axis(forward)
    if abs(float(u @ f)) > 0.5:
        raise MotionError(f"up {up} and forward {forward} must be different axes", field="axes")
    ex, ey, ez = np.eye(3)
    return np.outer(ez, u) - np.outer(ey, f) + np.outer(ex, np.cross(u, f))


def rig_to_world(
    points: np.ndarray,
    bone_map_or_axes: BoneMap | tuple[str, str],
    unit: str | float | None = None,
) -> np.ndarray:
    """Rig points ``(..., 3)`` (e.g. :func:`map_points`' output) → Blender's world in metres, Z up.

    ``bone_map_or_axes``: a bone map (its ``up``, ``forward`` and ``unit``) or ``(up, forward)``.
    ``unit``: a unit name or metres per unit; None or ``"auto"``: :func:`choose_unit` on the points
    (which must then be SMPL joints), preferring the bone map's unit.
    """
    if isinstance(bone_map_or_axes, BoneMap):
        up, forward, preferred = bone_map_or_axes.up, bone_map_or_axes.forward, bone_map_or_axes.unit
    else:
        (up, forward), preferred = bone_map_or_axes, "auto"
    points = np.asarray(points, dtype=np.float64)
    if unit is None or (isinstance(unit, str) and unit.lower() == "auto"):
        scale, _ = choose_unit(points, None, preferred)
    else:
        scale = unit_scale(unit)
    return points @ axes_matrix(up, forward).T * scale


def _axis_name(vector: np.ndarray, min_cos: float) -> str | None:
    """The signed axis (``"Y"``, ``"-Z"`` …) a vector points along, if within ``acos(min_cos)`` of it."""
    vector = np.asarray(vector, dtype=np.float64)
    length = float(np.linalg.norm(vector))
    if not length > 1e-12:
        return None
    k = int(np.argmax(np.abs(vector)))
    if abs(vector[k]) / length < min_cos:
        return None
    return ("-" if vector[k] < 0 else "") + "XYZ"[k]


def _axis_vector(name: str) -> np.ndarray:
    v = np.zeros(3)
    v["XYZ".index(name[-1])] = -1.0 if name.startswith("-") else 1.0
    return v


def body_up(joints: np.ndarray) -> str | None:
    """The axis SMPL joints ``(F, 24, 3)`` stand along — from the ankles' middle to the head, averaged over
    (at most 1000) frames — when it is within 37° of one; else None."""
    joints = np.asarray(joints, dtype=np.float64)
    joints = joints[:: max(1, len(joints) // 1000)]
    ankles = (joints[:, JOINT_INDEX["left_ankle"]] + joints[:, JOINT_INDEX["right_ankle"]]) / 2.0
    axis = joints[:, JOINT_INDEX["head"]] - ankles
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    return _axis_name(axis.mean(axis=0), 0.8)


def body_facing(joints: np.ndarray, up: str) -> str | None:
    """The axis SMPL joints ``(24, 3)`` (one pose) face, given their up axis: their left (hips and
    shoulders) turned a quarter turn about ``up``; None when that is not within 45° of an axis."""
    joints = np.asarray(joints, dtype=np.float64)
    left = np.zeros(3)
    for a, b in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        d = joints[JOINT_INDEX[a]] - joints[JOINT_INDEX[b]]
        n = float(np.linalg.norm(d))
        if n > 1e-12:
            left += d / n
    facing = _axis_name(np.cross(left, _axis_vector(up)), 0.7)
    return facing if facing is not None and facing[-1] != up[-1] else None


def choose_axes(
    bone_map: BoneMap, joints: np.ndarray, rest_joints: np.ndarray | None = None, up: str | None = None
) -> tuple[str, str, str]:
    """The rig's ``(up, forward)`` axes and why (a note for the user).

    Rule: an explicit ``up`` wins (facing: the rest pose's, else the bone map's axes turned onto it).
    Otherwise the bone map's axes stand, unless the skeleton clearly stands along another axis both in
    its rest pose (``rest_joints``, SMPL joints ``(1, 24, 3)`` of the hierarchy with no rotation) and over
    the clip (``joints``, ``(F, 24, 3)``) — a BVH that Blender wrote from a Z-up armature, say: then that
    axis is up and the rest pose's facing is forward. A rest pose that does not stand (some datasets
    pose it lying down) or a clip lying down (floor work) leaves the bone map's axes.
    """
    given = up is not None and not (isinstance(up, str) and up.lower() == "auto")
    if given:
        up = str(up).upper()
        if up not in AXES:
            raise MotionError(f"an axis is one of {', '.join(AXES)} or auto, got {up!r}", field="up")
        if up == bone_map.up:
            return up, bone_map.forward, f"axes: {up} up (as given), facing {bone_map.forward}"
        how = "up as given"
    else:
        standing = body_up(joints)
        rest = body_up(rest_joints) if rest_joints is not None else None
        if standing is None or standing != rest or standing == bone_map.up:
            return bone_map.up, bone_map.forward, f"axes: {bone_map.up} up, facing {bone_map.forward} (the bone map's)"
        up = standing
        how = f"detected: the skeleton stands along {up}; the bone map says {bone_map.up}"
    forward = body_facing(rest_joints[0], up) if rest_joints is not None else None
    if forward is None:  # the bone map's axes turned so that its up becomes this up
        u0, f0, u1 = _axis_vector(bone_map.up), _axis_vector(bone_map.forward), _axis_vector(up)
        if abs(float(u0 @ u1)) < 0.5:  # a quarter turn about u0 × u1
            a = np.cross(u0, u1)
            turned = np.cross(a, f0) + a * float(a @ f0)
        else:  # the same axis (forward stands) or the opposite one (a half turn about the rig's left)
            turned = f0 if float(u0 @ u1) > 0 else -f0
        forward = _axis_name(turned, 0.5) or bone_map.forward
    return up, forward, f"axes: {up} up, facing {forward} ({how})"
