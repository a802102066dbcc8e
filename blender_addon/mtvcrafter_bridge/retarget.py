"""Retarget a rig: any armature's animation (constraints, drivers, NLA included) becomes an editable SMPL
armature, through a bone map — a preset from ``presets/bones`` or the user's, or a mapping edited on the rig.

Plain functions a script or a test calls (:func:`retarget_rig`, :func:`fill_bone_map`, :func:`save_as_preset`,
:func:`evaluate_rig`); the operators (``operators.py``) only read their properties and call them, the panel and the
mapping list are in ``panels.py``.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from mtvcrafter.motion import Motion, MotionError
from mtvcrafter.motion.bone_maps import BoneMap
from mtvcrafter.motion.camera import DEFAULT_FOV_DEG, default_camera, world_to_camera_mm
from mtvcrafter.motion.skeleton_mapping import map_points

from .armature import (
    build_armature,
    camera_placement,
    ensure_camera,
    fov_on_larger_side,
    sample_evaluated,
    scene_fps,
    world_bone_points,
)
from .bone_maps import (
    AUTO,
    CUSTOM,
    choose_bone_map,
    closest_bone_map,
    describe,
    fill_rows,
    save_bone_map,
)
from .import_export import Report, building, frame_range, make_active, print_report

# --- evaluating the rig ----------------------------------------------------------------------------------------


def evaluate_rig(context, rig, frame_start: int, frame_end: int):
    """The rig's evaluated bone heads and tails in world space, metres, per frame (constraints, drivers and
    NLA included: one depsgraph evaluation per frame, bone positions read in bulk); the scene's frame is put
    back where it was.

    Returns ``(bone names, heads (F, J, 3), tails (F, J, 3))``. A rig the view layer does not evaluate (disabled
    in viewports, in an excluded or disabled collection, in another scene) would give one frozen pose: that is
    an error."""
    scene = context.scene
    if not rig.evaluated_get(context.evaluated_depsgraph_get()).is_evaluated:
        raise MotionError(
            f"{rig.name} is not evaluated in the view layer {context.view_layer.name!r} of the scene {scene.name!r} "
            "(disabled in viewports, in an excluded or disabled collection, or not in this scene): enable it there "
            "to retarget it"
        )
    names = [b.name for b in rig.pose.bones]

    def read(depsgraph) -> tuple[np.ndarray, np.ndarray]:
        evaluated = rig.evaluated_get(depsgraph)
        return world_bone_points(evaluated, "head"), world_bone_points(evaluated, "tail")

    samples = sample_evaluated(context, range(frame_start, frame_end + 1), read)
    shape = (len(samples), len(names), 3)
    return names, np.reshape([h for h, _ in samples], shape), np.reshape([t for _, t in samples], shape)


def rig_joints(names, heads, tails, bone_map: BoneMap) -> np.ndarray:
    """SMPL joints ``(F, 24, 3)`` from evaluated bone heads/tails (``"Bone@end"`` reads the tail)."""
    ends = {name: tails[:, j] for j, name in enumerate(names)}
    return map_points(names, (heads, ends), bone_map)


def retarget_rig(
    context, rig=None, bone_map: str | None = None, name: str | None = None, *, report: Report = print_report
):
    """Build an SMPL armature performing ``rig``'s animation over the scene (or preview) range, seen through
    the scene camera (a default camera in front of the performer is added when the scene has none). Returns the
    armature, selected and active; the rig itself is not changed.

    ``rig``: an armature object or its name (default: the active object). ``bone_map``: ``"AUTO"`` (detected
    from the bone names, checked against the skeleton; where no bone map names all 24 joints, mapped by the
    skeleton's structure), ``"structure"`` (by the structure alone, whatever the bones are named), ``"CUSTOM"``
    (the mapping edited on the rig) or a bone map's id; default: the rig's choice in the Retarget Rig panel. The
    report gives the bone map, how sure a detection or a mapping by structure is, and what was inferred; a rig
    that is not read as a human's skeleton is one error. ``name``: the new armature's (default: the rig's + ``SMPL``).

    The armature performs the rig's motion in the world (the joints go into the camera's view as it stands now
    and back out through the same view), so the camera, moving or not, sees it as it sees the rig. Whatever
    fails, nothing half-made is left and the active object is active again in its mode."""
    found = rig if isinstance(rig, bpy.types.Object) else target_rig(context, rig or "")
    if found is None or found.type != "ARMATURE":
        what = rig.name if isinstance(rig, bpy.types.Object) else rig or "the active object"
        raise MotionError(f"{what} is not an armature")
    rig = found
    if bone_map is None:
        bone_map = rig.mtvcrafter_retarget.source or AUTO  # empty: its preset file is gone
    with building(context):
        armature, camera, fit, detection, detected = _build_from_rig(context, rig, bone_map, name)
    make_active(context, armature)
    report(
        {"INFO"},
        f"{rig.name} → {armature.name}: {len(fit.root_translation)} frames through {camera.name}, fit error "
        f"{fit.mean_error:.1f} mm per joint; bone map {describe(detection, detected)}",
    )
    return armature


def _build_from_rig(context, rig, choice: str, name: str | None):
    """The SMPL armature of :func:`retarget_rig`, and its camera, IK fit, bone-map detection and whether the
    bone map was detected."""
    scene = context.scene
    camera = scene.camera
    if camera is not None and camera.type != "CAMERA":
        raise MotionError(
            f"the scene camera {camera.name!r} is not a camera: make a camera the scene camera, or clear it to have "
            "one added"
        )
    start, end = frame_range(scene)
    names, heads, tails = evaluate_rig(context, rig, start, end)
    index = {name: j for j, name in enumerate(names)}
    order = [index[bone.name] for bone in rig.data.bones]  # the rest pose's order: its poses, where it does not stand
    detection, detected = choose_bone_map(
        choice, [b.name for b in rig.data.bones], rig, poses=(heads[:, order], tails[:, order])
    )
    world = rig_joints(names, heads, tails, detection.bone_map)
    fps = scene_fps(scene)
    label = name or f"{rig.name}SMPL"
    width, height = scene.render.resolution_x, scene.render.resolution_y
    if camera is None:  # level, facing the performer, the whole clip in view at the render's aspect
        placement = default_camera(world, (height, width), DEFAULT_FOV_DEG)
        seen = Motion(joints=world_to_camera_mm(world, placement).astype(np.float32), fov_deg=DEFAULT_FOV_DEG)
        camera = ensure_camera(scene, seen, placement, f"{label}Camera")
    motion = Motion(
        # the view build_armature places the armature back through
        joints=world_to_camera_mm(world, camera_placement(camera)).astype(np.float32),
        fps=fps,
        image_size=(height, width),
        fov_deg=fov_on_larger_side(camera.data, width, height),
        frame_start=start,
        name=label,
        source=bpy.data.filepath or "blender",
        source_format="array",
    )
    armature, camera, fit = build_armature(context, motion, name=label, frame_start=start, camera=camera)
    armature["mtvcrafter_retargeted_from"] = rig.name
    return armature, camera, fit, detection, detected


def target_rig(context, name: str = ""):
    """The armature a retarget operator works on: the one named, else the active object. A linked rig may share
    its name with a local object: the active object, then the scene's objects, come first."""
    active = context.active_object
    if name:
        same = [o for o in (active, *context.scene.objects) if o is not None and o.name == name]
        obj = same[0] if same else bpy.data.objects.get(name)
    else:
        obj = active
    if obj is None or obj.type != "ARMATURE":
        return None
    return obj


def mapping_editable(rig) -> bool:
    """Whether the mapping list can be kept on the rig: not on a linked rig or a library override, whose
    properties Blender does not let the user edit nor saves (those are only read: a preset maps them)."""
    return rig.library is None and rig.override_library is None


def editable_rig(context, rig=None):
    """``rig`` (an armature object or its name; default: the active object) if a mapping can be kept on it."""
    found = rig if isinstance(rig, bpy.types.Object) else target_rig(context, rig or "")
    if found is None:
        raise MotionError("select an armature")
    if not mapping_editable(found):
        where = f"linked from {found.library.filepath}" if found.library else "a library override"
        raise MotionError(
            f"{found.name} is {where}: a mapping cannot be kept on it; retarget it with a bone map (auto-detect or "
            "a preset), or edit a mapping on a local rig with its bone names and save it as a preset"
        )
    return found


def fill_bone_map(context, rig=None, bone_map: str = AUTO, *, report: Report = print_report) -> list[str]:
    """Fill the mapping edited on ``rig`` (an armature or its name; default: the active object) from a bone map
    (``"AUTO"``: as a retarget detects it — by names or by structure —, else the closest one, even if it places
    only some joints; ``"structure"``: by the rest pose's structure), and make it the rig's choice. Returns the
    joints left without a bone (reported as a warning)."""
    rig = editable_rig(context, rig)
    names = [b.name for b in rig.data.bones]
    if bone_map == AUTO:
        try:
            detection, detected = choose_bone_map(AUTO, names, rig)
        except MotionError:  # the closest map: a start even for a rig nothing maps whole
            detection, detected = closest_bone_map(names), True
    else:
        detection, detected = choose_bone_map(bone_map, names, rig)
    missing = fill_rows(rig, detection.bone_map)
    rig.mtvcrafter_retarget.source = CUSTOM
    note = f"; pick a bone for {', '.join(missing)}" if missing else ""
    report({"WARNING" if missing else "INFO"}, f"{rig.name}: mapping from {describe(detection, detected)}{note}")
    return missing


def save_as_preset(context, rig=None, name: str = "", description: str = "", *, report: Report = print_report) -> Path:
    """Save the mapping edited on ``rig`` (an armature or its name; default: the active object) as a bone-map
    preset in the user's folder (``name`` default: the rig's); it shows up in the bone map menus at once, and
    becomes the rig's choice. Returns the preset file."""
    found = rig if isinstance(rig, bpy.types.Object) else target_rig(context, rig or "")
    if found is None:
        raise MotionError("select an armature")
    path = save_bone_map(found, name or found.name, description)
    if mapping_editable(found):
        found.mtvcrafter_retarget.source = path.stem
    report({"INFO"}, f"saved {path}")
    return path
